/**
 * Gauges of the relay's current state. Each one reads its value from the
 * owning object's public getters in collect(), at scrape time, so nothing on
 * the polling or push paths updates them.
 */
import { Gauge } from "prom-client";
import type { Registry } from "prom-client";
import { TRANSPORTS } from "./relay-metrics.js";
import type { Transport } from "./relay-metrics.js";

/** Figures of one open push connection that the gauges add up. */
export interface PushConnectionStats {
  /** Generations this connection is subscribed to. */
  readonly subscriptionCount: number;
  /** Messages held back while the socket is congested. */
  readonly pendingMessages: number;
  /** Bytes written to the socket that the kernel has not taken yet. */
  readonly bufferedBytes: number;
}

export interface StateSources {
  scheduler: { readonly size: number; readonly pollsInFlight: number; readonly failingCount: number; overdueCount(): number };
  /** Poll leases this instance holds; absent with a single instance (no leases). */
  leases?: { readonly held: number };
  hub: { readonly generations: number };
  connections: Record<Transport, Iterable<PushConnectionStats> & { readonly size: number }>;
  /** Redis connections by role; empty when the relay runs with the in-memory store. */
  redis: Array<{ role: string; connection: { readonly status: string } }>;
  upstreamHealth: { readonly credentialsRejected: boolean };
}

export function registerStateGauges(registry: Registry, sources: StateSources): void {
  const registers = [registry];

  new Gauge({
    name: "relay_watched_generations",
    help: "Generations the scheduler polls: those with subscribers, plus recently created or abandoned ones in their grace period.",
    registers,
    collect() {
      this.set(sources.scheduler.size);
    },
  });

  new Gauge({
    name: "relay_polls_in_flight",
    help: "Status polls this instance is making now.",
    registers,
    collect() {
      this.set(sources.scheduler.pollsInFlight);
    },
  });

  new Gauge({
    name: "relay_polls_overdue",
    help: "Watched generations whose poll is past due and not running (concurrency limit, deferred by budget or breaker).",
    registers,
    collect() {
      this.set(sources.scheduler.overdueCount());
    },
  });

  new Gauge({
    name: "relay_generations_failing",
    help: "Watched generations whose last poll failed.",
    registers,
    collect() {
      this.set(sources.scheduler.failingCount);
    },
  });

  new Gauge({
    name: "relay_poll_leases_held",
    help: "Generations this instance holds the poll lease of (polls for the cluster); 0 without Redis.",
    registers,
    collect() {
      this.set(sources.leases?.held ?? 0);
    },
  });

  new Gauge({
    name: "relay_subscribed_generations",
    help: "Generations with at least one subscriber on this instance.",
    registers,
    collect() {
      this.set(sources.hub.generations);
    },
  });

  new Gauge({
    name: "relay_open_connections",
    help: "Open push connections on this instance, by transport.",
    labelNames: ["transport"] as const,
    registers,
    collect() {
      for (const transport of TRANSPORTS) this.labels(transport).set(sources.connections[transport].size);
    },
  });

  // The three gauges below walk every connection: O(connections) per scrape, nothing per message.
  new Gauge({
    name: "relay_subscribers",
    help: "Subscriptions on this instance, by transport (a WebSocket may hold many, an SSE stream holds one).",
    labelNames: ["transport"] as const,
    registers,
    collect() {
      for (const transport of TRANSPORTS) this.labels(transport).set(sum(sources.connections[transport], (c) => c.subscriptionCount));
    },
  });

  new Gauge({
    name: "relay_push_pending_messages",
    help: "Messages held back for congested connections, by transport; at most a few per subscription, because newer statuses replace older ones.",
    labelNames: ["transport"] as const,
    registers,
    collect() {
      for (const transport of TRANSPORTS) this.labels(transport).set(sum(sources.connections[transport], (c) => c.pendingMessages));
    },
  });

  new Gauge({
    name: "relay_push_buffered_bytes",
    help: "Bytes written to push connections and not yet taken by the kernel, by transport.",
    labelNames: ["transport"] as const,
    registers,
    collect() {
      for (const transport of TRANSPORTS) this.labels(transport).set(sum(sources.connections[transport], (c) => c.bufferedBytes));
    },
  });

  new Gauge({
    name: "relay_redis_connection_ready",
    help: "1 while the Redis connection of this role is ready, 0 otherwise; absent with the in-memory store.",
    labelNames: ["role"] as const,
    registers,
    collect() {
      for (const { role, connection } of sources.redis) this.labels(role).set(connection.status === "ready" ? 1 : 0);
    },
  });

  new Gauge({
    name: "relay_upstream_credentials_rejected",
    help: "1 when Runblob recently responded with 401 or 403 to the relay's token and no request has succeeded since, 0 otherwise.",
    registers,
    collect() {
      this.set(sources.upstreamHealth.credentialsRejected ? 1 : 0);
    },
  });
}

function sum<T>(items: Iterable<T>, value: (item: T) => number): number {
  let total = 0;
  for (const item of items) total += value(item);
  return total;
}
