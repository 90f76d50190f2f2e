/**
 * The composition root: builds every part of one relay instance from the
 * configuration and wires them together. Nothing here has logic of its own
 * beyond choosing implementations and the order of shutdown.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
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
import { RedisPollLease } from "./cluster/redis-poll-lease.js";
import { openRedisConnections, waitUntilReady } from "./cluster/redis-connection.js";
import type { RedisConnection } from "./cluster/redis-connection.js";
import { LocalPollLease } from "./watch/poll-lease.js";
import type { PollLease } from "./watch/poll-lease.js";
import { resyncWatched } from "./cluster/resync.js";
import { RedisRequestBudget } from "./cluster/redis-request-budget.js";
import { LocalRequestBudget } from "./upstream/request-budget.js";
import type { BudgetSettings, RequestBudget } from "./upstream/request-budget.js";
import { UpstreamGateway } from "./upstream/upstream-gateway.js";
import { MemoryWebhookTokens, RedisWebhookTokens } from "./webhooks/webhook-tokens.js";
import type { WebhookTokens } from "./webhooks/webhook-tokens.js";
import { WatchScheduler } from "./watch/watch-scheduler.js";
import { applyConnectionCap, connectionCap, openFileLimit } from "./http/connection-cap.js";
import { StatusReader } from "./watch/status-reader.js";
import { FanoutHub } from "./push/fanout-hub.js";
import { ConnectionRegistry } from "./push/connection-registry.js";
import { buildHttpApp } from "./http/app.js";
import { buildMetricsApp } from "./http/metrics-app.js";
import { RelayMetrics } from "./metrics/relay-metrics.js";
import { registerStateGauges } from "./metrics/state-gauges.js";
import { RepeatLimiter } from "./logging/repeat-limiter.js";
import { Security } from "./auth/security.js";

export interface Relay {
  app: FastifyInstance;
  /** Origin of the Runblob API in use: the built-in simulator's when no token is configured. */
  upstreamUrl: string;
  listen(): Promise<string>;
  /** This instance's metrics; one registry per relay, so relays in one process never share series. */
  metrics: RelayMetrics;
  /** Origin of the separate metrics server once listening, when METRICS_PORT is set. */
  readonly metricsUrl: string | undefined;
  /** Stops gracefully: clients get a reconnect hint, polls finish, connections close. */
  close(): Promise<void>;
}

/** Values of the relay_upstream_breaker_state gauge. */
const BREAKER_STATE_VALUES = { closed: 0, half_open: 1, open: 2 } as const;

/** Reconnect delay suggested to SSE clients on shutdown; spread so they do not all return at once. */
const SHUTDOWN_RETRY_MS = () => 1000 + Math.floor(Math.random() * 4000);

