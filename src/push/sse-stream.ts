/**
 * One Server-Sent Events stream for one generation.
 *
 * The stream registers with the hub before the current status is read, and
 * holds back what arrives until it is opened, so nothing published during
 * the read is lost. Like the WebSocket connection, it drops versions at or
 * below the last one sent (or the client's Last-Event-ID).
 */
import type { ServerResponse } from "node:http";
import type { FastifyBaseLogger as Logger } from "fastify";
import type { FanoutHub, Sink } from "./fanout-hub.js";
import { SSE_HEADERS, SSE_KEEPALIVE, sseEventFrame } from "./frames.js";
import type { EncodedStatus } from "./frames.js";
import { isFinalStatus } from "../wire/upstream.js";

export class SseStream implements Sink {
  #lastVersion: number;
  #opened = false;
  #ended = false;
  #heldStatus: EncodedStatus | undefined;
  #heldEnding: string | undefined;
  #onEnd: (() => void) | undefined;

  constructor(
    readonly generationId: string,
    private readonly response: ServerResponse,
    private readonly hub: FanoutHub,
    lastEventId: number,
    private readonly maxBufferedBytes: number,
    private readonly logger: Logger,
  ) {
    this.#lastVersion = lastEventId;
    response.once("close", () => this.#dispose());
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Called once when the stream ends for any reason. */
  onEnd(callback: () => void): void {
    this.#onEnd = callback;
  }

  /** Sends the headers and the first status, then whatever arrived in the meantime. */
  open(first: EncodedStatus, extraHeaders: Record<string, string | string[] | number | undefined>, retryMs: number): void {
    if (this.#ended) return;
    this.response.writeHead(200, { ...extraHeaders, ...SSE_HEADERS });
    this.response.write(`retry: ${retryMs}\n\n`);
    this.#opened = true;

    this.deliverStatus(this.generationId, first);
    const held = this.#heldStatus;
    this.#heldStatus = undefined;
    if (held !== undefined) this.deliverStatus(this.generationId, held);
    if (this.#heldEnding !== undefined) this.#finish(this.#heldEnding);
  }

  deliverStatus(_generationId: string, status: EncodedStatus): void {
    if (this.#ended || status.version <= this.#lastVersion) return;
    if (!this.#opened) {
      if (this.#heldStatus === undefined || status.version > this.#heldStatus.version) this.#heldStatus = status;
      return;
    }

    this.#lastVersion = status.version;
    this.#write(status.sseFrame);
    if (isFinalStatus(status.stored.status.status)) this.#finish();
  }

  deliverTimeout(generationId: string): void {
    this.#endWith(sseEventFrame("timeout", { generation_id: generationId }));
  }

  deliverError(generationId: string, code: "not_found" | "upstream_error", message: string): void {
    const frame = sseEventFrame("error", { code, message, generation_id: generationId });
    if (code === "not_found") this.#endWith(frame);
    else if (this.#opened) this.#write(frame);
  }

  /** Writes the keep-alive comment; called by the shared sweep, never by a per-stream timer. */
  keepAlive(): void {
    if (this.#opened && !this.#ended) this.#write(SSE_KEEPALIVE);
  }

  /** Ends the stream, telling the browser when to reconnect (on shutdown, for example). */
  close(retryMs?: number): void {
    if (!this.#opened) {
      this.#dispose();
      return;
    }
    this.#finish(retryMs === undefined ? undefined : `retry: ${retryMs}\n\n`);
  }

  #endWith(frame: string): void {
    if (this.#ended) return;
    if (!this.#opened) {
      this.#heldEnding = frame;
      return;
    }
    this.#finish(frame);
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
      this.logger.warn({ generation_id: this.generationId, buffered_bytes: this.response.writableLength }, "SSE stream closed: client is not reading");
      this.response.destroy();
      this.#dispose();
      return;
    }
    this.response.write(chunk);
  }

  #dispose(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.hub.remove(this.generationId, this);
    this.#onEnd?.();
  }
}
