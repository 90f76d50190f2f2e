/**
 * POST /v1/sora/webhooks/{token}: Runblob's completion webhook, the fast path
 * beside polling. Runblob signs nothing, so a delivery is only a hint: the
 * relay responds 200 at once and sends the instance holding the poll lease a
 * hint to poll the generation now, and only that poll's response is published. A forged
 * or replayed delivery therefore costs at most one budgeted status request
 * and changes nothing by itself.
 */
import { z } from "zod";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { WEBHOOK_TOKEN_PATTERN } from "../../webhooks/webhook-tokens.js";
import type { RelayServices } from "../services.js";

const WEBHOOK_BODY_LIMIT = 64 * 1024;

const webhookParamsSchema = z.strictObject({
  token: z.string().regex(WEBHOOK_TOKEN_PATTERN, "invalid webhook token"),
});

export const WEBHOOK_PATH_PREFIX = "/v1/sora/webhooks/";

export const webhooksRoute: FastifyPluginAsyncZod<{ services: RelayServices }> = async (app, { services }) => {
  app.post(
    `${WEBHOOK_PATH_PREFIX}:token`,
    {
      bodyLimit: WEBHOOK_BODY_LIMIT,
      schema: { params: webhookParamsSchema, hide: true },
    },
    async (request, reply) => {
      const generationId = await services.webhookTokens.lookup(request.params.token);
      if (generationId !== null) {
        const hinted = (request.body as { generation_id?: unknown } | undefined)?.generation_id;
        if (typeof hinted === "string" && hinted !== generationId) {
          request.log.warn({ generation_id: generationId }, "webhook body names another generation; polling the URL's own");
        }
        request.log.info({ generation_id: generationId }, "webhook received; polling the generation now");
        await services.bus.publish({ kind: "poll_hint", generationId });
      } else {
        request.log.info("webhook with an unknown or expired token ignored");
      }
      // The same response for every token, so the endpoint reveals nothing to a prober.
      return reply.code(200).send({ detail: "received" });
    },
  );
};
