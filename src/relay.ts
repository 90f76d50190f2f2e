/**
 * The composition root: builds every part of one relay instance from the
 * configuration and wires them together. Nothing here has logic of its own
 * beyond choosing implementations and the order of shutdown.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { Config } from "./config/env.js";
import { RunblobClient } from "./upstream/runblob-client.js";
import { createSimulator } from "./simulator/app.js";
import type { StatusStore } from "./store/status-store.js";
import { MemoryStatusStore } from "./store/memory-store.js";
import { RedisStatusStore } from "./store/redis-store.js";
import type { ChangeBus } from "./bus/change-bus.js";
import { MemoryChangeBus } from "./bus/memory-bus.js";
import { RedisChangeBus } from "./bus/redis-bus.js";
import { WatchScheduler } from "./watch/watch-scheduler.js";
import { StatusReader } from "./watch/status-reader.js";
import { FanoutHub } from "./push/fanout-hub.js";
import { ConnectionRegistry } from "./push/connection-registry.js";
import { buildHttpApp } from "./http/app.js";

export interface Relay {
  app: FastifyInstance;
  /** Origin of the Runblob API in use: the built-in simulator's when no token is configured. */
  upstreamUrl: string;
  listen(): Promise<string>;
  /** Graceful stop: clients are told to reconnect, polls finish, connections close. */
  close(): Promise<void>;
}

/** Reconnect delay suggested to SSE clients on shutdown; spread so they do not all return at once. */
const SHUTDOWN_RETRY_MS = () => 1000 + Math.floor(Math.random() * 4000);

export async function createRelay(config: Config, logger: Logger): Promise<Relay> {
  const closers: Array<() => Promise<unknown>> = [];

  let upstreamUrl = config.RUNBLOB_BASE_URL;
  let token = config.RUNBLOB_TOKEN;
  if (config.useSimulator) {
    token = randomBytes(24).toString("base64url");
    const simulator = createSimulator({
      token,
      queueStart: config.SIMULATOR_QUEUE_START,
      queueMs: config.SIMULATOR_QUEUE_MS,
      processingMs: config.SIMULATOR_PROCESSING_MS,
      failureRate: config.SIMULATOR_FAILURE_RATE,
    });
    upstreamUrl = await simulator.listen(0, "127.0.0.1");
    closers.push(() => simulator.close());
    logger.warn(
      { upstream: upstreamUrl },
      "RUNBLOB_TOKEN is not set: using the built-in Runblob simulator, no real videos are generated",
    );
  }

  const client = new RunblobClient({
    baseUrl: upstreamUrl,
    token: token!,
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    connections: config.UPSTREAM_CONNECTIONS,
    logger: logger.child({ component: "upstream" }),
  });
  closers.push(() => client.close());

  const { store, bus, redis } = await createStorage(config, logger, closers);

  const scheduler = new WatchScheduler({
    store,
    client,
    bus,
    logger: logger.child({ component: "scheduler" }),
    intervalMs: config.POLL_INTERVAL_MS,
    maxAttempts: config.POLL_MAX_ATTEMPTS,
    graceMs: config.WATCH_GRACE_MS,
    concurrency: config.POLL_CONCURRENCY,
  });
  const reader = new StatusReader({ store, client, bus, scheduler, logger });
  const hub = new FanoutHub({ scheduler, logger: logger.child({ component: "hub" }) });
  bus.onEvent((event) => hub.handle(event));

  const connections = new ConnectionRegistry({
    sseKeepAliveMs: config.SSE_KEEPALIVE_MS,
    wsPingIntervalMs: config.WS_PING_INTERVAL_MS,
    logger,
  });

  let shuttingDown = false;
  const app = await buildHttpApp(
    { config, client, reader, scheduler, hub, connections, redis, isShuttingDown: () => shuttingDown },
    logger,
  );

  return {
    app,
    upstreamUrl,
    async listen() {
      const address = await app.listen({ host: config.HOST, port: config.PORT });
      connections.start();
      return address;
    },
    async close() {
      if (shuttingDown) return;
      shuttingDown = true;
      connections.closeAll(SHUTDOWN_RETRY_MS());
      await scheduler.stop();
      await app.close();
      for (const close of closers.reverse()) {
        try {
          await close();
        } catch (error) {
          logger.warn({ err: error }, "error while closing a resource");
        }
      }
    },
  };
}

async function createStorage(
  config: Config,
  logger: Logger,
  closers: Array<() => Promise<unknown>>,
): Promise<{ store: StatusStore; bus: ChangeBus; redis: Redis | undefined }> {
  if (config.REDIS_URL === undefined) {
    logger.warn("REDIS_URL is not set: statuses live in this process only; run one instance and expect them lost on restart");
    const store = new MemoryStatusStore({ ttlSeconds: config.STATUS_TTL_SECONDS });
    closers.push(() => store.close());
    return { store, bus: new MemoryChangeBus(), redis: undefined };
  }

  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 2, enableOfflineQueue: true, connectionName: "relay" });
  const subscriber = redis.duplicate({ connectionName: "relay-subscriber" });
  watchConnection(redis, "redis", logger);
  watchConnection(subscriber, "redis subscriber", logger);
  closers.push(() => redis.quit().catch(() => redis.disconnect()));
  closers.push(() => subscriber.quit().catch(() => subscriber.disconnect()));

  const store = new RedisStatusStore({ redis, ttlSeconds: config.STATUS_TTL_SECONDS, keyPrefix: config.REDIS_KEY_PREFIX });
  const bus = new RedisChangeBus({
    publisher: redis,
    subscriber,
    channel: `${config.REDIS_KEY_PREFIX}events`,
    logger: logger.child({ component: "bus" }),
  });
  closers.push(() => bus.close());
  await bus.ready();
  return { store, bus, redis };
}

/**
 * Logs a Redis connection's state changes once each, not every reconnect
 * attempt. The `error` listener also keeps ioredis from crashing the
 * process with an unhandled error event.
 */
function watchConnection(connection: Redis, name: string, logger: Logger): void {
  let failing = false;
  connection.on("error", (error: Error) => {
    if (failing) return;
    failing = true;
    logger.error({ err: error, connection: name }, "Redis connection failed; reconnecting");
  });
  connection.on("ready", () => {
    if (failing) logger.info({ connection: name }, "Redis connection restored");
    failing = false;
  });
}
