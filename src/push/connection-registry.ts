/**
 * All open push connections of this instance, with the two shared sweeps:
 * SSE keep-alive comments and WebSocket pings. One timer each serves every
 * connection, visiting a tenth of them per tick (see SlicedSweep); no
 * connection has a timer of its own.
 */
import type { Logger } from "pino";
import type { SseStream } from "./sse-stream.js";
import type { MultiSseStream } from "./multi-sse-stream.js";
import type { WebSocketConnection } from "./websocket-connection.js";
import { CLOSE_SERVICE_RESTART } from "./websocket-connection.js";
import { SlicedSweep } from "./sliced-sweep.js";

export class ConnectionRegistry {
  readonly sseStreams = new Set<SseStream>();
  readonly websockets = new Set<WebSocketConnection>();
  readonly multiSseStreams = new Set<MultiSseStream>();
  readonly #keepAliveSweep = new SlicedSweep<SseStream | MultiSseStream>();
  readonly #pingSweep = new SlicedSweep<WebSocketConnection>();

  constructor(private readonly options: { sseKeepAliveMs: number; wsPingIntervalMs: number; logger: Logger }) {}

  addSse(stream: SseStream): void {
    this.sseStreams.add(stream);
    this.#keepAliveSweep.add(stream);
    stream.onEnd(() => {
      this.sseStreams.delete(stream);
      this.#keepAliveSweep.delete(stream);
    });
  }

  addMultiSse(stream: MultiSseStream): void {
    this.multiSseStreams.add(stream);
    this.#keepAliveSweep.add(stream);
    stream.onEnd(() => {
      this.multiSseStreams.delete(stream);
      this.#keepAliveSweep.delete(stream);
    });
  }

  addWebSocket(connection: WebSocketConnection): void {
    this.websockets.add(connection);
    this.#pingSweep.add(connection);
    connection.socket.on("pong", () => {
      connection.awaitingPong = false;
    });
  }

  removeWebSocket(connection: WebSocketConnection): void {
    this.websockets.delete(connection);
    this.#pingSweep.delete(connection);
  }

  start(): void {
    // Each stream is visited every half interval and gets a comment unless it wrote an event since the
    // previous visit, so no stream stays silent longer than SSE_KEEPALIVE_MS, and busy streams get none.
    this.#keepAliveSweep.start(this.options.sseKeepAliveMs / 2, (stream) => stream.keepAlive());

    // A socket that did not answer the previous ping within one interval is dead.
    this.#pingSweep.start(this.options.wsPingIntervalMs, (connection) => {
      if (connection.awaitingPong) {
        this.options.logger.info("websocket closed: no pong within the ping interval");
        connection.socket.terminate();
        return;
      }
      connection.awaitingPong = true;
      connection.socket.ping();
    });
  }

  /** Stops the sweeps and asks every client to reconnect, to another instance if there is one. */
  closeAll(reconnectDelayMs: number): void {
    this.#keepAliveSweep.stop();
    this.#pingSweep.stop();
    for (const stream of this.sseStreams) stream.close(reconnectDelayMs);
    for (const stream of this.multiSseStreams) stream.close(reconnectDelayMs);
    for (const connection of this.websockets) connection.socket.close(CLOSE_SERVICE_RESTART, "relay is restarting; reconnect");
  }
}
