/**
 * OpenAPI 3.1 generated from the zod schemas the routes validate with
 * (fastify-type-provider-zod's transform), served by @fastify/swagger-ui at
 * /docs and as JSON at /docs/json. The WebSocket and SSE message protocol is
 * described in docs/asyncapi.yaml instead.
 */
import { readFileSync } from "node:fs";
import type { FastifyInstance, FastifyReply } from "fastify";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { createJsonSchemaTransform, jsonSchemaTransformObject } from "fastify-type-provider-zod";
import { errorBodySchema } from "../wire/upstream.js";

/** Error responses in Runblob's shape, for the `response` maps of route schemas. */
export const errorResponses = {
  404: errorBodySchema.describe("Unknown generation or route"),
  422: errorBodySchema.describe('Invalid request: `detail` lists each problem with its location, such as ["body", "prompt"]'),
  502: errorBodySchema.describe("Runblob failed or sent a response the relay cannot read"),
  503: errorBodySchema.describe("Runblob rejected the relay's token, or the relay is shutting down"),
  504: errorBodySchema.describe("Runblob did not respond within UPSTREAM_TIMEOUT_MS"),
};

/**
 * Serializer for routes that pass Runblob's responses through: plain
 * JSON.stringify, so the response schemas only document and never strip or
 * reject a field Runblob sends.
 */
export const passthroughSerializer = () => (data: unknown) => JSON.stringify(data);

/**
 * Sends a response whose status and body the route does not choose (Runblob's,
 * or stored JSON text), past the type provider's typing of documented responses.
 */
export function sendUnchecked(reply: FastifyReply, statusCode: number, body?: unknown): FastifyReply {
  return reply.code(statusCode).send(body);
}

/** package.json sits two folders up from both src/http/ and dist/http/. */
const PACKAGE_JSON = new URL("../../package.json", import.meta.url);

export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  const { version } = JSON.parse(readFileSync(PACKAGE_JSON, "utf8")) as { version: string };
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "runblob-relay",
        version,
        description:
          "Backend-for-frontend for Runblob's Sora API: the same REST paths, bodies and error shapes as Runblob, " +
          "validated before they are forwarded with the relay's token, plus status pushes over WebSocket and SSE " +
          "(message formats: docs/asyncapi.yaml in the repository).",
      },
      tags: [
        { name: "generations", description: "Runblob's REST API, validated and forwarded" },
        { name: "push", description: "Status changes over WebSocket and Server-Sent Events" },
        { name: "operations", description: "Health, readiness and metrics" },
        { name: "auth", description: "Stream tickets and the caller's usage against the per-user limits" },
      ],
    },
    // The demo page is HTML for people, not part of the API.
    transform: createJsonSchemaTransform({ skipList: ["/"] }),
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });
}
