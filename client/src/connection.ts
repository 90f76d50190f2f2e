/** Types shared by the client and its two transports: watch state, connection callbacks and browser API shapes. */
import type { ServerMessage } from "./protocol.js";

/** One watched generation: the last version delivered, for resume and de-duplication. */
export interface WatchState {
  readonly id: string;
  version: number;
  /**
   * Set on every (re)subscribe. The relay sends a version below the client's
   * position only when its store lost the history (a restart without Redis),
   * so the first status after a subscribe may lower `version` once.
   */
  rebase: boolean;
}

/** Callbacks from a transport to the client. */
export interface ConnectionContext {
  watches(): Iterable<WatchState>;
  message(message: ServerMessage): void;
  /** The connection is up: backoff starts over. */
  opened(): void;
  /** The connection failed or dropped; `wasOpen` is false when it never opened. */
  lost(wasOpen: boolean): void;
}

/** One open transport: a WebSocket or a multi-generation event stream. */
export interface Connection {
  add(watch: WatchState): void;
  remove(watch: WatchState): void;
  close(): void;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- handlers of browser, Node and `ws` sockets take different event types */

/** The part of the WebSocket API the SDK uses: browsers', Node 22's and the `ws` package's classes all have it. */
export interface WebSocketLike {
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The part of the EventSource API the SDK uses: browsers' and the `eventsource` package's classes have it. */
export interface EventSourceLike {
  onopen: ((event: any) => void) | null;
  addEventListener(type: string, listener: (event: any) => void): void;
  close(): void;
}
export type EventSourceConstructor = new (url: string) => EventSourceLike;
