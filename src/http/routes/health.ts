/** GET /healthz (the process responds) and GET /readyz (it can do its job). */
import { z } from "zod";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { RelayServices } from "../services.js";

const REDIS_PING_TIMEOUT_MS = 1000;

const healthSchema = z.object({ status: z.literal("ok") });
const readinessSchema = z.object({
  status: z.enum(["ready", "not ready"]),
  checks: z
    .record(z.string(), z.string())
    .describe('Each check and "ok", or what failed: shutdown, redis (when configured) and upstream_credentials.'),
  failing: z.array(z.string()).describe("Names of the checks that are not ok; empty when ready."),
});

export const healthRoutes: FastifyPluginAsyncZod<{ services: RelayServices }> = async (app, { services }) => {
  // Probed every few seconds by orchestrators: only failures are worth a log line.
  const probe = { logLevel: "warn" as const };

  app.get(
    "/healthz",
    {
      ...probe,
      schema: {
        tags: ["operations"],
        summary: "Liveness",
        description: "200 while the process runs and serves HTTP; restart the process when it does not.",
        response: { 200: healthSchema },
      },
    },
    async () => ({ status: "ok" as const }),
  );

  app.get(
    "/readyz",
    {
      ...probe,
      schema: {
        tags: ["operations"],
        summary: "Readiness",
        description:
          "200 when the relay can serve traffic; 503 while it shuts down, while the configured Redis is unreachable, " +
          "or for 60 s after Runblob rejected the relay's token (401 or 403) unless a request succeeded since.",
        response: { 200: readinessSchema, 503: readinessSchema },
      },
    },
    async (_request, reply) => {
      const checks: Record<string, "ok" | string> = {};
      checks.shutdown = services.isShuttingDown() ? "shutting down" : "ok";
      if (services.redis !== undefined) checks.redis = await pingRedis(services);
      checks.upstream_credentials = services.client.health.describe();

      const failing = Object.keys(checks).filter((name) => checks[name] !== "ok");
      const ready = failing.length === 0;
      return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not ready", checks, failing });
    },
  );
};

async function pingRedis(services: RelayServices): Promise<string> {
  const redis = services.redis!;
  if (redis.status !== "ready") return `not connected (${redis.status})`;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no PING reply within ${REDIS_PING_TIMEOUT_MS} ms`)), REDIS_PING_TIMEOUT_MS);
      }),
    ]);
    return "ok";
  } catch (error) {
    return `unreachable: ${(error as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
}
