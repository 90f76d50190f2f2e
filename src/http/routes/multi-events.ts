/**
 * GET /v1/sora/events?ids=<uuid>,<uuid>: the statuses of several generations
 * on one Server-Sent Events stream. The protocol and its resume cursor are
 * described in push/multi-sse-stream.ts and the README.
 */
import { z } from "zod";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { CURSOR_DONE, multiEventsCursorSchema, multiEventsQuerySchema } from "../../wire/relay.js";
import type { StreamPosition } from "../../wire/relay.js";
import { MultiSseStream } from "../../push/multi-sse-stream.js";
import { sendDetail } from "../errors.js";
import type { RelayServices } from "../services.js";

/** Reconnect delay suggested to browsers with the SSE `retry:` field. */
const RECONNECT_DELAY_MS = 2000;

const headersSchema = z.looseObject({ "last-event-id": multiEventsCursorSchema.optional() });

/**
 * Combines the two sources of resume positions. `after` comes from the URL,
 * which a browser repeats unchanged on every reconnect, and Last-Event-ID
 * from the latest event received, so the higher of the two is the newer one.
 */
export function startPositions(
  ids: readonly string[],
  after: ReadonlyArray<readonly [string, number]> | undefined,
  cursor: readonly StreamPosition[] | undefined,
): StreamPosition[] {
  const afterById = new Map(after ?? []);
  return ids.map((id, index) => {
    const fromUrl = afterById.get(id) ?? 0;
    const fromCursor = cursor?.[index] ?? 0;
    if (fromCursor === CURSOR_DONE) return CURSOR_DONE;
    return Math.max(fromUrl, fromCursor);
  });
}

export const multiEventsRoute: FastifyPluginAsyncZod<{ services: RelayServices }> = async (app, { services }) => {
  app.get(
    "/v1/sora/events",
    { schema: { querystring: multiEventsQuerySchema(services.config.WS_MAX_SUBSCRIPTIONS), headers: headersSchema } },
    async (request, reply) => {
      const { ids, after } = request.query;
      const cursor = request.headers["last-event-id"];
      if (cursor !== undefined && cursor.length !== ids.length) {
        return sendDetail(reply, 422, [
          {
            type: "value_error",
            loc: ["header", "last-event-id"],
            msg: `Last-Event-ID has ${cursor.length} entries but ids names ${ids.length} generations: it must be an event id of a stream with the same ids`,
          },
        ]);
      }

      const stream = new MultiSseStream(
        ids,
        startPositions(ids, after, cursor),
        reply.raw,
        services.hub,
        services.config.MAX_BUFFERED_BYTES,
        request.log,
      );
      // 204 tells EventSource to stop reconnecting: the client already has everything this stream would send.
      if (stream.finished) return reply.code(204).send();

      reply.hijack();
      services.connections.addMultiSse(stream);
      stream.open(
        reply.getHeaders(),
        RECONNECT_DELAY_MS,
        (generationId) => services.reader.current(generationId, { requestId: request.id, handOffToScheduler: true }),
        services.security.deniedIds(request),
      );
    },
  );
};
