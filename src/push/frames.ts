/**
 * Wire frames for the push transports. A status is serialized once when it
 * is stored; each transport's frame is then built once per change and the
 * same bytes are written to every subscriber.
 */
import type { StoredStatus } from "../store/status-store.js";
import type { ErrorCode } from "../wire/relay.js";
import { textFrame } from "./websocket-wire.js";

/** Headers of every SSE response. `X-Accel-Buffering: no` stops nginx from buffering the stream. */
export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  connection: "keep-alive",
  "x-accel-buffering": "no",
} as const;

/** An SSE comment line: ignored by EventSource, keeps proxies from closing an idle stream. */
export const SSE_KEEPALIVE = Buffer.from(": keep-alive\n\n");

/**
 * One status, with its WebSocket and SSE frames built on first use.
 * SSE rules (WHATWG HTML, server-sent events): `id` sets the reconnect
 * position sent back as Last-Event-ID; JSON has no raw newlines, so one
 * `data:` line carries it.
 */
export class EncodedStatus {
  #ws: Buffer | undefined;
  #wsWire: Buffer | undefined;
  #sse: Buffer | undefined;
  #sseData: Buffer | undefined;

  constructor(readonly stored: StoredStatus) {}

  get version(): number {
    return this.stored.status.version;
  }

  get wsFrame(): Buffer {
    this.#ws ??= Buffer.from(`{"type":"status","generation":${this.stored.json}}`);
    return this.#ws;
  }

  /** The WebSocket message as a complete frame, header included, for writing to many sockets. */
  get wsWireFrame(): Buffer {
    this.#wsWire ??= textFrame(this.wsFrame);
    return this.#wsWire;
  }

  get sseFrame(): Buffer {
    this.#sse ??= Buffer.from(`event: status\nid: ${this.version}\ndata: ${this.stored.json}\n\n`);
    return this.#sse;
  }

  /** The `data:` line and the blank line that ends an SSE event, for streams that write their own `id:`. */
  get sseData(): Buffer {
    this.#sseData ??= Buffer.from(`data: ${this.stored.json}\n\n`);
    return this.#sseData;
  }
}

export function wsTimeoutFrame(generationId: string): string {
  return JSON.stringify({ type: "timeout", generation_id: generationId });
}

export function wsErrorFrame(code: ErrorCode, message: string, generationId?: string): string {
  return JSON.stringify({ type: "error", code, message, ...(generationId === undefined ? {} : { generation_id: generationId }) });
}

export function sseEventFrame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** Runblob's state as the relay sees it: "degraded" while its circuit breaker is open, "ok" once it closes. */
export function wsUpstreamFrame(state: "degraded" | "ok"): string {
  return JSON.stringify({ type: "upstream", state });
}
