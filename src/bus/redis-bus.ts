/**
 * A ChangeBus over Redis pub/sub, shared by every relay instance: one JSON
 * message per WatchEvent on one channel.
 *
 * Ordering: Redis runs the commands of one connection in the order they were
 * sent, and subscribers receive the messages in the order they were published
 * (Redis documentation, "Redis Pub/Sub", https://redis.io/docs/manual/pubsub).
 * So the events one bus publishes through its publisher reach every
 * subscriber in publish order. Events published through different
 * connections, for example by two instances, have no order between them, and
 * consumers of status events rely on `version` for that case.
 *
 * Events published here reach this instance's own handler at once, during
 * publish(), and the copy that comes back from Redis is dropped: every
 * message carries the id of the bus that published it (`origin`). So local
 * subscribers wait for no Redis round trip, and this bus' own events still
 * reach its handler once, in publish order.
 *
 * NOTE: Redis pub/sub delivers each message at most once. A subscriber that is
 * disconnected misses the events published meanwhile, even though ioredis
 * resubscribes on reconnect. A consumer that must not miss a status reads it
 * back from the store.
 */
import { randomUUID } from "node:crypto";
import type { RedisConnection as Redis } from "../cluster/redis-connection.js";
import { pino, type Logger } from "pino";
import { z } from "zod";
import { relayStatusSchema, type RelayStatus } from "../wire/relay.js";
import { generationIdOf } from "./change-bus.js";
import type { ChangeBus, WatchEvent } from "./change-bus.js";

export interface RedisChangeBusOptions {
  /** Connection for PUBLISH, owned by the caller. */
  publisher: Redis;
  /** Dedicated connection that this bus puts in subscriber mode, owned by the caller. */
  subscriber: Redis;
  /** Defaults to "relay:events". */
  channel?: string;
  logger?: Logger;
}

/**
 * A WatchEvent on the wire. A status event carries the stored JSON text once, as `json`,
 * and the receiver parses it into `status`.
 */
const busMessageSchema = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("status"),
    generationId: z.string().min(1),
    observedAtMs: z.number(),
    json: z.string(),
  }),
  z.object({ kind: z.literal("timeout"), generationId: z.string().min(1) }),
  z.object({ kind: z.literal("not_found"), generationId: z.string().min(1) }),
  z.object({ kind: z.literal("upstream_error"), generationId: z.string().min(1), message: z.string() }),
  z.object({ kind: z.literal("poll_hint"), generationId: z.string().min(1) }),
  z.object({ kind: z.literal("upstream"), state: z.enum(["degraded", "ok"]) }),
]);
type BusMessage = z.infer<typeof busMessageSchema>;

/** The publishing bus' id, read before the schema (which drops unknown keys, so older instances ignore it). */
const originSchema = z.object({ origin: z.string().optional() });

/** Minimum interval between two warnings about malformed messages. Each warning counts the messages since the previous one. */
const MALFORMED_LOG_INTERVAL_MS = 10_000;

export class RedisChangeBus implements ChangeBus {
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  private readonly channel: string;
  /** This bus' id in the `origin` of its messages, so their echo from Redis is recognised and dropped. */
  private readonly origin = randomUUID();
  private readonly logger: Logger;
  private readonly subscribed: Promise<void>;
  private handler: ((event: WatchEvent) => void) | null = null;
  private resubscribed: (() => void) | undefined;
  private closed = false;
  private publishFailing = false;
  private malformedSinceLastWarning = 0;
  private lastMalformedWarningMs = Number.NEGATIVE_INFINITY;

  constructor(options: RedisChangeBusOptions) {
    this.publisher = options.publisher;
    this.subscriber = options.subscriber;
    this.channel = options.channel ?? "relay:events";
    this.logger = options.logger ?? pino({ name: "change-bus" });

    // The listener dispatches to the handler registered at delivery time, so onEvent() works before
    // and after the subscription is ready. Messages that arrive while no handler is registered are dropped.
    this.subscriber.on("message", this.handleMessage);
    this.subscribed = this.subscriber.subscribe(this.channel).then(() => {
      this.logger.info({ channel: this.channel }, "change bus subscribed");
    });
    this.subscribed.catch((error: unknown) => {
      this.logger.error({ err: error, channel: this.channel }, "change bus failed to subscribe; subscribing again once Redis is reachable");
    });
    // ioredis renews only subscriptions that once succeeded, so one that failed (Redis down at
    // start-up) is sent again on every reconnect; SUBSCRIBE to a channel already subscribed is harmless.
    this.subscriber.on("ready", this.resubscribe);
  }

  private readonly resubscribe = (): void => {
    if (this.closed) return;
    this.subscriber.subscribe(this.channel).then(
      () => this.resubscribed?.(),
      (error: unknown) => {
        this.logger.warn({ err: error, channel: this.channel }, "change bus failed to subscribe again; retrying when the connection is ready next");
      },
    );
  };

  /**
   * Registers the call made each time Redis acknowledges the SUBSCRIBE sent
   * when the subscriber connection became ready, which is after every
   * reconnect. Events published from then on arrive, so a re-read of the
   * store started in this call misses nothing: an event published earlier
   * came after its store write, and the re-read returns that write.
   */
  onResubscribed(callback: () => void): void {
    this.resubscribed = callback;
  }

