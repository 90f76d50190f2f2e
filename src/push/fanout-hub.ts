/**
 * The fan-out hub maps each generation to its local subscribers and hands
 * every watch event to each of them. It consumes the change bus, so changes
 * observed by any poller reach subscribers the same way.
 */
import type { Logger } from "pino";
import type { WatchEvent } from "../bus/change-bus.js";
import type { WatchScheduler } from "../watch/watch-scheduler.js";
import { isFinalStatus } from "../wire/upstream.js";
import { EncodedStatus } from "./frames.js";
import type { RelayMetrics } from "../metrics/relay-metrics.js";
import type { RepeatLimiter } from "../logging/repeat-limiter.js";

export interface FanoutHubOptions {
  scheduler: Pick<WatchScheduler, "addSubscriber" | "removeSubscriber">;
  logger: Logger;
  /** Receives one push latency sample per change delivered to local subscribers. */
  metrics?: Pick<RelayMetrics, "pushLatency">;
  logLimiter?: RepeatLimiter;
}

/** A subscriber of one or more generations (an SSE stream, or a WebSocket connection). */
export interface Sink {
  /** Called with every change; a sink drops versions it has already sent. */
  deliverStatus(generationId: string, status: EncodedStatus): void;
  deliverTimeout(generationId: string): void;
  deliverError(generationId: string, code: "not_found" | "upstream_error", message: string): void;
  /** Optional: Runblob became degraded or recovered (`upstream` message or SSE event). */
  deliverUpstream?(state: "degraded" | "ok"): void;
}

export class FanoutHub {
  readonly #sinks = new Map<string, Set<Sink>>();
  /** Highest version handed to this instance's subscribers, per generation with subscribers. */
  readonly #delivered = new Map<string, number>();
  readonly #scheduler: Pick<WatchScheduler, "addSubscriber" | "removeSubscriber">;
  readonly #logger: Logger;
  readonly #metrics: FanoutHubOptions["metrics"];
  readonly #logLimiter: RepeatLimiter | undefined;

  constructor(options: FanoutHubOptions) {
    this.#scheduler = options.scheduler;
    this.#logger = options.logger;
    this.#metrics = options.metrics;
    this.#logLimiter = options.logLimiter;
  }

  /** Number of generations with at least one local subscriber. */
  get generations(): number {
    return this.#sinks.size;
  }

  subscriberCount(generationId: string): number {
    return this.#sinks.get(generationId)?.size ?? 0;
  }

  /** Registers a sink; returns false when it was already registered for this generation. */
  add(generationId: string, sink: Sink): boolean {
    let sinks = this.#sinks.get(generationId);
    if (sinks === undefined) {
      sinks = new Set();
      this.#sinks.set(generationId, sinks);
    }
    if (sinks.has(sink)) return false;
    sinks.add(sink);
    this.#scheduler.addSubscriber(generationId);
    return true;
  }

  remove(generationId: string, sink: Sink): void {
    const sinks = this.#sinks.get(generationId);
    if (sinks === undefined || !sinks.delete(sink)) return;
    if (sinks.size === 0) {
      this.#sinks.delete(generationId);
      this.#delivered.delete(generationId);
    }
    this.#scheduler.removeSubscriber(generationId);
  }

  /** Delivers one event to every local subscriber of its generation. */
  handle(event: WatchEvent): void {
    if (event.kind === "poll_hint") return;
    if (event.kind === "upstream") {
      this.#broadcastUpstream(event.state);
      return;
    }
    const generationId = event.kind === "status" ? event.change.generationId : event.generationId;
    const sinks = this.#sinks.get(generationId);
    if (sinks === undefined) return;

    // The same change can arrive twice (through Redis and directly while a connection is down, or
    // from two pollers after a failover): an instance drops a version it has already delivered.
    // A final status always passes, so a version mix-up after a Redis outage cannot swallow it.
    if (event.kind === "status") {
      const version = event.change.status.version;
      const final = isFinalStatus(event.change.status.status);
      if (!final && version <= (this.#delivered.get(generationId) ?? 0)) return;
      this.#delivered.set(generationId, version);
    }

    // Events that end every subscription detach the set first, so sinks that
    // remove themselves while being called do not disturb the loop.
    const ends = event.kind !== "upstream_error" && (event.kind !== "status" || isFinalStatus(event.change.status.status));
    if (ends) this.#detach(generationId, sinks);

    const deliver = deliveryFor(event, generationId);
    for (const sink of sinks) {
      // One failing sink must not stop delivery to the others.
      try {
        deliver(sink);
      } catch (error) {
        this.#logDeliveryFailure(generationId, error);
      }
    }

    // Once per change, after the writes (sinks write synchronously or hold the message for a congested socket).
    // NOTE: observedAtMs comes from the clock of the instance that polled, so clock skew between instances adds to this.
    if (event.kind === "status" && this.#metrics !== undefined) {
      this.#metrics.pushLatency.observe(Math.max(0, Date.now() - event.change.observedAtMs) / 1000);
    }
  }

  #logDeliveryFailure(generationId: string, error: unknown): void {
    const fields = { generation_id: generationId, err: error };
    const message = "delivery to a subscriber failed";
    if (this.#logLimiter === undefined) this.#logger.error(fields, message);
    else this.#logLimiter.log(this.#logger, "error", `hub-delivery:${(error as Error)?.name ?? "unknown"}`, fields, message);
  }

  /** Tells every local subscriber, once per connection, whether Runblob is degraded; statuses stay as they were. */
  #broadcastUpstream(state: "degraded" | "ok"): void {
    const told = new Set<Sink>();
    for (const sinks of this.#sinks.values()) {
      for (const sink of sinks) {
        if (told.has(sink)) continue;
        told.add(sink);
        try {
          sink.deliverUpstream?.(state);
        } catch (error) {
          this.#logger.error({ err: error }, "delivery of an upstream state to a subscriber failed");
        }
      }
    }
  }

  #detach(generationId: string, sinks: Set<Sink>): void {
    this.#sinks.delete(generationId);
    this.#delivered.delete(generationId);
    for (let i = 0; i < sinks.size; i += 1) this.#scheduler.removeSubscriber(generationId);
  }
}

/** The call that hands one event to a sink, built once per event rather than once per subscriber. */
function deliveryFor(event: WatchEvent, generationId: string): (sink: Sink) => void {
  switch (event.kind) {
    case "status": {
      const encoded = new EncodedStatus(event.change);
      return (sink) => sink.deliverStatus(generationId, encoded);
    }
    case "timeout":
      return (sink) => sink.deliverTimeout(generationId);
    case "not_found":
      return (sink) => sink.deliverError(generationId, "not_found", "generation not found");
    case "upstream_error":
      return (sink) => sink.deliverError(generationId, "upstream_error", event.message);
    case "poll_hint":
    case "upstream":
      return () => {};
  }
}
