/** The WebSocket transport: one socket for every watch of a client (GET /v1/sora/ws). */
import type { Connection, ConnectionContext, WatchState, WebSocketConstructor } from "./connection.js";

/**
 * Sliding window of the send limit. The relay closes a socket that sends more
 * than WS_MAX_MESSAGES_PER_SECOND (50 by default) in a one-second window, so
 * the client counts over a slightly longer window to leave room for jitter.
 */
const WINDOW_MS = 1100;

export function connectWebSocket(
  url: string,
  Socket: WebSocketConstructor,
  context: ConnectionContext,
  maxMessagesPerWindow: number,
  connectTimeoutMs: number,
): Connection {
  const socket = new Socket(url);
  const queue: string[] = [];
  const sentAt: number[] = [];
  let pumpTimer: ReturnType<typeof setTimeout> | undefined;
  let opened = false;
  let ended = false;

  const pump = () => {
    pumpTimer = undefined;
    while (queue.length > 0 && !ended) {
      const now = Date.now();
      while (sentAt.length > 0 && now - sentAt[0]! >= WINDOW_MS) sentAt.shift();
      if (sentAt.length >= maxMessagesPerWindow) {
        pumpTimer = setTimeout(pump, WINDOW_MS - (now - sentAt[0]!));
        return;
      }
      sentAt.push(now);
      socket.send(queue.shift()!);
    }
  };
  const send = (message: object) => {
    queue.push(JSON.stringify(message));
    if (opened && pumpTimer === undefined) pump();
  };
  const subscribe = (watch: WatchState) => {
    watch.rebase = true;
    send({ type: "subscribe", generation_id: watch.id, ...(watch.version > 0 && { after_version: watch.version }) });
  };

  const end = () => {
    ended = true;
    clearTimeout(pumpTimer);
    clearTimeout(connectTimer);
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
  };
  const fail = () => {
    if (ended) return;
    end();
    context.lost(opened);
  };
  // A proxy that never completes the upgrade would otherwise stall the fallback to SSE.
  const connectTimer = setTimeout(() => {
    fail();
    socket.close();
  }, connectTimeoutMs);

  socket.onopen = () => {
    opened = true;
    clearTimeout(connectTimer);
    context.opened();
    for (const watch of context.watches()) subscribe(watch);
  };
  socket.onmessage = (event: { data: unknown }) => {
    try {
      context.message(JSON.parse(String(event.data)));
    } catch {
      // Not JSON: the relay sends only JSON text frames, so this frame came from something else.
    }
  };
  socket.onclose = fail;
  // Every error event is followed by a close event, which is handled above.
  socket.onerror = () => {};

  return {
    add: (watch) => opened && subscribe(watch),
    remove: (watch) => opened && send({ type: "unsubscribe", generation_id: watch.id }),
    close: () => {
      end();
      socket.close(1000);
    },
  };
}
