/** POST /v1/sora/generate: validated here, then forwarded once with the relay's token. */
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { BOTH_IMAGES_DETAIL, generateRequestSchema, hasBothImageInputs } from "../../wire/generate.js";
import { errorBodySchema, generateResponseSchema } from "../../wire/upstream.js";
import { UpstreamError } from "../../upstream/errors.js";
import { markRejected, sendDetail, sendUpstreamError } from "../errors.js";
import { errorResponses, passthroughSerializer, sendUnchecked } from "../openapi.js";
import type { RelayServices } from "../services.js";
import type { FastifyBaseLogger } from "fastify";
import type { GenerateRequest } from "../../wire/generate.js";
import { newWebhookToken } from "../../webhooks/webhook-tokens.js";
import { WEBHOOK_PATH_PREFIX } from "./webhooks.js";

/** A 10 MB image is about 13.4 MB as base64; the rest of the body is small. */
export const GENERATE_BODY_LIMIT = 14 * 1024 * 1024;

function withRelayCallback(body: GenerateRequest, token: string | undefined, services: RelayServices): GenerateRequest {
  if (token === undefined) return body;
  const base = services.config.PUBLIC_BASE_URL!.replace(/\/+$/, "");
  return { ...body, callback_url: `${base}${WEBHOOK_PATH_PREFIX}${token}` };
}

/** A lost token only loses the fast path: polling still finds the final status. */
async function saveWebhookToken(services: RelayServices, token: string, generationId: string, log: FastifyBaseLogger): Promise<void> {
  try {
    await services.webhookTokens.save(token, generationId);
  } catch (error) {
    log.warn({ err: error, generation_id: generationId }, "could not store the webhook token; the generation is polled as usual");
  }
}

/** Never retried: the generation may exist and cost money already, so the client is told how to check. */
const UNCONFIRMED_GENERATE_DETAIL =
  "Runblob did not confirm the generate request, so the generation may or may not have been created (and charged). " +
  "Check GET /v1/sora/generations before trying again.";

export const generateRoute: FastifyPluginAsyncZod<{ services: RelayServices }> = async (app, { services }) => {
  app.post(
    "/v1/sora/generate",
    {
      bodyLimit: GENERATE_BODY_LIMIT,
      schema: {
        tags: ["generations"],
        summary: "Start a generation",
        description:
          "Validated with Runblob's rules, then forwarded once with the relay's token; Runblob's status and body are passed " +
          "through. Never retried: a 502 means the generation may have been created (and charged), so check the list first.",
        body: generateRequestSchema,
        response: {
          201: generateResponseSchema,
          400: errorBodySchema.describe("Both image_url and image_base64 were sent"),
          413: errorBodySchema.describe("Body larger than 14 MiB"),
          422: errorResponses[422],
          502: errorResponses[502],
          503: errorResponses[503],
        },
      },
      serializerCompiler: passthroughSerializer,
      // Runblob responds with 400, not 422, when both image inputs are present; checked before field validation, as upstream.
      preValidation: async (request, reply) => {
        if (hasBothImageInputs(request.body)) return sendDetail(reply, 400, BOTH_IMAGES_DETAIL);
      },
    },
    async (request, reply) => {
      // A client's own callback_url is passed through untouched; otherwise the relay asks for its own webhook.
      const webhookToken =
        services.config.PUBLIC_BASE_URL !== undefined && request.body.callback_url === undefined ? newWebhookToken() : undefined;
      let upstreamResponse;
      try {
        upstreamResponse = await services.client.generate(withRelayCallback(request.body, webhookToken, services), {
          requestId: request.id,
        });
      } catch (error) {
        if (!(error instanceof UpstreamError)) throw error;
        services.logLimiter.log(
          request.log,
          "error",
          `generate:${error.kind}:${error.statusCode ?? ""}`,
          { err: error },
          "generate request failed upstream",
        );
        const unconfirmed = error.kind !== "http" || (error.statusCode ?? 0) >= 500;
        // Settled here, not only when the response is sent: a client that left meanwhile gets no
        // response, and its limit slot would stay taken until it expired.
        await services.security.settleReservation(request, unconfirmed ? "unknown" : "rejected");
        if (unconfirmed) return sendDetail(reply, 502, UNCONFIRMED_GENERATE_DETAIL);
        return sendUpstreamError(reply, error);
      }
      if (upstreamResponse.created === undefined) {
        await services.security.settleReservation(request, upstreamResponse.statusCode >= 500 ? "unknown" : "rejected");
      }

      if (upstreamResponse.statusCode === 401 || upstreamResponse.statusCode === 403) {
        return sendUpstreamError(reply, new UpstreamError("http", "token rejected", upstreamResponse.statusCode));
      }
      // A 5xx leaves the outcome as open as a timeout does: it is never passed through as the relay's own error.
      if (upstreamResponse.statusCode >= 500) {
        request.log.error({ status_code: upstreamResponse.statusCode }, "generate request failed upstream");
        markRejected(reply, "upstream");
        return sendDetail(reply, 502, UNCONFIRMED_GENERATE_DETAIL);
      }
      if (upstreamResponse.created !== undefined) {
        services.scheduler.watchCreated(upstreamResponse.created.generation_id);
        await services.security.generationCreated(request, upstreamResponse.created);
        if (webhookToken !== undefined) await saveWebhookToken(services, webhookToken, upstreamResponse.created.generation_id, request.log);
        request.log.info({ generation_id: upstreamResponse.created.generation_id }, "generation created");
      }
      if (upstreamResponse.statusCode >= 400) markRejected(reply, "upstream");
      return sendUnchecked(reply, upstreamResponse.statusCode, upstreamResponse.body);
    },
  );
};
