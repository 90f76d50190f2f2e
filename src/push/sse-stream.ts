/**
 * One Server-Sent Events stream for one generation.
 *
 * The stream registers with the hub before the current status is read, and
 * holds back what arrives until it is opened, so nothing published during
 * the read is lost. Like the WebSocket connection, it drops versions at or
 * below the last one sent (or the client's Last-Event-ID).
 *
 * Slow clients: while `response.write` reports a full buffer and more than
 * `conflateBytes` are unsent, events are held in a PendingMessages map that
 * keeps only the latest status, and written on the response's `drain`
 * event. A final status waits there like any other, and the stream ends once
 * it is written. Past `maxBufferedBytes` the stream is dropped.
 */
import type { ServerResponse } from "node:http";
import type { FastifyBaseLogger as Logger } from "fastify";
import type { FanoutHub, Sink } from "./fanout-hub.js";
import { SSE_HEADERS, SSE_KEEPALIVE, sseEventFrame } from "./frames.js";
import type { EncodedStatus } from "./frames.js";
import { isFinalStatus } from "../wire/upstream.js";
import type { PushMessageType, TransportMetrics } from "../metrics/relay-metrics.js";
import type { PushConnectionStats } from "../metrics/state-gauges.js";
import type { RepeatLimiter } from "../logging/repeat-limiter.js";
import { PendingMessages } from "./pending-messages.js";

export interface SseLimits {
  /** Unsent bytes above which the stream is dropped. */
  maxBufferedBytes: number;
  /** Unsent bytes above which events are held and conflated instead of written. */
  conflateBytes: number;
}

export interface SseContext {
  metrics: TransportMetrics;
  logLimiter: RepeatLimiter;
}

export class SseStream implements Sink, PushConnectionStats {
  #lastVersion: number;
  #opened = false;
  /** No more events are accepted; the response ends once the held ones are written. */
  #ending = false;
  #ended = false;
  /** True when something other than a keep-alive comment was written since the keep-alive sweep's last visit. */
  #wroteSinceSweep = false;
  #heldStatus: EncodedStatus | undefined;
  #heldEnding: { type: PushMessageType; frame: string } | undefined;
  #onEnd: (() => void) | undefined;
  readonly #pending = new PendingMessages();

