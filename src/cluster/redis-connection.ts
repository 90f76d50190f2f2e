/**
 * Opens the relay's two Redis connections (commands, and pub/sub
 * subscriptions) for a single node, a Sentinel deployment or a Cluster.
 *
 * The command connection has no offline queue: while Redis is unreachable,
 * commands fail at once and the relay falls back to local work, instead of
 * queueing without bound.
 */
import { Cluster, Redis } from "ioredis";
import type { RedisOptions } from "ioredis";
import type { Logger } from "pino";
import type { Config } from "../config/env.js";

export type RedisConnection = Redis | Cluster;

export interface RedisConnections {
  command: RedisConnection;
  subscriber: RedisConnection;
  close(): Promise<void>;
}

/** The subscriber keeps an offline queue, so SUBSCRIBE sent while it connects waits for the connection. */
const SUBSCRIBER_OPTIONS: RedisOptions = { enableOfflineQueue: true };

function hostPorts(list: string): Array<{ host: string; port: number }> {
  return list.split(",").map((entry) => {
    const separator = entry.lastIndexOf(":");
    return { host: entry.slice(0, separator), port: Number(entry.slice(separator + 1)) };
  });
}

export function openRedisConnections(config: Config, logger: Logger): RedisConnections {
  const common: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // Reconnect quickly at first, then every 2 s, for as long as it takes.
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000),
    ...(config.REDIS_PASSWORD === undefined ? {} : { password: config.REDIS_PASSWORD }),
  };

  let command: RedisConnection;
  let subscriber: RedisConnection;
  if (config.REDIS_CLUSTER_NODES !== undefined) {
    const nodes = hostPorts(config.REDIS_CLUSTER_NODES);
    const redisOptions = config.REDIS_PASSWORD === undefined ? {} : { password: config.REDIS_PASSWORD };
    command = new Cluster(nodes, { enableOfflineQueue: false, redisOptions });
    // The subscriber keeps its offline queue, so SUBSCRIBE is sent again after a reconnect.
    subscriber = new Cluster(nodes, { redisOptions });
  } else if (config.REDIS_SENTINELS !== undefined) {
    const sentinelOptions = { ...common, sentinels: hostPorts(config.REDIS_SENTINELS), name: config.REDIS_SENTINEL_NAME };
    command = new Redis({ ...sentinelOptions, connectionName: "relay" });
    subscriber = new Redis({ ...sentinelOptions, ...SUBSCRIBER_OPTIONS, connectionName: "relay-subscriber" });
  } else {
    command = new Redis(config.REDIS_URL!, { ...common, connectionName: "relay" });
    subscriber = new Redis(config.REDIS_URL!, { ...common, ...SUBSCRIBER_OPTIONS, connectionName: "relay-subscriber" });
  }

  logStateChanges(command, "commands", logger);
  logStateChanges(subscriber, "subscriber", logger);
  return {
    command,
    subscriber,
    async close() {
      await Promise.all([command, subscriber].map(closeConnection));
    },
  };
}

/**
 * QUIT when Redis is reachable, so pending replies arrive; otherwise, or when QUIT takes longer than
 * a second, drop the connection. QUIT on a disconnected subscriber would wait in its offline queue
 * for as long as Redis stays down.
 */
async function closeConnection(connection: RedisConnection): Promise<void> {
  if (connection.status === "ready") {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      connection.quit().catch(() => undefined),
      new Promise((resolve) => (timer = setTimeout(resolve, QUIT_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
  }
  connection.disconnect();
}

const QUIT_TIMEOUT_MS = 1000;

/** Resolves once the connection is ready, or after `timeoutMs` (the relay then starts degraded). */
export async function waitUntilReady(connection: RedisConnection, timeoutMs: number): Promise<boolean> {
  if (connection.status === "ready") return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      connection.off("ready", onReady);
      resolve(false);
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    connection.once("ready", onReady);
  });
}

/**
 * Logs a connection's state changes once each, not every reconnect attempt.
 * The `error` listener also keeps ioredis from crashing the process with an
 * unhandled error event.
 */
function logStateChanges(connection: RedisConnection, name: string, logger: Logger): void {
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
