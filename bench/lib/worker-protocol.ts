/** Messages between the benchmark runner and its load generator processes. */
import type { HistogramData } from "./histogram.js";

/** One connection to open: a WebSocket that subscribes to `ids`, or one SSE stream at `path`. */
export type ConnectionSpec =
  | { transport: "ws"; port: number; path: string; ids: string[] }
  | { transport: "sse"; port: number; path: string };

export type WorkerCommand =
  | { type: "open"; id: number; connections: ConnectionSpec[]; perSecond: number; maxInFlight: number }
  | { type: "subscribe"; id: number; idsPerSocket: string[][] }
  | { type: "measure"; id: number; fromMs: number }
  | { type: "report"; id: number }
  | { type: "close"; id: number }
  | {
      type: "poll";
      id: number;
      port: number;
      targets: Array<{ path: string; pollers: number }>;
      intervalMs: number;
      durationMs: number;
      maxSockets: number;
    };

export interface WorkerReport {
  ws: HistogramData;
  sse: HistogramData;
  /** Status messages with `updated_at` inside the measurement. */
  statusMessages: number;
  /** Every message received since the process started, counted before any filtering. */
  allMessages: number;
  /** Of those, messages carrying a final status. */
  finals: number;
  /** Error and timeout messages by code. */
  errorCodes: Record<string, number>;
  /** Connections that ended, by transport and reason (close code, error code or "eof"). */
  closeReasons: Record<string, number>;
  open: { ws: number; sse: number };
}

export interface OpenResult {
  ok: number;
  failures: Record<string, number>;
}

export type WorkerReply =
  | { type: "ready" }
  | { type: "done"; id: number; result: unknown }
  | { type: "failed"; id: number; message: string };
