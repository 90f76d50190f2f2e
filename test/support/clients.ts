/** Real WebSocket and EventSource clients that record what they receive and let a test wait for it. */
import WebSocket from "ws";
import { EventSource } from "eventsource";

export interface Waiter<T> {
  received: T[];
  /** Resolves with the first received item (past or future) that matches, or rejects after timeoutMs. */
  waitFor(match: (item: T) => boolean, timeoutMs?: number, what?: string): Promise<T>;
}

function createWaiter<T>(): Waiter<T> & { push(item: T): void } {
  const received: T[] = [];
  const pending = new Set<{ match: (item: T) => boolean; resolve: (item: T) => void }>();
  return {
    received,
    push(item) {
      received.push(item);
      for (const waiter of pending) {
        if (waiter.match(item)) {
          pending.delete(waiter);
          waiter.resolve(item);
        }
      }
    },
    waitFor(match, timeoutMs = 10_000, what = "a matching message") {
      const found = received.find(match);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise<T>((resolve, reject) => {
        const entry = { match, resolve: (item: T) => (clearTimeout(timer), resolve(item)) };
        const timer = setTimeout(() => {
          pending.delete(entry);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received ${received.length}: ${JSON.stringify(received.slice(-5))}`));
        }, timeoutMs);
        pending.add(entry);
      });
    },
  };
}

export type WsMessage = { type: string; [key: string]: unknown };

export interface WsClient extends Waiter<WsMessage> {
  socket: WebSocket;
  send(message: unknown): void;
  closed: Promise<{ code: number; reason: string }>;
  close(): void;
}

export async function openWebSocket(url: string): Promise<WsClient> {
  const socket = new WebSocket(url);
  const waiter = createWaiter<WsMessage>();
  socket.on("message", (data) => waiter.push(JSON.parse(String(data)) as WsMessage));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on("close", (code, reason) => resolve({ code, reason: String(reason) })),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  return {
    ...waiter,
    socket,
    closed,
    send: (message) => socket.send(typeof message === "string" ? message : JSON.stringify(message)),
    close: () => socket.close(),
  };
}

export interface SseEvent {
  type: string;
  id: string | undefined;
  data: string;
}

export interface SseClient extends Waiter<SseEvent> {
  source: EventSource;
  /** Resolves when the relay ends the stream (EventSource then reconnects unless closed). */
  errors: Waiter<string>;
  close(): void;
}

/** An EventSource; `lastEventId` is sent as the Last-Event-ID header of the first request. */
export function openEventSource(url: string, options: { lastEventId?: string } = {}): SseClient {
  const waiter = createWaiter<SseEvent>();
  const errors = createWaiter<string>();
  const source = new EventSource(url, {
    fetch: (input, init) => {
      const headers = new Headers(init?.headers);
      if (options.lastEventId !== undefined && !headers.has("last-event-id")) headers.set("last-event-id", options.lastEventId);
      return fetch(input, { ...init, headers });
    },
  });
  for (const type of ["status", "timeout", "error", "upstream"]) {
    source.addEventListener(type, (event) => {
      // A relay "error" event carries data; the EventSource's own connection errors do not.
      const message = event as unknown as { data?: string; lastEventId?: string; message?: string };
      if (message.data === undefined) {
        errors.push(message.message ?? "connection error");
        return;
      }
      waiter.push({ type, id: message.lastEventId || undefined, data: message.data });
    });
  }
  return { ...waiter, source, errors, close: () => source.close() };
}

export async function generate(baseUrl: string, body: Record<string, unknown> = { prompt: "A test generation" }): Promise<string> {
  const response = await fetch(`${baseUrl}/v1/sora/generate`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status !== 201) throw new Error(`generate answered ${response.status}: ${await response.text()}`);
  return ((await response.json()) as { generation_id: string }).generation_id;
}
