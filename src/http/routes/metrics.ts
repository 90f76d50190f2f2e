/** GET /metrics: the Prometheus text exposition of this relay's registry. */
import type { FastifyPluginAsync } from "fastify";
import type { RelayMetrics } from "../../metrics/relay-metrics.js";

export const metricsRoute: FastifyPluginAsync<{ metrics: RelayMetrics }> = async (app, { metrics }) => {
  app.get(
    "/metrics",
    {
      // Scraped every few seconds: only failures are worth a log line.
      logLevel: "warn",
      schema: {
        tags: ["operations"],
        summary: "Prometheus metrics",
        description: "Text exposition format 0.0.4. Served on METRICS_PORT instead when that is set. README lists every metric.",
      },
    },
    async (_request, reply) => {
      const { contentType, body } = await metrics.exposition();
      return reply.type(contentType).send(body);
    },
  );
};
