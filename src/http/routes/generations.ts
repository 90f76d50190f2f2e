/** GET /v1/sora/generations/{id} (status) and GET /v1/sora/generations (list passthrough). */
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { generationParamsSchema, listQuerySchema } from "../../wire/relay.js";
import { sendUpstreamError } from "../errors.js";
import { UpstreamError } from "../../upstream/errors.js";
import type { RelayServices } from "../services.js";

export const generationsRoutes: FastifyPluginAsyncZod<{ services: RelayServices }> = async (app, { services }) => {
  // The trailing-slash form (Runblob's own path) matches too: the app sets ignoreTrailingSlash.
  app.get(
    "/v1/sora/generations/:id",
    { schema: { params: generationParamsSchema } },
    async (request, reply) => {
      const stored = await services.reader.current(request.params.id, { requestId: request.id });
      return reply.type("application/json; charset=utf-8").send(stored.json);
    },
  );

  app.get("/v1/sora/generations", { schema: { querystring: listQuerySchema } }, async (request, reply) => {
    const answer = await services.client.list(request.query, { requestId: request.id });
    if (answer.statusCode === 401 || answer.statusCode === 403 || answer.statusCode >= 500) {
      return sendUpstreamError(reply, new UpstreamError("http", "list request failed", answer.statusCode));
    }
    return reply.code(answer.statusCode).send(answer.body);
  });
};
