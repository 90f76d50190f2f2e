/**
 * One Server-Sent Events stream for several generations (GET /v1/sora/events).
 *
 * Resume works per generation. Every event that moves a position carries the
 * whole cursor as its `id`: one entry per generation of `ids`, in order, each
 * the last version sent or `-` once nothing more will be sent for it. The
 * Last-Event-ID that a browser sends by itself when it reconnects therefore
 * restores every position at once. The cursor costs O(generations) per event
 * and stream; the status JSON is still serialized once per change and shared.
 *
 * Like the single-generation stream, each generation is registered with the
 * hub before its current status is read. Versions at or below the last one
 * sent are dropped, so a change published during the read is neither lost nor
 * sent twice. The headers go out first, so one slow read delays only its own
 * generation.
 */
import type { ServerResponse } from "node:http";
import type { FastifyBaseLogger as Logger } from "fastify";
import type { FanoutHub, Sink } from "./fanout-hub.js";
import { EncodedStatus, SSE_HEADERS, SSE_KEEPALIVE, sseEventFrame } from "./frames.js";
import type { StoredStatus } from "../store/status-store.js";
import { UpstreamError } from "../upstream/errors.js";
import { StatusPendingError } from "../watch/status-reader.js";
import { CURSOR_DONE } from "../wire/relay.js";
import type { StreamPosition } from "../wire/relay.js";
import { isFinalStatus } from "../wire/upstream.js";

export class MultiSseStream implements Sink {
  readonly #positions: StreamPosition[];
  readonly #indexById = new Map<string, number>();
  /** Generations whose position is not done yet. */
  #active = 0;
  #opened = false;
  #ended = false;
  /** True when something other than a keep-alive comment was written since the keep-alive sweep's last visit. */
  #wroteSinceSweep = false;
  #onEnd: (() => void) | undefined;