  constructor(
    readonly generationId: string,
    private readonly response: ServerResponse,
    private readonly hub: FanoutHub,
    lastEventId: number,
    private readonly limits: SseLimits,
    private readonly logger: Logger,
    private readonly context: SseContext,
  ) {
    this.#lastVersion = lastEventId;
    response.once("close", () => this.#dispose());
    response.on("drain", () => this.#flush());
  }

  get ended(): boolean {
    return this.#ended;
  }

  get subscriptionCount(): number {
    return this.#ending || this.#ended ? 0 : 1;
  }

  get pendingMessages(): number {
    return this.#pending.size;
  }

  get bufferedBytes(): number {
    return this.#ended ? 0 : this.response.writableLength;
  }

  /** Called once when the stream ends for any reason. */
  onEnd(callback: () => void): void {
    this.#onEnd = callback;
  }

  /** Sends the headers and the first status, then whatever arrived in the meantime. */
  open(first: EncodedStatus, extraHeaders: Record<string, string | string[] | number | undefined>, retryMs: number): void {
    if (this.#ended) return;
    this.response.writeHead(200, { ...extraHeaders, ...SSE_HEADERS });
    this.#opened = true;
    this.#write(undefined, `retry: ${retryMs}\n\n`);

    this.deliverStatus(this.generationId, first);
    const held = this.#heldStatus;
    this.#heldStatus = undefined;
    if (held !== undefined) this.deliverStatus(this.generationId, held);
    if (this.#heldEnding !== undefined) this.#endWith(this.#heldEnding.type, this.#heldEnding.frame);
  }

  deliverStatus(_generationId: string, status: EncodedStatus): void {
    // A final status passes even at a lower version (versions can repeat after a Redis outage), as in
    // the hub and the WebSocket connection: it ends the stream, so it is written at most once.
    const final = isFinalStatus(status.stored.status.status);
    if (this.#ending || this.#ended || (status.version <= this.#lastVersion && !(final && this.#opened))) return;
    if (!this.#opened) {
      if (this.#heldStatus === undefined || status.version > this.#heldStatus.version) this.#heldStatus = status;
      return;
    }

    this.#lastVersion = status.version;
    if (this.#mustHold()) {
      const replaced = this.#pending.holdStatus(this.generationId, status.sseFrame);
      if (replaced > 0) this.context.metrics.conflated.inc(replaced);
      if (final) this.#finish();
    } else if (final) {
      this.#finishWith("status", status.sseFrame);
    } else {
      this.#write("status", status.sseFrame);
    }
  }

  /** Advisory, so a congested stream skips it rather than queueing it. */
  deliverUpstream(state: "degraded" | "ok"): void {
    if (!this.#opened || this.#ending || this.#mustHold()) return;
    this.#write("upstream", sseEventFrame("upstream", { state }));
  }

  deliverTimeout(generationId: string): void {
    this.#endWith("timeout", sseEventFrame("timeout", { generation_id: generationId }));
  }

  deliverError(generationId: string, code: "not_found" | "upstream_error", message: string): void {
    const frame = sseEventFrame("error", { code, message, generation_id: generationId });
    if (code === "not_found") {
      this.#endWith("error", frame);
      return;
    }
    if (!this.#opened || this.#ending) return;
    if (!this.#mustHold()) {
      this.#write("error", frame);
      return;
    }
    const replaced = this.#pending.holdError(this.generationId, { type: "error", frame });
    if (replaced > 0) this.context.metrics.conflated.inc(replaced);
  }

  /**
   * Writes the keep-alive comment unless an event was written since the
   * previous call; called by the shared sweep, never by a per-stream timer.
   * Skipped while events are held: the stream is not idle.
   */
  keepAlive(): void {
    if (this.#wroteSinceSweep) {
      this.#wroteSinceSweep = false;
      return;
    }
    if (this.#opened && !this.#ending && !this.#ended && !this.#mustHold()) this.#write(undefined, SSE_KEEPALIVE);
    this.#wroteSinceSweep = false;
  }

  /**
   * Ends the stream, telling the browser when to reconnect (on shutdown, for
   * example). Held events are written first, whatever the buffer holds.
   */
  close(retryMs?: number): void {
    if (!this.#opened) {
      this.#dispose();
      return;
    }
    if (this.#ended) return;
    // Held events first, then the reconnect hint, then the end: #flush ends the response once
    // #ending is set and nothing is held, so the flag is set only after the hint is written.
    this.#flush(true);
    if (retryMs !== undefined) this.#write(undefined, `retry: ${retryMs}\n\n`);
    this.#ending = true;
    this.#end();
  }

  #endWith(type: PushMessageType, frame: string): void {
    if (this.#ending || this.#ended) return;
    if (!this.#opened) {
      this.#heldEnding = { type, frame };
      return;
    }
    if (this.#mustHold()) {
      this.#pending.holdEnd(this.generationId, { type, frame });
      this.#finish();
    } else {
      this.#finishWith(type, frame);
    }
  }

  /** Writes the last event and ends the response in the same write (one syscall for both). */
  #finishWith(type: PushMessageType, frame: Buffer | string): void {
    if (this.#ending || this.#ended) return;
    this.#ending = true;
    this.hub.remove(this.generationId, this);
    this.#write(type, frame, true);
    this.#dispose();
  }

  /** Accepts no more events and ends the response once the held ones are written. */
  #finish(): void {
    if (this.#ending || this.#ended) return;
    this.#ending = true;
    // Unsubscribed now, so the hub and scheduler stop counting this stream while its last events wait.
    this.hub.remove(this.generationId, this);
    if (this.#pending.isEmpty) this.#end();
  }

  #end(): void {
    if (this.#ended) return;
    this.response.end();
    this.#dispose();
  }

  /**
   * True while events must be held, because something is held already (so
   * order is kept) or the last write filled the response's buffer and more
   * than the conflation mark is unsent. Either way a `drain` event is coming.
   */
  #mustHold(): boolean {
    if (!this.#pending.isEmpty) return true;
    return this.response.writableNeedDrain && this.response.writableLength > this.limits.conflateBytes;
  }

  /** Writes held events until the response is congested again; with `all`, writes every one. */
  #flush(all = false): void {
    while (!this.#ended && !this.#pending.isEmpty) {
      if (!all && this.response.writableNeedDrain && this.response.writableLength > this.limits.conflateBytes) return;
      for (const message of this.#pending.shift()) this.#write(message.type, message.frame);
    }
    if (this.#ending && this.#pending.isEmpty) this.#end();
  }

  /**
   * Writes one event (`type`) or comment (`type` undefined), and ends the
   * response with it when `last` is set. Drops the stream instead when the
   * client stopped reading and its unsent data passed the limit.
   */
  #write(type: PushMessageType | undefined, chunk: Buffer | string, last = false): void {
    if (this.#ended) return;
    const { metrics } = this.context;
    if (this.response.writableLength > this.limits.maxBufferedBytes) {
      this.context.logLimiter.log(
        this.logger,
        "warn",
        "sse-slow-consumer",
        { generation_id: this.generationId, buffered_bytes: this.response.writableLength, limit: this.limits.maxBufferedBytes },
        "SSE stream closed: client is not reading",
      );
      metrics.slowConsumerDisconnects.inc();
      metrics.dropped.inc((type === undefined ? 0 : 1) + this.#pending.clear());
      this.response.destroy();
      this.#dispose();
      return;
    }
    if (last) this.response.end(chunk);
    else this.response.write(chunk);
    this.#wroteSinceSweep = true;
    if (type !== undefined) metrics.messages[type].inc();
    metrics.bytes.inc(typeof chunk === "string" ? Buffer.byteLength(chunk) : chunk.length);
  }

  #dispose(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#ending = true;
    this.#pending.clear();
    this.hub.remove(this.generationId, this);
    this.#onEnd?.();
  }
}
