/**
 * One browser's WebSocket: parses its subscribe and unsubscribe messages and
 * receives the statuses of every generation it watches.
 *
 * Per generation the connection remembers the last version it sent and drops
 * anything not newer, so a subscriber sees each version at most once and in
 * increasing order even when a snapshot read races a published change.
 *
 * Slow clients: while the socket holds more than `conflateBytes` unsent
 * bytes, messages for a generation are held in a PendingMessages map that
 * keeps only the latest status per generation, and written when the socket
 * drains. Past `maxBufferedBytes` the connection is dropped.
 */
import type { Writable } from "node:stream";
import type { WebSocket } from "ws";
import type { FastifyBaseLogger as Logger } from "fastify";
import type { FanoutHub, Sink } from "./fanout-hub.js";
import { EncodedStatus, wsErrorFrame, wsTimeoutFrame, wsUpstreamFrame } from "./frames.js";
import { StatusPendingError } from "../watch/status-reader.js";
import type { StatusReader } from "../watch/status-reader.js";
import { UpstreamError } from "../upstream/errors.js";
import { clientMessageSchema } from "../wire/relay.js";
import type { ErrorCode } from "../wire/relay.js";
import { isFinalStatus } from "../wire/upstream.js";
import type { PushMessageType, RejectionReason, TransportMetrics } from "../metrics/relay-metrics.js";
import type { PushConnectionStats } from "../metrics/state-gauges.js";
import type { RepeatLimiter } from "../logging/repeat-limiter.js";
import { PendingMessages } from "./pending-messages.js";
import { sendText } from "./websocket-wire.js";

export interface WebSocketLimits {
  maxSubscriptions: number;
  maxMessagesPerSecond: number;
  /** Unsent bytes above which the connection is dropped. */
  maxBufferedBytes: number;
  /** Unsent bytes above which statuses are held and conflated instead of written. */
  conflateBytes: number;
}

export interface WebSocketContext {
  /** The TCP socket under the WebSocket: its `drain` event releases held messages. */
  rawSocket: Pick<Writable, "writableNeedDrain" | "on" | "off">;
  metrics: TransportMetrics;
  logLimiter: RepeatLimiter;
  /**
   * Checked before each subscribe: false means the caller may not read the
   * generation, which gets the response for an unknown id. Undefined: every generation is readable.
   */
  authorize?: ((generationId: string) => Promise<boolean>) | undefined;
}

/** The rejection counted for each error code sent in response to a client message. */
const REJECTION_BY_CODE: Partial<Record<ErrorCode, RejectionReason>> = {
  invalid_message: "validation",
  invalid_generation_id: "validation",
  not_found: "not_found",
  upstream_error: "upstream",
  too_many_subscriptions: "too_many_subscriptions",
  rate_limited: "rate_limited",
};

/** Close codes (RFC 6455, section 7.4.1). */
export const CLOSE_POLICY_VIOLATION = 1008;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_SERVICE_RESTART = 1012;
export const CLOSE_TRY_AGAIN_LATER = 1013;

export class WebSocketConnection implements Sink, PushConnectionStats {
  /** Last version sent or held per subscribed generation (0 when none yet). */
  readonly #subscriptions = new Map<string, number>();
  readonly #pending = new PendingMessages();
  /** Subscribe requests waiting for their access check, with the version to resume after. */
  readonly #authorizing = new Map<string, number>();
  readonly #onDrain = () => this.#flush();
  #windowStartedAt = 0;
  #messagesInWindow = 0;
  #closed = false;
  /** Set by the ping sweep; cleared when the pong comes back. */
  awaitingPong = false;