  constructor(
    readonly generationIds: readonly string[],
    positions: readonly StreamPosition[],
    private readonly response: ServerResponse,
    private readonly hub: FanoutHub,
    private readonly maxBufferedBytes: number,
    private readonly logger: Logger,
  ) {
    this.#positions = [...positions];
    generationIds.forEach((id, index) => this.#indexById.set(id, index));
    this.#active = this.#positions.filter((position) => position !== CURSOR_DONE).length;
    response.once("close", () => this.#dispose());
  }

  /** True when every generation is done, so there is nothing to stream. */
  get finished(): boolean {
    return this.#active === 0;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Called once when the stream ends for any reason. */
  onEnd(callback: () => void): void {
    this.#onEnd = callback;
  }

  /**
   * Sends the headers, then registers each generation that is not done and
   * reads its current status with `readCurrent`. A generation in `denied` (the
   * caller may not read it) gets the `not_found` error of an unknown id, and is
   * never registered or read, so the relay never polls it for this stream.
   */
  open(
    extraHeaders: Record<string, string | string[] | number | undefined>,
    retryMs: number,
    readCurrent: (generationId: string) => Promise<StoredStatus>,
    denied: ReadonlySet<string> = new Set(),
  ): void {
    if (this.#ended) return;
    this.response.writeHead(200, { ...extraHeaders, ...SSE_HEADERS });
    this.response.write(`retry: ${retryMs}\n\n`);
    this.#opened = true;

    this.generationIds.forEach((generationId, index) => {
      const after = this.#positions[index]!;
      if (after === CURSOR_DONE) return;
      if (denied.has(generationId)) {
        queueMicrotask(() => this.deliverError(generationId, "not_found", "generation not found"));
        return;
      }
      this.hub.add(generationId, this);
      readCurrent(generationId).then(
        (stored) => this.#deliverFirst(generationId, after, stored),
        (error: unknown) => this.#failFirst(generationId, error),
      );
    });
  }

  deliverStatus(generationId: string, status: EncodedStatus): void {
    const index = this.#indexById.get(generationId);
    if (index === undefined || this.#ended) return;
    const position = this.#positions[index]!;
    if (position === CURSOR_DONE || status.version <= position) return;

    const final = isFinalStatus(status.stored.status.status);
    this.#positions[index] = final ? CURSOR_DONE : status.version;
    this.response.cork();
    this.#write(`event: status\nid: ${this.#cursor()}\n`);
    this.#write(status.sseData);
    this.response.uncork();
    if (final) this.#generationDone(generationId);
  }

  /** Runblob's state for every generation on this stream; an event without id, like upstream_error. */
  deliverUpstream(state: "degraded" | "ok"): void {
    this.#write(sseEventFrame("upstream", { state }));
  }

  deliverTimeout(generationId: string): void {
    if (!this.#markDone(generationId)) return;
    this.#write(`id: ${this.#cursor()}\n${sseEventFrame("timeout", { generation_id: generationId })}`);
    this.#generationDone(generationId);
  }

  deliverError(generationId: string, code: "not_found" | "upstream_error", message: string): void {
    const frame = sseEventFrame("error", { code, message, generation_id: generationId });
    if (code === "upstream_error") {
      // The generation stays watched and its position does not move, so this event has no id.
      if (this.#isActive(generationId)) this.#write(frame);
      return;
    }
    if (!this.#markDone(generationId)) return;
    this.#write(`id: ${this.#cursor()}\n${frame}`);
    this.#generationDone(generationId);
  }

  /**
   * Writes the keep-alive comment unless an event was written since the
   * previous call; called by the shared sweep, never by a per-stream timer.
   */
  keepAlive(): void {
    if (this.#wroteSinceSweep) {
      this.#wroteSinceSweep = false;
      return;
    }
    if (this.#opened && !this.#ended) this.#write(SSE_KEEPALIVE);
    this.#wroteSinceSweep = false;
  }

  /** Ends the stream, telling the browser when to reconnect (on shutdown, for example). */
  close(retryMs?: number): void {
    if (!this.#opened) {
      this.#dispose();
      return;
    }
    this.#finish(retryMs === undefined ? undefined : `retry: ${retryMs}\n\n`);
  }

  /**
   * Handles the status read right after registration. A version below the
   * client's position, with nothing sent since, means the store lost its
   * history (a restart without Redis, for example): the position starts over
   * so the client gets the current status instead of silence. A final status
   * at exactly the client's position means the client already has it.
   */
  #deliverFirst(generationId: string, after: number, stored: StoredStatus): void {
    const index = this.#indexById.get(generationId)!;
    const position = this.#positions[index]!;
    if (this.#ended || position === CURSOR_DONE) return;

    const version = stored.status.version;
    if (position === after && version < after) {
      this.#positions[index] = 0;
    } else if (version === position && isFinalStatus(stored.status.status)) {
      this.#markDone(generationId);
      this.#generationDone(generationId);
      return;
    }
    this.deliverStatus(generationId, new EncodedStatus(stored));
  }

  #failFirst(generationId: string, error: unknown): void {
    // Nothing known yet: the scheduler's next poll publishes the first status to this stream.
    if (!this.#isActive(generationId) || error instanceof StatusPendingError) return;
    if (error instanceof UpstreamError && error.statusCode === 404) {
      this.deliverError(generationId, "not_found", "generation not found");
      return;
    }
    // The generation stays registered: the scheduler keeps polling and the status follows once Runblob responds.
    this.logger.warn({ generation_id: generationId, err: error }, "could not read the status for a new SSE subscriber");
    this.deliverError(generationId, "upstream_error", "could not read the status from Runblob; the relay keeps trying");
  }

  #isActive(generationId: string): boolean {
    const index = this.#indexById.get(generationId);
    return !this.#ended && index !== undefined && this.#positions[index] !== CURSOR_DONE;
  }

  /** Marks a generation done; returns false when it already was (or is not part of this stream). */
  #markDone(generationId: string): boolean {
    if (!this.#isActive(generationId)) return false;
    this.#positions[this.#indexById.get(generationId)!] = CURSOR_DONE;
    return true;
  }

  /** Releases a generation whose position was just marked done, and ends the stream after the last one. */
  #generationDone(generationId: string): void {
    this.hub.remove(generationId, this);
    this.#active -= 1;
    if (this.#active === 0) this.#finish(`id: ${this.#cursor()}\n${sseEventFrame("end", {})}`);
  }

  #cursor(): string {
    return this.#positions.join(",");
  }

  #finish(lastFrame?: string): void {
    if (this.#ended) return;
    if (lastFrame !== undefined) this.#write(lastFrame);
    this.response.end();
    this.#dispose();
  }

  /** Drops the stream when the client stopped reading and its unsent data passed the limit. */
  #write(chunk: Buffer | string): void {
    if (this.#ended) return;
    if (this.response.writableLength > this.maxBufferedBytes) {
      this.logger.warn(
        { generation_ids: this.generationIds.length, buffered_bytes: this.response.writableLength },
        "SSE stream closed: client is not reading",
      );
      this.response.destroy();
      this.#dispose();
      return;
    }
    this.response.write(chunk);
    this.#wroteSinceSweep = true;
  }

  #dispose(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.generationIds.forEach((generationId, index) => {
      if (this.#positions[index] !== CURSOR_DONE) this.hub.remove(generationId, this);
    });
    this.#onEnd?.();
  }
}