export async function createRelay(config: Config, logger: Logger): Promise<Relay> {
  const closers: Array<() => Promise<unknown>> = [];
  const metrics = new RelayMetrics();
  const logLimiter = new RepeatLimiter(logger);

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

  const { store, bus, lease, budget, webhookTokens, redis, redisSubscriber, onBusResync } = await createCoordination(
    config,
    logger,
    closers,
  );

  const client = new UpstreamGateway({
    client: new RunblobClient({
      baseUrl: upstreamUrl,
      token: token!,
      timeoutMs: config.UPSTREAM_TIMEOUT_MS,
      connections: config.UPSTREAM_CONNECTIONS,
      logger: logger.child({ component: "upstream" }),
      metrics,
    }),
    budget,
    retry: {
      maxAttempts: config.UPSTREAM_RETRY_ATTEMPTS,
      baseMs: config.UPSTREAM_RETRY_BASE_MS,
      maxDelayMs: config.UPSTREAM_RETRY_MAX_DELAY_MS,
    },
    failureThreshold: config.BREAKER_FAILURE_THRESHOLD,
    cooldownMs: config.BREAKER_COOLDOWN_MS,
    clientBudgetWaitMs: config.UPSTREAM_BUDGET_WAIT_MS,
    logger: logger.child({ component: "upstream" }),
    metrics: {
      retries: (route) => metrics.upstreamRetries.labels(route).inc(),
      budgetWaits: (priority) => metrics.budgetWaits.labels(priority).inc(),
    },
    onBreakerChange: (state) => {
      metrics.breakerState.set(BREAKER_STATE_VALUES[state]);
      if (state === "half_open") return;
      bus.publish({ kind: "upstream", state: state === "open" ? "degraded" : "ok" }).catch((error: unknown) => {
        logger.error({ err: error }, "could not publish the upstream state");
      });
    },
  });
  closers.push(() => client.close());

  const scheduler = new WatchScheduler({
    store,
    client,
    bus,
    lease,
    logger: logger.child({ component: "scheduler" }),
    intervalMs: config.POLL_INTERVAL_MS,
    maxAttempts: config.POLL_MAX_ATTEMPTS,
    graceMs: config.WATCH_GRACE_MS,
    // The budget never lets more polls run at once than its slots for polls, so starting more only
    // gets them deferred and tried again.
    concurrency: Math.min(config.POLL_CONCURRENCY, config.UPSTREAM_MAX_CONCURRENT - config.UPSTREAM_CLIENT_RESERVE),
  });
  const reader = new StatusReader({
    store,
    client,
    bus,
    scheduler,
    logger,
    intervalMs: config.POLL_INTERVAL_MS,
    notFoundCacheMs: config.NOT_FOUND_CACHE_MS,
  });
  const hub = new FanoutHub({ scheduler, logger: logger.child({ component: "hub" }), metrics, logLimiter });
  bus.onEvent((event) => {
    scheduler.observe(event);
    hub.handle(event);
  });
  onBusResync?.(() => void resyncWatched(store, scheduler, hub, logger));

  const connections = new ConnectionRegistry({
    sseKeepAliveMs: config.SSE_KEEPALIVE_MS,
    wsPingIntervalMs: config.WS_PING_INTERVAL_MS,
    logger,
  });

  registerStateGauges(metrics.registry, {
    scheduler,
    hub,
    connections: { websocket: connections.websockets, sse: connections.sseStreams },
    redis: [
      ...(redis === undefined ? [] : [{ role: "command", connection: redis }]),
      ...(redisSubscriber === undefined ? [] : [{ role: "subscriber", connection: redisSubscriber }]),
    ],
    upstreamHealth: client.health,
    ...(lease instanceof RedisPollLease ? { leases: lease } : {}),
  });

  const security = new Security(config, { redis, statusStore: store, reader, logger, logLimiter });
  closers.push(() => security.close());

  let shuttingDown = false;
  const app = await buildHttpApp(
    {
      config,
      client,
      reader,
      scheduler,
      hub,
      connections,
      redis,
      webhookTokens,
      bus,
      isShuttingDown: () => shuttingDown,
      metrics,
      logLimiter,
      security,
    },
    logger,
  );
  const metricsApp = config.METRICS_PORT === undefined ? undefined : await buildMetricsApp(metrics, logger);
  let metricsUrl: string | undefined;

  return {
    app,
    upstreamUrl,
    metrics,
    get metricsUrl() {
      return metricsUrl;
    },
    async listen() {
      const cap = connectionCap(config.MAX_CONNECTIONS, openFileLimit(), config.UPSTREAM_CONNECTIONS);
      applyConnectionCap(app.server, cap, { logger, logLimiter, rejected: metrics.connectionsRefused });
      const address = await app.listen({ host: config.HOST, port: config.PORT });
      logger.info({ max_connections: cap ?? "none" }, "connection cap set");
      if (metricsApp !== undefined) metricsUrl = await metricsApp.listen({ host: config.HOST, port: config.METRICS_PORT });
      connections.start();
      security.start();
      return address;
    },
    async close() {
      if (shuttingDown) return;
      shuttingDown = true;
      connections.closeAll(SHUTDOWN_RETRY_MS());
      await scheduler.stop();
      await app.close();
      await metricsApp?.close();
      logLimiter.flush();
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

interface Coordination {
  store: StatusStore;
  bus: ChangeBus;
  lease: PollLease;
  budget: RequestBudget;
  webhookTokens: WebhookTokens;
  redis: RedisConnection | undefined;
  /** The pub/sub connection, for the readiness gauge. */
  redisSubscriber?: RedisConnection;
  /** Set when a bus reconnect may have missed messages; called with a re-read of every watched generation. */
  onBusResync?: (resync: () => void) => void;
}

/** Leases outlive one interval by a quarter, so a dead owner is replaced within 1.75 intervals. */
const LEASE_FACTOR = 1.25;

async function createCoordination(
  config: Config,
  logger: Logger,
  closers: Array<() => Promise<unknown>>,
): Promise<Coordination> {
  const attemptsTtlMs = config.WATCH_GRACE_MS + 2 * config.POLL_INTERVAL_MS;
  if (!config.useRedis) {
    logger.warn("REDIS_URL is not set: statuses live in this process only; run one instance and expect them lost on restart");
    const store = new MemoryStatusStore({ ttlSeconds: config.STATUS_TTL_SECONDS });
    closers.push(() => store.close());
    return {
      store,
      bus: new MemoryChangeBus(),
      lease: new LocalPollLease(attemptsTtlMs),
      budget: new LocalRequestBudget(budgetSettings(config)),
      webhookTokens: new MemoryWebhookTokens(config.WEBHOOK_TOKEN_TTL_SECONDS),
      redis: undefined,
    };
  }

  const connections = openRedisConnections(config, logger);
  closers.push(() => connections.close());
  if (!(await waitUntilReady(connections.command, REDIS_START_TIMEOUT_MS))) {
    logger.error({ timeout_ms: REDIS_START_TIMEOUT_MS }, "Redis is not reachable yet; starting degraded and retrying in the background");
  }

  const prefix = config.REDIS_KEY_PREFIX;
  const instanceId = config.INSTANCE_ID ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const store = new RedisStatusStore({ redis: connections.command, ttlSeconds: config.STATUS_TTL_SECONDS, keyPrefix: prefix });
  const bus = new RedisChangeBus({
    publisher: connections.command,
    subscriber: connections.subscriber,
    channel: `${prefix}events`,
    logger: logger.child({ component: "bus" }),
  });
  closers.push(() => bus.close());
  const lease = new RedisPollLease({
    redis: connections.command,
    keyPrefix: prefix,
    instanceId,
    leaseMs: Math.round(config.POLL_INTERVAL_MS * LEASE_FACTOR),
    attemptsTtlMs,
    logger: logger.child({ component: "lease" }),
  });
  logger.info({ instance: instanceId }, "coordinating with other instances through Redis");

  // Pub/sub delivers at most once: once the subscription is back after a reconnect, watched generations are re-read.
  let resync: (() => void) | undefined;
  bus.onResubscribed(() => resync?.());
  // Starting while Redis is down is allowed: the subscription completes in the background.
  let startTimer: NodeJS.Timeout | undefined;
  await Promise.race([
    bus.ready().catch(() => undefined),
    new Promise((resolve) => (startTimer = setTimeout(resolve, REDIS_START_TIMEOUT_MS))),
  ]);
  clearTimeout(startTimer);
  const budget = new RedisRequestBudget({
    redis: connections.command,
    keyPrefix: prefix,
    settings: budgetSettings(config),
    leaseMs: config.UPSTREAM_TIMEOUT_MS + 5000,
    logger: logger.child({ component: "budget" }),
  });
  const webhookTokens = new RedisWebhookTokens(connections.command, prefix, config.WEBHOOK_TOKEN_TTL_SECONDS);
  return {
    store,
    bus,
    lease,
    budget,
    webhookTokens,
    redis: connections.command,
    redisSubscriber: connections.subscriber,
    onBusResync: (callback) => (resync = callback),
  };
}

function budgetSettings(config: Config): BudgetSettings {
  return {
    ratePerSecond: config.UPSTREAM_MAX_RPS,
    maxConcurrent: config.UPSTREAM_MAX_CONCURRENT,
    reservedForClients: config.UPSTREAM_CLIENT_RESERVE,
  };
}

const REDIS_START_TIMEOUT_MS = 5000;
