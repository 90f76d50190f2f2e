/**
 * A second HTTP server that serves only GET /metrics, for METRICS_PORT: the
 * metrics then stay off the public port, which can be exposed to browsers.
 */
import Fastify from "fastify";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { RelayMetrics } from "../metrics/relay-metrics.js";
import { metricsRoute } from "./routes/metrics.js";
import { notFoundHandler } from "./errors.js";

export async function buildMetricsApp(metrics: RelayMetrics, logger: Logger): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: logger.child({ component: "metrics" }) as FastifyBaseLogger });
  app.setNotFoundHandler(notFoundHandler);
  await app.register(metricsRoute, { metrics });
  return app;
}
