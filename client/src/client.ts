/**
 * The relay client: watches generations over one shared connection, and
 * starts generations over REST.
 *
 * Transport choice ("auto"): a WebSocket first. When it cannot connect (a
 * proxy that rejects upgrades, say) and an EventSource class is available,
 * the client tries the multi-generation SSE stream at once and stays on it
 * once it opened. When both fail the relay is down, so the client waits
 * (exponential backoff, full jitter) and starts again with the WebSocket.
 *
 * Every reconnect resumes from the last version delivered per generation,
 * and statuses at or below it are dropped, so handlers get each version at
 * most once and in order. A final status is never dropped: the relay sends
 * the current status to a resumed subscription whenever it is newer than
 * the client's position, or final.
 */
import { createBackoff } from "./backoff.js";
import type { BackoffOptions } from "./backoff.js";
import type { Connection, ConnectionContext, EventSourceConstructor, WatchState, WebSocketConstructor } from "./connection.js";
import type { ErrorCode, GenerateRequest, GenerateResponse, RelayStatus, ServerMessage } from "./protocol.js";
import { connectEventStream } from "./sse-transport.js";
import { connectWebSocket } from "./websocket-transport.js";

export type TransportChoice = "auto" | "websocket" | "sse";

export interface RelayClientOptions {
  /** Origin of the relay, with an optional path prefix: `https://relay.example.com`. */
  baseUrl: string;
  /**
   * Returns a short-lived access ticket, called before every connection. It is
   * sent as the `ticket` query parameter of WebSocket and SSE URLs (browsers
   * cannot set headers there) and as `Authorization: Bearer` on REST calls.
   */
  getTicket?: () => string | Promise<string>;
  /** "auto" (default): WebSocket, falling back to SSE when the WebSocket cannot connect. */
  transport?: TransportChoice;
  /** WebSocket class; defaults to the global one (browsers, Node 22+). */
  WebSocket?: WebSocketConstructor;
  /** EventSource class; defaults to the global one (browsers). Node needs the `eventsource` package. */
  EventSource?: EventSourceConstructor;
  fetch?: typeof fetch;
  reconnect?: BackoffOptions;
  /** Time allowed for a WebSocket to open before the client counts it as failed (default 10000 ms). */
  connectTimeoutMs?: number;
  /** Client messages per 1.1 s; keep it below the relay's WS_MAX_MESSAGES_PER_SECOND (default 40). */
  maxMessagesPerSecond?: number;
}

export interface WatchHandlers {
  /** Every new status, in version order; the last call carries the final status. */
  onStatus?(status: RelayStatus): void;
  /** The relay gave up after POLL_MAX_ATTEMPTS polls; the watch has ended. */
  onTimeout?(): void;
  /** The watch has ended with an error, such as `not_found` or `too_many_subscriptions`. */
  onError?(error: RelayError): void;
  /** Runblob failed for now; the relay keeps polling and the watch goes on. */
  onUpstream?(message: string): void;
}

export interface ConnectionState {
  status: "idle" | "connecting" | "open" | "reconnecting";
  transport: "websocket" | "sse" | undefined;
}

export interface RelayClient {
  /** Watches one generation; returns the function that stops watching. */
  watch(generationId: string, handlers: WatchHandlers): () => void;
  /** Starts a generation and watches it until its final status, or until `unwatch` is called. */
  generate(request: GenerateRequest, handlers?: WatchHandlers): Promise<GenerateResponse & { unwatch: () => void }>;
  /** Yields each new status and ends after the final one; throws a RelayError on timeout or error. */
  statuses(generationId: string): AsyncGenerator<RelayStatus, void, undefined>;
  readonly connection: ConnectionState;
  /** Calls `listener` on every connection state change; returns the function that removes it. */
  onConnectionChange(listener: (state: ConnectionState) => void): () => void;
  /** Stops every watch and closes the connection. */
  close(): void;
}

/** A failed request or an ended watch. `code` is the relay's error code, "timeout", or "http" for a REST error. */
export class RelayError extends Error {
  constructor(
    readonly code: ErrorCode | "timeout" | "http",
    message: string,
    /** HTTP status of a failed REST call. */
    readonly status?: number,
    /** The response body's `detail`, as the relay sent it. */
    readonly detail?: unknown,
  ) {
    super(message);
    this.name = "RelayError";
  }
}

