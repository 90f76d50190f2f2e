/**
 * GET /v1/sora/generations/{id}/events: one generation's statuses as
 * Server-Sent Events, following the WHATWG HTML rules for event streams.
 */
import { z } from "zod";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { generationParamsSchema, lastEventIdSchema } from "../../wire/relay.js";
import { isFinalStatus } from "../../wire/upstream.js";
import { EncodedStatus } from "../../push/frames.js";
import { SseStream } from "../../push/sse-stream.js";
import { errorResponses, sendUnchecked } from "../openapi.js";
import type { RelayServices } from "../services.js";

/** Reconnect delay suggested to browsers with the SSE `retry:` field. */
const RECONNECT_DELAY_MS = 2000;

const eventsHeadersSchema = z.looseObject({ "last-event-id": lastEventIdSchema.optional() });

export const eventsRoute: FastifyPluginAsyncZod<{ services: RelayServices }> = async (app, { services }) => {
  app.get(
    "/v1/sora/generations/:id/events",
    {
      schema: {
        tags: ["push"],
        summary: "Status changes of one generation as Server-Sent Events",
        description:
          "A text/event-stream of `status` events (id: the version, data: the status object), then `timeout` or `error` " +
          "events; the current status comes first. A reconnect with Last-Event-ID gets only newer versions, and 204 when " +
          "the generation is already final at that version. Event formats: docs/asyncapi.yaml.",
        params: generationParamsSchema,
        headers: eventsHeadersSchema,
        response: { 404: errorResponses[404], 422: errorResponses[422], 502: errorResponses[502], 503: errorResponses[503], 504: errorResponses[504] },
      },
    },
    async (request, reply) => {
      const generationId = request.params.id;
      const lastEventId = request.headers["last-event-id"] ?? 0;
      const stream = new SseStream(
        generationId,
        reply.raw,
        services.hub,
        lastEventId,
        { maxBufferedBytes: services.config.MAX_BUFFERED_BYTES, conflateBytes: services.config.PUSH_CONFLATE_BYTES },
        request.log,
        { metrics: services.metrics.transport("sse"), logLimiter: services.logLimiter },
      );

      // Subscribe before reading, so a change published during the read is held, not lost.
      services.hub.add(generationId, stream);
      let stored;
      try {
        stored = await services.reader.current(generationId, { requestId: request.id });
      } catch (error) {
        stream.close();
        throw error;
      }

      // A client that went away during the read is gone for good: its stream already released
      // itself from the hub, and registering it now would keep it forever.
      if (stream.ended || reply.raw.destroyed) return reply;

      // 204 tells EventSource to stop reconnecting: the client already has the final status.
      if (isFinalStatus(stored.status.status) && stored.status.version <= lastEventId) {
        stream.close();
        return sendUnchecked(reply, 204);
      }

      reply.hijack();
      services.connections.addSse(stream);
      stream.open(new EncodedStatus(stored), reply.getHeaders(), RECONNECT_DELAY_MS);
    },
  );
};
