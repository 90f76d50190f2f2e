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
import type { RelayServices } from "../services.js";

/** Reconnect delay suggested to browsers with the SSE `retry:` field. */
const RECONNECT_DELAY_MS = 2000;

const eventsHeadersSchema = z.looseObject({ "last-event-id": lastEventIdSchema.optional() });

export const eventsRoute: FastifyPluginAsyncZod<{ services: RelayServices }> = async (app, { services }) => {
  app.get(
    "/v1/sora/generations/:id/events",
    { schema: { params: generationParamsSchema, headers: eventsHeadersSchema } },
    async (request, reply) => {
      const generationId = request.params.id;
      const lastEventId = request.headers["last-event-id"] ?? 0;
      const stream = new SseStream(
        generationId,
        reply.raw,
        services.hub,
        lastEventId,
        services.config.MAX_BUFFERED_BYTES,
        request.log,
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

      // 204 tells EventSource to stop reconnecting: the client already has the final status.
      if (isFinalStatus(stored.status.status) && stored.status.version <= lastEventId) {
        stream.close();
        return reply.code(204).send();
      }

      reply.hijack();
      services.connections.addSse(stream);
      stream.open(new EncodedStatus(stored), reply.getHeaders(), RECONNECT_DELAY_MS);
    },
  );
};