export const isFinalStatus = (status: RelayStatus) => status.status === "completed" || status.status === "failed";

interface Watch extends WatchState {
  handlers: Set<WatchHandlers>;
  latest?: RelayStatus;
}

export function createRelayClient(options: RelayClientOptions): RelayClient {
  const base = options.baseUrl.replace(/\/+$/, "");
  const choice = options.transport ?? "auto";
  const Socket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  const Source = options.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
  if ((choice === "websocket" && !Socket) || (choice === "sse" && !Source) || (!Socket && !Source)) {
    throw new Error(`transport "${choice}" needs a ${Socket ? "EventSource" : "WebSocket"} class: pass one in the options`);
  }
  const request = options.fetch ?? ((input, init) => fetch(input, init));
  const backoff = createBackoff(options.reconnect);

  const watches = new Map<string, Watch>();
  const stateListeners = new Set<(state: ConnectionState) => void>();
  let state: ConnectionState = { status: "idle", transport: undefined };
  let connection: Connection | undefined;
  let connectTimer: ReturnType<typeof setTimeout> | undefined;
  let connecting = false;
  let attempt = 0;
  let useSse = choice === "sse" || !Socket;
  /** True while an SSE attempt follows a WebSocket that could not connect. */
  let fallingBack = false;

  const setState = (status: ConnectionState["status"], transport?: ConnectionState["transport"]) => {
    state = { status, transport };
    for (const listener of stateListeners) listener(state);
  };

  const schedule = (delayMs: number) => {
    clearTimeout(connectTimer);
    connectTimer = setTimeout(connect, delayMs);
  };

  async function connect(): Promise<void> {
    connectTimer = undefined;
    if (watches.size === 0 || connection) return;
    const thisAttempt = ++attempt;
    const transport = useSse ? "sse" : "websocket";
    setState(state.status === "idle" ? "connecting" : "reconnecting", transport);

    connecting = true;
    let ticket: string | undefined;
    try {
      ticket = await options.getTicket?.();
    } catch {
      ticket = undefined;
    }
    connecting = false;
    if (thisAttempt !== attempt || watches.size === 0) return;

    const ticketParameter = ticket === undefined ? "" : `ticket=${encodeURIComponent(ticket)}`;
    const context: ConnectionContext = {
      watches: () => watches.values(),
      message: handleMessage,
      opened: () => {
        backoff.reset();
        fallingBack = false;
        setState("open", transport);
      },
      lost: (wasOpen) => {
        connection = undefined;
        handleLost(wasOpen);
      },
    };
    connection = useSse
      ? connectEventStream(`${base}/v1/sora/events`, Source!, context, ticketParameter)
      : connectWebSocket(
          `${base.replace(/^http/, "ws")}/v1/sora/ws${ticketParameter && `?${ticketParameter}`}`,
          Socket!,
          context,
          options.maxMessagesPerSecond ?? 40,
          options.connectTimeoutMs ?? 10_000,
        );
  }

  function handleLost(wasOpen: boolean): void {
    if (watches.size === 0) {
      setState("idle");
      return;
    }
    if (!useSse && !wasOpen && choice === "auto" && Source) {
      // The WebSocket could not connect: try SSE at once.
      useSse = fallingBack = true;
      schedule(0);
      return;
    }
    if (fallingBack && !wasOpen) {
      // SSE failed too, so the relay itself is unreachable: the next attempt starts with the WebSocket again.
      useSse = fallingBack = false;
    }
    setState("reconnecting", state.transport);
    schedule(backoff.next());
  }

  function disconnect(): void {
    clearTimeout(connectTimer);
    connectTimer = undefined;
    attempt += 1;
    connecting = false;
    connection?.close();
    connection = undefined;
    if (state.status !== "idle") setState("idle");
  }

  /** Removes a watch whose generation the relay no longer reports on. */
  function finish(watch: Watch): void {
    if (watches.get(watch.id) !== watch) return;
    watches.delete(watch.id);
    if (watches.size === 0) disconnect();
  }

  function handleMessage(message: ServerMessage): void {
    if (message.type === "upstream") {
      // About Runblob as a whole, so every watch hears it; statuses already received stay valid.
      const text = message.state === "degraded" ? "Runblob is failing; updates may be late" : "Runblob answers again";
      for (const entry of watches.values()) for (const handler of [...entry.handlers]) handler.onUpstream?.(text);
      return;
    }
    const id = message.type === "status" ? message.generation.generation_id : message.generation_id;
    const watch = id === undefined ? undefined : watches.get(id);
    if (watch === undefined) return;
    const handlers = [...watch.handlers];

    if (message.type === "status") {
      const status = message.generation;
      // Like the relay, the client lets a final status through at any version: it ends the watch, so it comes once.
      const stale = status.version < watch.version ? !watch.rebase : status.version === watch.version;
      if (stale && !isFinalStatus(status)) return;
      watch.rebase = false;
      watch.version = status.version;
      watch.latest = status;
      if (isFinalStatus(status)) finish(watch);
      for (const handler of handlers) handler.onStatus?.(status);
    } else if (message.type === "timeout") {
      finish(watch);
      for (const handler of handlers) handler.onTimeout?.();
    } else if (message.code === "upstream_error") {
      for (const handler of handlers) handler.onUpstream?.(message.message);
    } else {
      finish(watch);
      const error = new RelayError(message.code, message.message);
      for (const handler of handlers) handler.onError?.(error);
    }
  }

  function watch(generationId: string, handlers: WatchHandlers): () => void {
    let entry = watches.get(generationId);
    if (entry === undefined) {
      entry = { id: generationId, version: 0, rebase: false, handlers: new Set() };
      watches.set(generationId, entry);
      if (connection) connection.add(entry);
      else if (connectTimer === undefined && !connecting) schedule(0);
    }
    const current = entry;
    current.handlers.add(handlers);

    // A second watcher of the same generation starts from the status the first one has.
    const latest = current.latest;
    if (latest !== undefined) {
      queueMicrotask(() => {
        if (current.handlers.has(handlers) && current.latest === latest) handlers.onStatus?.(latest);
      });
    }

    return () => {
      if (!current.handlers.delete(handlers) || current.handlers.size > 0 || watches.get(generationId) !== current) return;
      watches.delete(generationId);
      connection?.remove(current);
      if (watches.size === 0) disconnect();
    };
  }

  async function generate(body: GenerateRequest, handlers: WatchHandlers = {}) {
    const ticket = await options.getTicket?.();
    const response = await request(`${base}/v1/sora/generate`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(ticket !== undefined && { authorization: `Bearer ${ticket}` }) },
      body: JSON.stringify(body),
    });
    const answer = (await response.json().catch(() => ({}))) as GenerateResponse & { detail?: unknown };
    if (!response.ok) {
      const detail = answer.detail;
      const message = Array.isArray(detail) ? detail.map((issue: { msg: string }) => issue.msg).join("; ") : String(detail ?? response.statusText);
      throw new RelayError("http", `generate failed with HTTP ${response.status}: ${message}`, response.status, detail);
    }
    return { ...answer, unwatch: watch(answer.generation_id, handlers) };
  }

  async function* statuses(generationId: string): AsyncGenerator<RelayStatus, void, undefined> {
    const queue: RelayStatus[] = [];
    let failure: RelayError | undefined;
    let wake: (() => void) | undefined;
    const stop = watch(generationId, {
      onStatus: (status) => {
        queue.push(status);
        wake?.();
      },
      onTimeout: () => {
        failure = new RelayError("timeout", `the relay stopped watching generation ${generationId}: no final status after its maximum number of polls`);
        wake?.();
      },
      onError: (error) => {
        failure = error;
        wake?.();
      },
    });
    try {
      for (;;) {
        const status = queue.shift();
        if (status !== undefined) {
          yield status;
          if (isFinalStatus(status)) return;
        } else if (failure !== undefined) {
          throw failure;
        } else {
          await new Promise<void>((resolve) => (wake = resolve));
        }
      }
    } finally {
      stop();
    }
  }

  return {
    watch,
    generate,
    statuses,
    get connection() {
      return state;
    },
    onConnectionChange(listener) {
      stateListeners.add(listener);
      return () => stateListeners.delete(listener);
    },
    close() {
      watches.clear();
      disconnect();
    },
  };
}
