/**
 * Low-level clients for tests that probe the relay's input handling. The HTTP
 * call returns status, headers and body as received. The WebSocket records
 * every frame and the close code. The SSE reader uses fetch and reads the raw
 * stream, comments and `retry:` lines included. Each client queues what it
 * receives, so a test can wait for the next matching item without missing one
 * that arrived earlier.
 */
import { request } from "undici";
import WebSocket from "ws";
import type { SimulatorHandle } from "./relay-harness.js";

/** Default wait for an awaited event; generous because CI runs on 2 loaded cores. */
export const EVENT_TIMEOUT_MS = 10_000;

/** A FIFO of received items with a read cursor, so each `next` call returns a later item than the previous one. */
export class ReceivedQueue<T> {
  readonly items: T[] = [];
  #cursor = 0;
  #waiters = new Set<() => void>();
  #ended = false;

  push(item: T): void {
    this.items.push(item);
    this.#wake();
  }

  /** Marks the source as finished: waits that can no longer be satisfied fail at once. */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  /**
   * Resolves with the next item after the cursor that matches, and moves the
   * cursor past it. Rejects after `timeoutMs`, or when the source ends first.
   */
  async next(match: (item: T) => boolean, description: string, timeoutMs = EVENT_TIMEOUT_MS): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.#cursor < this.items.length) {
        const item = this.items[this.#cursor]!;
        this.#cursor += 1;
        if (match(item)) return item;
      }
      if (this.#ended) throw new Error(`stream ended before ${description}; received: ${this.#describe()}`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}; received: ${this.#describe()}`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, remaining);
        this.#waiters.add(wake);
      });
    }
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  #describe(): string {
    return JSON.stringify(this.items.slice(-8)).slice(0, 2000);
  }
}

/** Polls `condition` every 20 ms until it holds; for state that emits no event (simulator counters). */
export async function waitUntil(condition: () => boolean, description: string, timeoutMs = EVENT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${description}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Runs registered cleanups in reverse order; call `run` from afterEach. */
export class CleanupStack {
  #steps: Array<() => unknown> = [];

  add(step: () => unknown): void {
    this.#steps.push(step);
  }

  async run(): Promise<void> {
    const steps = this.#steps.reverse();
    this.#steps = [];
    for (const step of steps) {
      try {
        await step();
      } catch {
        // A failed cleanup (a socket already closed, say) must not skip the rest.
      }
    }
  }
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** Parsed JSON body, or undefined when the body is not JSON. Tests read many shapes, so it stays untyped. */
  json: any;
}

export interface HttpOptions {
  method?: "GET" | "POST" | "PUT" | "DELETE" | "OPTIONS";
  headers?: Record<string, string>;
  /** Sent as JSON with `content-type: application/json` unless `rawBody` is given. */
  json?: unknown;
  rawBody?: string | Buffer;
}

/** Sends one HTTP request and reads the whole body, whatever the status. */
export async function httpRequest(url: string, options: HttpOptions = {}): Promise<HttpResult> {
  const headers: Record<string, string> = { ...options.headers };
  let body: string | Buffer | undefined = options.rawBody;
  if (options.json !== undefined && body === undefined) {
    body = JSON.stringify(options.json);
    headers["content-type"] ??= "application/json";
  }
  const response = await request(url, { method: options.method ?? (body === undefined ? "GET" : "POST"), headers, body });
  const text = await response.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.statusCode, headers: response.headers, text, json };
}

/** Total number of requests the simulator received on its Runblob routes. */
export function upstreamRequestTotal(sim: SimulatorHandle): number {
  const { requests } = sim.simulator.stats.snapshot();
  return Object.values(requests).reduce((sum, count) => sum + count, 0);
}

export type WsMessage = { type: string; code?: string; message?: string; generation_id?: string; [key: string]: unknown };

export interface ProbeWebSocket {
  socket: WebSocket;
  messages: ReceivedQueue<WsMessage>;
  /** Resolves with the close code and reason once the connection is closed, by either side. */
  closed: Promise<{ code: number; reason: string }>;
  sendJson(message: unknown): void;
  sendText(text: string): void;
  sendBinary(data: Buffer): void;
  close(): void;
}

