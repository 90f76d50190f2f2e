/**
 * Pre-built WebSocket frames. A status fanned out to many subscribers is
 * framed once with ws' public `Sender.frame`, and the same bytes go to every
 * socket in one write each. Plain `send` builds a new frame header per
 * subscriber and writes header and payload as two corked buffers.
 *
 * Writing to the TCP socket directly bypasses ws' sender. That is safe only
 * while the sender is idle and no extension (permessage-deflate) rewrites
 * frames. Those checks read private fields of ws 8; when the fields are not
 * as expected, the frame goes through `send` instead, so a change in ws costs
 * speed, not correctness. test/websocket-wire.test.ts fails if the direct
 * path stops being taken.
 */
import { createRequire } from "node:module";
import type { Duplex } from "node:stream";
import type { WebSocket } from "ws";

interface FrameOptions {
  fin: boolean;
  opcode: number;
  mask: boolean;
  readOnly: boolean;
  rsv1: boolean;
}

/** ws' public `Sender.frame`, which @types/ws does not declare; loaded through ws' CommonJS entry point. */
const { Sender } = createRequire(import.meta.url)("ws") as { Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] } };

/** The fields of a ws 8 WebSocket this module reads; none of them are written. */
interface WebSocketInternals {
  _socket?: Duplex;
  _sender?: { _state?: number; _queue?: unknown[] };
  _extensions?: Record<string, unknown>;
}

/** Sender state of ws 8 while nothing is being compressed or read from a Blob. */
const SENDER_IDLE = 0;

/** Returns the complete unmasked text frame (server to client) for `payload`. */
export function textFrame(payload: Buffer): Buffer {
  const parts = Sender.frame(payload, { fin: true, opcode: 1, mask: false, readOnly: true, rsv1: false });
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/**
 * True when a pre-built frame can be written to this open connection's TCP
 * socket directly. Runs once per subscriber per change, so it allocates nothing.
 */
export function canWriteFramed(socket: WebSocket): boolean {
  const internals = socket as unknown as WebSocketInternals;
  const sender = internals._sender;
  return (
    internals._socket !== undefined &&
    sender?._state === SENDER_IDLE &&
    sender._queue?.length === 0 &&
    internals._extensions?.["permessage-deflate"] === undefined
  );
}

/** Sends one text message, as the pre-built `frame` when the socket allows it, else through ws' `send`. */
export function sendText(socket: WebSocket, payload: Buffer | string, frame: Buffer | undefined): void {
  if (frame !== undefined && canWriteFramed(socket)) {
    (socket as unknown as Required<WebSocketInternals>)._socket.write(frame);
    return;
  }
  socket.send(payload, { binary: false });
}
