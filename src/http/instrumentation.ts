/**
 * Fastify hooks that feed the relay's HTTP metrics: request durations by
 * route pattern (never the raw URL, which contains ids), and rejections by
 * the reason the error response was marked with.
 */
import type { FastifyInstance } from "fastify";
import type { RelayMetrics } from "../metrics/relay-metrics.js";
import { statusClassOf } from "../metrics/relay-metrics.js";
import { rejectionOf } from "./errors.js";

export function instrumentHttp(app: FastifyInstance, metrics: RelayMetrics): void {
  app.addHook("onResponse", async (request, reply) => {
    const reason = rejectionOf(reply);
    if (reason !== undefined) metrics.rejected(reason);

    // An SSE stream's "duration" is its lifetime, which would drown the request latencies.
    if (String(reply.raw.getHeader("content-type") ?? "").startsWith("text/event-stream")) return;
    const route = request.routeOptions.url ?? "unmatched";
    metrics.httpDuration.labels(request.method, route, statusClassOf(reply.statusCode)).observe(reply.elapsedTime / 1000);
  });
}
