/**
 * A cap on the TCP connections one relay process accepts. Every WebSocket
 * and SSE stream uses an open file. Past the process' open-file limit,
 * accept() fails with EMFILE and new connections are closed unseen (the
 * capacity benchmark lost 1,273 of 21,000 that way), and new Redis and
 * Runblob connections fail as well. With `server.maxConnections` below that
 * limit, Node closes each connection past the cap on arrival instead, and
 * the relay logs it and counts it in a metric.
 */
import { readFileSync } from "node:fs";
import type { Server } from "node:net";
import type { Counter } from "prom-client";
import type { LevelLogger, RepeatLimiter } from "../logging/repeat-limiter.js";

/** Open files kept free under the limit for Redis, logs and the process itself, besides the Runblob connections. */
export const FILE_RESERVE = 256;

/**
 * Reads the soft open-file limit of this process from /proc/self/limits.
 * Returns undefined where that file does not exist (not Linux) or shows no number.
 */
export function openFileLimit(limitsFile = "/proc/self/limits"): number | undefined {
  let text: string;
  try {
    text = readFileSync(limitsFile, "utf8");
  } catch {
    return undefined;
  }
  const match = /^Max open files\s+(\d+|unlimited)\s+/m.exec(text);
  if (match === null || match[1] === "unlimited") return undefined;
  return Number(match[1]);
}

/**
 * Returns the connection cap: MAX_CONNECTIONS when set (0 turns the cap off),
 * else the open-file limit minus the Runblob connections (UPSTREAM_CONNECTIONS)
 * and FILE_RESERVE.
 */
export function connectionCap(configured: number | undefined, fileLimit: number | undefined, upstreamConnections: number): number | undefined {
  if (configured !== undefined) return configured === 0 ? undefined : configured;
  if (fileLimit === undefined) return undefined;
  return Math.max(1, fileLimit - upstreamConnections - FILE_RESERVE);
}

/** Sets the cap on `server`, counts every connection it turns away and logs them through the repeat limiter. */
export function applyConnectionCap(
  server: Server,
  cap: number | undefined,
  dependencies: { logger: LevelLogger; logLimiter: RepeatLimiter; rejected: Counter },
): void {
  if (cap === undefined) return;
  server.maxConnections = cap;
  server.on("drop", () => {
    dependencies.rejected.inc();
    dependencies.logLimiter.log(
      dependencies.logger,
      "warn",
      "connection-cap",
      { max_connections: cap },
      "connection refused: this instance has MAX_CONNECTIONS open; add instances or raise the open-file limit",
    );
  });
}
