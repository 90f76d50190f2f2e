/** GET /healthz (the process answers) and GET /readyz (it can do its job). */
import type { FastifyPluginAsync } from "fastify";
import type { RelayServices } from "../services.js";

const REDIS_PING_TIMEOUT_MS = 1000;

export const healthRoutes: FastifyPluginAsync<{ services: RelayServices }> = async (app, { services }) => {
  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_request, reply) => {
    const checks: Record<string, "ok" | string> = {};
    checks.shutdown = services.isShuttingDown() ? "shutting down" : "ok";
    if (services.redis !== undefined) checks.redis = await pingRedis(services);

    const ready = Object.values(checks).every((value) => value === "ok");
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not ready", checks });
  });
};

async function pingRedis(services: RelayServices): Promise<string> {
  const redis = services.redis!;
  if (redis.status !== "ready") return `not connected (${redis.status})`;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no PING answer within ${REDIS_PING_TIMEOUT_MS} ms`)), REDIS_PING_TIMEOUT_MS);
      }),
    ]);
    return "ok";
  } catch (error) {
    return `unreachable: ${(error as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
}