/** Opens a WebSocket; every text frame from the relay must be JSON, and a frame that is not fails the next wait. */
export async function openProbeWebSocket(url: string, headers: Record<string, string> = {}): Promise<ProbeWebSocket> {
  const socket = new WebSocket(url, { headers });
  const messages = new ReceivedQueue<WsMessage>();
  socket.on("message", (data, isBinary) => {
    const text = String(data);
    try {
      messages.push(JSON.parse(text) as WsMessage);
    } catch {
      messages.push({ type: "__not_json__", message: `${isBinary ? "binary" : "text"} frame that is not JSON: ${text.slice(0, 200)}` });
    }
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.on("close", (code, reason) => {
      messages.end();
      resolve({ code, reason: String(reason) });
    });
  });
  // An error after the handshake (a reset, say) is followed by "close"; the listener keeps it from being thrown.
  socket.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("unexpected-response", (_request, response) => reject(new Error(`WebSocket upgrade failed with HTTP ${response.statusCode}`)));
    socket.once("error", reject);
  });
  return {
    socket,
    messages,
    closed,
    sendJson: (message) => socket.send(JSON.stringify(message)),
    sendText: (text) => socket.send(text),
    sendBinary: (data) => socket.send(data, { binary: true }),
    close: () => {
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.terminate();
    },
  };
}

/** One item of an SSE stream: a dispatched event, a comment line, or a `retry:` field on its own. */
export type SseItem =
  | { kind: "event"; event: string; id: string | undefined; data: string }
  | { kind: "comment"; text: string }
  | { kind: "retry"; ms: number };

export interface ProbeSseStream {
  status: number;
  headers: Headers;
  items: ReceivedQueue<SseItem>;
  /** Resolves when the relay ends the response body. */
  ended: Promise<void>;
  close(): void;
}

/**
 * Opens an SSE stream with fetch and parses it by the WHATWG rules (blank line
 * ends an event, `:` starts a comment). Rejects when the response is not 200,
 * with its status and body in the message.
 */
export async function openProbeSse(url: string, headers: Record<string, string> = {}): Promise<ProbeSseStream> {
  const controller = new AbortController();
  const response = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: controller.signal });
  if (response.status !== 200 || response.body === null) {
    const text = await response.text();
    throw new Error(`SSE request failed with HTTP ${response.status}: ${text}`);
  }

  const items = new ReceivedQueue<SseItem>();
  const ended = readSseBody(response.body, items).finally(() => items.end());
  return {
    status: response.status,
    headers: response.headers,
    items,
    ended,
    close: () => controller.abort(),
  };
}

async function readSseBody(body: ReadableStream<Uint8Array>, items: ReceivedQueue<SseItem>): Promise<void> {
  const decoder = new TextDecoder();
  let buffer = "";
  let event = { name: "", id: undefined as string | undefined, data: [] as string[] };
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (line === "") {
          if (event.data.length > 0) items.push({ kind: "event", event: event.name || "message", id: event.id, data: event.data.join("\n") });
          event = { name: "", id: undefined, data: [] };
          continue;
        }
        if (line.startsWith(":")) {
          items.push({ kind: "comment", text: line.slice(1).trim() });
          continue;
        }
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        const fieldValue = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event.name = fieldValue;
        else if (field === "id") event.id = fieldValue;
        else if (field === "data") event.data.push(fieldValue);
        else if (field === "retry" && /^\d+$/.test(fieldValue)) items.push({ kind: "retry", ms: Number(fieldValue) });
      }
    }
  } catch {
    // The test aborted the request, or the relay reset the connection: the stream has ended either way.
  }
}

/** Parses the JSON data of an SSE event. */
export function eventData(item: SseItem): any {
  if (item.kind !== "event") throw new Error(`expected an SSE event, got ${JSON.stringify(item)}`);
  return JSON.parse(item.data);
}
