/** GET /v1/sora/generations/{id} (status) and GET /v1/sora/generations (list passthrough). */
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { generationParamsSchema, listQuerySchema, relayStatusSchema } from "../../wire/relay.js";
import { upstreamListSchema } from "../../wire/upstream.js";
import { logUpstreamFailure, markRejected, sendUpstreamError } from "../errors.js";
import { UpstreamError } from "../../upstream/errors.js";
import { errorResponses, passthroughSerializer, sendUnchecked } from "../openapi.js";
import type { RelayServices } from "../services.js";

export const generationsRoutes: FastifyPluginAsyncZod<{ services: RelayServices }> = async (app, { services }) => {
  // The trailing-slash form (Runblob's own path) matches too: the app sets ignoreTrailingSlash.
  app.get(
    "/v1/sora/generations/:id",
    {
      schema: {
        tags: ["generations"],
        summary: "Current status of one generation",
        description:
          "Served from the relay's store while the generation is watched or final; otherwise one request to Runblob, " +
          "shared by concurrent callers.",
        params: generationParamsSchema,
        response: { 200: relayStatusSchema, 404: errorResponses[404], 422: errorResponses[422], 502: errorResponses[502], 503: errorResponses[503], 504: errorResponses[504] },
      },
      serializerCompiler: passthroughSerializer,
    },
    async (request, reply) => {
      const stored = await services.reader.current(request.params.id, { requestId: request.id, priority: "client" });
      return sendUnchecked(reply.type("application/json; charset=utf-8"), 200, stored.json);
    },
  );

  app.get(
    "/v1/sora/generations",
    {
      schema: {
        tags: ["generations"],
        summary: "Runblob's list of the account's generations, passed through",
        querystring: listQuerySchema,
        response: { 200: upstreamListSchema, 422: errorResponses[422], 502: errorResponses[502], 503: errorResponses[503], 504: errorResponses[504] },
      },
      serializerCompiler: passthroughSerializer,
    },
    async (request, reply) => {
      // Callers who are not admins list only the generations they created, from the relay's own records.
      const own = await services.security.ownGenerations(request, request.query);
      if (own !== undefined) return sendUnchecked(reply, 200, own);
      const upstreamResponse = await services.client.list(request.query, { requestId: request.id });
      if (upstreamResponse.statusCode === 401 || upstreamResponse.statusCode === 403 || upstreamResponse.statusCode >= 500) {
        const error = new UpstreamError("http", `Runblob responded with HTTP ${upstreamResponse.statusCode} to the list request`, upstreamResponse.statusCode);
        logUpstreamFailure(services.logLimiter, request, error, "list request failed upstream");
        return sendUpstreamError(reply, error);
      }
      // Runblob's own 4xx responses pass through unchanged.
      if (upstreamResponse.statusCode >= 400) markRejected(reply, upstreamResponse.statusCode === 404 ? "not_found" : "upstream");
      return sendUnchecked(reply, upstreamResponse.statusCode, upstreamResponse.body);
    },
  );
};