  /** Resolves once Redis has acknowledged SUBSCRIBE. Events published before that can be missed. */
  ready(): Promise<void> {
    return this.subscribed;
  }

  /**
   * Hands the event to this instance's handler, then publishes it to every
   * other instance through Redis. While Redis is unreachable the event
   * reaches this instance only; nothing is queued.
   */
  async publish(event: WatchEvent): Promise<void> {
    if (this.closed) {
      throw new Error(`publish failed: the change bus on channel ${this.channel} is closed`);
    }
    this.deliverLocally(event);
    if (this.publisher.status !== "ready") return;
    try {
      await this.publisher.publish(this.channel, JSON.stringify({ ...toBusMessage(event), origin: this.origin }));
      this.publishFailing = false;
    } catch (error) {
      if (!this.publishFailing) {
        this.publishFailing = true;
        this.logger.warn({ err: error, channel: this.channel }, "publish to Redis failed; delivering to this instance only");
      }
    }
  }

  private deliverLocally(event: WatchEvent): void {
    try {
      this.handler?.(event);
    } catch (error) {
      this.logger.error({ err: error, channel: this.channel, kind: event.kind, generation_id: generationIdOf(event) }, "change bus handler failed");
    }
  }

  onEvent(handler: (event: WatchEvent) => void): void {
    if (this.handler) {
      throw new Error("onEvent failed: a handler is already registered, and a ChangeBus has a single consumer");
    }
    this.handler = handler;
  }

  /**
   * Unsubscribes from the channel and removes this bus's listener, which returns the subscriber
   * connection to normal mode when it has no other subscriptions. Both connections stay open.
   */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.handler = null;
    this.subscriber.off("message", this.handleMessage);
    this.subscriber.off("ready", this.resubscribe);

    await this.subscribed.catch(() => undefined);
    if (this.subscriber.status === "end") {
      return;
    }
    try {
      await this.subscriber.unsubscribe(this.channel);
    } catch (error) {
      this.logger.warn({ err: error, channel: this.channel }, "change bus failed to unsubscribe on close");
    }
    this.logger.info({ channel: this.channel }, "change bus closed");
  }

  /**
   * Catches every error, because ioredis 6 rethrows an exception from a "message" listener as an
   * uncaught exception, which ends the process.
   */
  private readonly handleMessage = (channel: string, message: string): void => {
    if (channel !== this.channel || !this.handler) {
      return;
    }
    const event = this.parseMessage(message);
    if (!event) {
      return;
    }
    try {
      this.handler(event);
    } catch (error) {
      this.logger.error(
        { err: error, channel, kind: event.kind, generation_id: generationIdOf(event) },
        "change bus handler failed",
      );
    }
  };

  private parseMessage(message: string): WatchEvent | null {
    let data: unknown;
    try {
      data = JSON.parse(message);
    } catch {
      this.warnMalformed("message is not valid JSON", message);
      return null;
    }

    // This bus' own event, already delivered by publish().
    if (originSchema.safeParse(data).data?.origin === this.origin) return null;

    const parsed = busMessageSchema.safeParse(data);
    if (!parsed.success) {
      this.warnMalformed(z.prettifyError(parsed.error), message);
      return null;
    }
    if (parsed.data.kind !== "status") {
      return parsed.data;
    }

    const { generationId, observedAtMs, json } = parsed.data;
    let status: unknown;
    try {
      status = JSON.parse(json);
    } catch {
      this.warnMalformed("field json is not valid JSON", message);
      return null;
    }
    const statusCheck = relayStatusSchema.safeParse(status);
    if (!statusCheck.success) {
      this.warnMalformed(`field json is not a relay status: ${z.prettifyError(statusCheck.error)}`, message);
      return null;
    }
    if (statusCheck.data.generation_id !== generationId) {
      this.warnMalformed(`field json has generation_id ${statusCheck.data.generation_id}, not ${generationId}`, message);
      return null;
    }
    // `status` is the JSON.parse result, not zod's output, so its keys keep the order of `json`.
    return { kind: "status", change: { generationId, observedAtMs, json, status: status as RelayStatus } };
  }

  private warnMalformed(reason: string, message: string): void {
    this.malformedSinceLastWarning += 1;
    const nowMs = Date.now();
    if (nowMs - this.lastMalformedWarningMs < MALFORMED_LOG_INTERVAL_MS) {
      return;
    }
    this.logger.warn(
      {
        channel: this.channel,
        reason,
        message: message.slice(0, 200),
        malformed_count: this.malformedSinceLastWarning,
      },
      "change bus ignored a malformed message",
    );
    this.malformedSinceLastWarning = 0;
    this.lastMalformedWarningMs = nowMs;
  }
}

function toBusMessage(event: WatchEvent): BusMessage {
  if (event.kind === "status") {
    const { generationId, observedAtMs, json } = event.change;
    return { kind: "status", generationId, observedAtMs, json };
  }
  return event;
}
