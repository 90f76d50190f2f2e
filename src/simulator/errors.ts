/**
 * FastAPI's responses to requests that never reach a handler: unparsable or
 * missing JSON, unknown routes and unexpected errors, all with a `detail` body.
 */
import type { FastifyError, FastifyInstance } from "fastify";
import { NOT_AN_OBJECT_ISSUE, type FastApiIssue } from "./validation.js";

/** A body that is not valid JSON, with the character offset at which parsing failed. */
class JsonDecodeError extends Error {
  readonly statusCode = 422;

  constructor(readonly position: number) {
    super(`JSON decode error at character ${position}`);
  }
}

/**
 * Returns the offset of the syntax error that V8's JSON.parse reports (0 when
 * its message names none), or null when the text is valid JSON.
 */
function jsonSyntaxErrorPosition(text: string): number | null {
  try {
    JSON.parse(text);
    return null;
  } catch (error) {
    const position = /position (\d+)/.exec(String(error));
    return position?.[1] === undefined ? 0 : Number(position[1]);
  }
}

/** Registers the JSON body parser, the not-found handler and the error handler on `app`. */
export function registerFastApiErrorHandling(app: FastifyInstance): void {
  // FastAPI treats an empty body as a missing one (422 "Field required"), but Fastify's parser rejects it with 400.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    if ((body as string).trim() === "") {
      done(null, undefined);
      return;
    }
    parseJson(request, body as string, (error, value) => {
      if (error === null) {
        done(null, value);
        return;
      }
      // Fastify's parser also rejects valid JSON with __proto__ keys, and that 400 error is passed on unchanged.
      const position = jsonSyntaxErrorPosition(body as string);
      done(position === null ? error : new JsonDecodeError(position), undefined);
    });
  });

  app.setNotFoundHandler(async (_request, reply) => reply.code(404).send({ detail: "Not Found" }));

  app.setErrorHandler(async (error: FastifyError, request, reply) => {
    if (error instanceof JsonDecodeError) {
      const issue: FastApiIssue = { type: "json_invalid", loc: ["body", error.position], msg: "JSON decode error", input: {} };
      return reply.code(422).send({ detail: [issue] });
    }

    if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
      // FastAPI validates a body of another media type as raw bytes, which fails the object check.
      return reply.code(422).send({ detail: [NOT_AN_OBJECT_ISSUE] });
    }

    const statusCode = error.statusCode ?? 500;
    if (statusCode < 500) return reply.code(statusCode).send({ detail: error.message });

    request.log.error({ err: error }, "simulator request failed");
    return reply.code(500).send({ detail: "Internal Server Error" });
  });
}