  constructor(
    readonly socket: WebSocket,
    private readonly hub: FanoutHub,
    private readonly reader: StatusReader,
    private readonly limits: WebSocketLimits,
    private readonly logger: Logger,
    private readonly context: WebSocketContext,
  ) {
    context.rawSocket.on("drain", this.#onDrain);
  }

  get subscriptionCount(): number {
    return this.#subscriptions.size;
  }

  get pendingMessages(): number {
    return this.#pending.size;
  }

  get bufferedBytes(): number {
    return this.socket.bufferedAmount;
  }

  handleMessage(data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (this.#closed) return;
    if (!this.#withinRateLimit()) {
      this.logger.warn({ limit: this.limits.maxMessagesPerSecond }, "websocket closed: message rate limit exceeded");
      this.context.metrics.rejected("rate_limited");
      this.socket.close(CLOSE_POLICY_VIOLATION, "message rate limit exceeded");
      return;
    }
    if (isBinary) {
      this.#sendError("invalid_message", "binary frames are not accepted: send JSON text frames");
      return;
    }

    let json: unknown;
    try {
      json = JSON.parse(Buffer.isBuffer(data) ? data.toString("utf8") : Buffer.from(data as ArrayBuffer).toString("utf8"));
    } catch {
      this.#sendError("invalid_message", 'message is not valid JSON: send {"type":"subscribe","generation_id":"<uuid>"}');
      return;
    }

    const parsed = clientMessageSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const field = issue.path.join(".");
      const message = field === "" || issue.message.includes(field) ? issue.message : `${field}: ${issue.message}`;
      this.#sendError(field === "generation_id" ? "invalid_generation_id" : "invalid_message", message);
      return;
    }

    const message = parsed.data;
    if (message.type === "subscribe") this.#authorizeThenSubscribe(message.generation_id, message.after_version ?? 0);
    else this.#unsubscribe(message.generation_id);
  }

  deliverStatus(generationId: string, status: EncodedStatus): void {
    const lastSent = this.#subscriptions.get(generationId);
    if (lastSent === undefined) return;
    // A final status passes even at a lower version: it ends the subscription, so it is sent at most once.
    const final = isFinalStatus(status.stored.status.status);
    if (status.version <= lastSent && !final) return;

    if (final) this.#forget(generationId);
    else this.#subscriptions.set(generationId, status.version);

    if (!this.#mustHold()) {
      this.#write("status", status.wsFrame, status.wsWireFrame);
      return;
    }
    const replaced = this.#pending.holdStatus(generationId, status.wsFrame);
    if (replaced > 0) this.context.metrics.conflated.inc(replaced);
  }

  /** Advisory, so a congested socket skips it rather than queueing it. */
  deliverUpstream(state: "degraded" | "ok"): void {
    if (this.#subscriptions.size === 0 || this.#mustHold()) return;
    this.#write("upstream", wsUpstreamFrame(state));
  }

  deliverTimeout(generationId: string): void {
    if (!this.#forget(generationId)) return;
    this.#deliverEnd(generationId, { type: "timeout", frame: wsTimeoutFrame(generationId) });
  }

  deliverError(generationId: string, code: "not_found" | "upstream_error", message: string): void {
    if (!this.#subscriptions.has(generationId)) return;
    const pending = { type: "error" as const, frame: wsErrorFrame(code, message, generationId) };
    if (code === "not_found") {
      this.#forget(generationId);
      this.#deliverEnd(generationId, pending);
      return;
    }
    if (!this.#mustHold()) {
      this.#write(pending.type, pending.frame);
      return;
    }
    const replaced = this.#pending.holdError(generationId, pending);
    if (replaced > 0) this.context.metrics.conflated.inc(replaced);
  }

  /** Releases every subscription and held message; called once when the socket closes. */
  dispose(): void {
    this.#closed = true;
    this.context.rawSocket.off("drain", this.#onDrain);
    this.#pending.clear();
    for (const generationId of this.#subscriptions.keys()) this.hub.remove(generationId, this);
    this.#subscriptions.clear();
  }

  /**
   * Runs the access check before #subscribe, so a generation the caller may
   * not read is never registered with the hub: no status of it can reach this
   * socket and the relay does not poll it for this subscriber.
   */
  #authorizeThenSubscribe(generationId: string, afterVersion: number): void {
    const authorize = this.context.authorize;
    if (authorize === undefined || this.#subscriptions.has(generationId)) {
      this.#subscribe(generationId, afterVersion);
      return;
    }
    if (this.#authorizing.has(generationId)) {
      this.#authorizing.set(generationId, afterVersion);
      return;
    }
    // Checks in flight count as subscriptions, so a flood of subscribes cannot queue unbounded checks.
    if (this.#subscriptions.size + this.#authorizing.size >= this.limits.maxSubscriptions) {
      this.#sendError(
        "too_many_subscriptions",
        `this connection already watches ${this.limits.maxSubscriptions} generations, the maximum: unsubscribe from one first`,
        generationId,
      );
      return;
    }

    this.#authorizing.set(generationId, afterVersion);
    authorize(generationId).then(
      (allowed) => {
        const latestAfterVersion = this.#authorizing.get(generationId);
        this.#authorizing.delete(generationId);
        // Undefined: the client unsubscribed while the check ran.
        if (this.#closed || latestAfterVersion === undefined) return;
        if (allowed) this.#subscribe(generationId, latestAfterVersion);
        else this.#sendError("not_found", "generation not found", generationId);
      },
      (error: unknown) => {
        this.#authorizing.delete(generationId);
        if (this.#closed) return;
        this.context.logLimiter.log(this.logger, "error", "websocket-authorize", { generation_id: generationId, err: error }, "could not check access for a subscribe");
        this.socket.close(CLOSE_TRY_AGAIN_LATER, "could not check access; reconnect shortly");
      },
    );
  }

  #subscribe(generationId: string, afterVersion: number): void {
    if (this.#subscriptions.has(generationId)) return;
    if (this.#subscriptions.size >= this.limits.maxSubscriptions) {
      this.#sendError(
        "too_many_subscriptions",
        `this connection already watches ${this.limits.maxSubscriptions} generations, the maximum: unsubscribe from one first`,
        generationId,
      );
      return;
    }

    // Register before reading, so a change published during the read is not missed.
    this.#subscriptions.set(generationId, afterVersion);
    this.hub.add(generationId, this);

    this.reader.current(generationId, { handOffToScheduler: true }).then(
      (stored) => {
        if (!this.#subscriptions.has(generationId)) return;
        // A version below after_version, with nothing sent since, means the store lost its history
        // (a restart without Redis): start over so the client gets the current status, not silence.
        if (stored.status.version < afterVersion && this.#subscriptions.get(generationId) === afterVersion) {
          this.#subscriptions.set(generationId, 0);
        }
        const final = isFinalStatus(stored.status.status);
        if (final && stored.status.version === afterVersion) {
          // The client already holds the final status: nothing more will come.
          this.#forget(generationId);
          return;
        }
        this.deliverStatus(generationId, new EncodedStatus(stored));
      },
      (error: unknown) => this.#failSubscription(generationId, error),
    );
  }

  #failSubscription(generationId: string, error: unknown): void {
    // Nothing known yet: the scheduler's next poll publishes the first status to this subscription.
    if (!this.#subscriptions.has(generationId) || error instanceof StatusPendingError) return;
    if (error instanceof UpstreamError && error.statusCode === 404) {
      this.#forget(generationId);
      this.#sendError("not_found", "generation not found", generationId);
      return;
    }
    // The subscription stays: the scheduler keeps polling and pushes the status once Runblob responds.
    const kind = error instanceof UpstreamError ? `${error.kind}:${error.statusCode ?? ""}` : "internal";
    this.context.logLimiter.log(
      this.logger,
      "warn",
      `websocket-subscribe-read:${kind}`,
      { generation_id: generationId, err: error },
      "could not read the status for a new subscriber",
    );
    this.#sendError("upstream_error", "could not read the status from Runblob; the relay keeps trying", generationId);
  }

  #unsubscribe(generationId: string): void {
    this.#authorizing.delete(generationId);
    this.#forget(generationId);
  }

  #forget(generationId: string): boolean {
    if (!this.#subscriptions.delete(generationId)) return false;
    this.hub.remove(generationId, this);
    return true;
  }

  #withinRateLimit(): boolean {
    const now = Date.now();
    if (now - this.#windowStartedAt >= 1000) {
      this.#windowStartedAt = now;
      this.#messagesInWindow = 0;
    }
    this.#messagesInWindow += 1;
    return this.#messagesInWindow <= this.limits.maxMessagesPerSecond;
  }

  /** Responds to a client message with an error, written at once and never held. */
  #sendError(code: ErrorCode, message: string, generationId?: string): void {
    const reason = REJECTION_BY_CODE[code];
    if (reason !== undefined) this.context.metrics.rejected(reason);
    this.#write("error", wsErrorFrame(code, message, generationId));
  }

  /** Writes or holds the last message of a subscription, after anything already held for it. */
  #deliverEnd(generationId: string, message: { type: PushMessageType; frame: string }): void {
    if (this.#mustHold()) this.#pending.holdEnd(generationId, message);
    else this.#write(message.type, message.frame);
  }

  /**
   * True while messages must be held, because something is held already (so
   * order is kept) or the socket is over the conflation mark. The test
   * includes the socket's own `writableNeedDrain`, so a held message always
   * has a `drain` event coming to release it.
   */
  #mustHold(): boolean {
    if (!this.#pending.isEmpty) return true;
    return this.context.rawSocket.writableNeedDrain && this.socket.bufferedAmount > this.limits.conflateBytes;
  }

  /** Writes held messages, oldest generation first, until the socket is congested again or nothing is held. */
  #flush(): void {
    while (!this.#closed && !this.#pending.isEmpty) {
      if (this.context.rawSocket.writableNeedDrain && this.socket.bufferedAmount > this.limits.conflateBytes) return;
      for (const message of this.#pending.shift()) this.#write(message.type, message.frame);
    }
  }

  /**
   * Writes one frame, or drops the connection when the client has stopped
   * reading and its unsent data passed the limit, so one slow browser cannot
   * grow the relay's memory.
   */
  /** Writes one message; `wire` is the same message already framed, shared by every subscriber of a change. */
  #write(type: PushMessageType, frame: Buffer | string, wire?: Buffer): void {
    if (this.#closed || this.socket.readyState !== this.socket.OPEN) return;
    if (this.socket.bufferedAmount > this.limits.maxBufferedBytes) {
      this.context.logLimiter.log(
        this.logger,
        "warn",
        "websocket-slow-consumer",
        { buffered_bytes: this.socket.bufferedAmount, limit: this.limits.maxBufferedBytes },
        "websocket closed: client is not reading",
      );
      this.#closed = true;
      const { metrics } = this.context;
      metrics.slowConsumerDisconnects.inc();
      metrics.dropped.inc(1 + this.#pending.clear());
      this.socket.terminate();
      return;
    }
    sendText(this.socket, frame, wire);
    const { metrics } = this.context;
    metrics.messages[type].inc();
    metrics.bytes.inc(typeof frame === "string" ? Buffer.byteLength(frame) : frame.length);
  }
}
