/**
 * All open push connections of this instance, with the two shared sweeps:
 * SSE keep-alive comments and WebSocket pings. One timer each serves every
 * connection; no connection has a timer of its own.
 */
import type { Logger } from "pino";
import type { SseStream } from "./sse-stream.js";
import type { MultiSseStream } from "./multi-sse-stream.js";
import type { WebSocketConnection } from "./websocket-connection.js";
import { CLOSE_SERVICE_RESTART } from "./websocket-connection.js";

export class ConnectionRegistry {
  readonly sseStreams = new Set<SseStream>();
  readonly websockets = new Set<WebSocketConnection>();
  readonly multiSseStreams = new Set<MultiSseStream>();
  #timers: NodeJS.Timeout[] = [];

  constructor(private readonly options: { sseKeepAliveMs: number; wsPingIntervalMs: number; logger: Logger }) {}

  addSse(stream: SseStream): void {
    this.sseStreams.add(stream);
    stream.onEnd(() => this.sseStreams.delete(stream));
  }

  addMultiSse(stream: MultiSseStream): void {
    this.multiSseStreams.add(stream);
    stream.onEnd(() => this.multiSseStreams.delete(stream));
  }

  addWebSocket(connection: WebSocketConnection): void {
    this.websockets.add(connection);
    connection.socket.on("pong", () => {
      connection.awaitingPong = false;
    });
  }

  removeWebSocket(connection: WebSocketConnection): void {
    this.websockets.delete(connection);
  }

  start(): void {
    const keepAlive = setInterval(() => {
      for (const stream of this.sseStreams) stream.keepAlive();
      for (const stream of this.multiSseStreams) stream.keepAlive();
    }, this.options.sseKeepAliveMs);

    // A socket that did not answer the previous ping within one interval is dead.
    const ping = setInterval(() => {
      for (const connection of this.websockets) {
        if (connection.awaitingPong) {
          this.options.logger.info("websocket closed: no pong within the ping interval");
          connection.socket.terminate();
          continue;
        }
        connection.awaitingPong = true;
        connection.socket.ping();
      }
    }, this.options.wsPingIntervalMs);

    keepAlive.unref();
    ping.unref();
    this.#timers = [keepAlive, ping];
  }

  /** Stops the sweeps and asks every client to reconnect, to another instance if there is one. */
  closeAll(reconnectDelayMs: number): void {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    for (const stream of this.sseStreams) stream.close(reconnectDelayMs);
    for (const stream of this.multiSseStreams) stream.close(reconnectDelayMs);
    for (const connection of this.websockets) connection.socket.close(CLOSE_SERVICE_RESTART, "relay is restarting; reconnect");
  }
}
