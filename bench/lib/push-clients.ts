/**
 * Minimal WebSocket and Server-Sent Events clients on plain TCP sockets, for
 * load generators that hold thousands of connections per process.
 *
 * They implement only what the benchmark needs: the HTTP/1.1 upgrade and
 * RFC 6455 framing (unmasked server frames, masked client frames, ping and
 * close), and an SSE reader that undoes chunked transfer coding and splits
 * events at blank lines. Each received message is handed over with the time
 * its TCP chunk arrived, taken before any parsing, so parsing cost does not
 * count as delivery latency.
 */
import { connect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";

export interface ClientEvents {
  /** One WebSocket text message or one SSE event's text, with the arrival time of its last byte in ms since the epoch. */
  onMessage(text: string, receivedAtMs: number): void;
  /** The connection ended or failed; `reason` is an error code, a close code or "eof". */
  onClose(reason: string): void;
}

const HEADER_END = Buffer.from("\r\n\r\n");
const CONNECT_TIMEOUT_MS = 15_000;

/** Opens a TCP connection and resolves once the HTTP response head has arrived, with the bytes after it. */
function openHttp(
  port: number,
  request: string,
  expectedStatus: number,
): Promise<{ socket: Socket; head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, noDelay: true });
    let received: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error("ETIMEDOUT")), CONNECT_TIMEOUT_MS);

    function fail(error: Error): void {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    }

    socket.once("error", (error: NodeJS.ErrnoException) => fail(new Error(error.code ?? error.message)));
    socket.once("close", () => fail(new Error("ECONNCLOSED")));
    socket.on("data", function onData(chunk: Buffer) {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const end = received.indexOf(HEADER_END);
      if (end === -1) return;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.removeAllListeners("error");
      socket.removeAllListeners("close");
      const head = received.subarray(0, end).toString("latin1");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      if (status !== expectedStatus) {
        socket.destroy();
        reject(new Error(`HTTP_${status}`));
        return;
      }
      resolve({ socket, head, rest: received.subarray(end + HEADER_END.length) });
    });
    socket.write(request);
  });
}

const OPCODE_CONTINUATION = 0x0;
const OPCODE_TEXT = 0x1;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;

/** A client WebSocket: text messages in, masked text frames out. */
export class RawWebSocket {
  #buffer: Buffer | null = null;
  #fragments: Buffer[] = [];
  #closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly events: ClientEvents,
  ) {
    socket.on("data", (chunk: Buffer) => this.#receive(chunk, Date.now()));
    socket.on("error", (error: NodeJS.ErrnoException) => this.#end(error.code ?? "error"));
    socket.on("close", () => this.#end("eof"));
  }

  static async open(port: number, path: string, events: ClientEvents): Promise<RawWebSocket> {
    const key = randomBytes(16).toString("base64");
    const request =
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    const { socket, rest } = await openHttp(port, request, 101);
    const client = new RawWebSocket(socket, events);
    if (rest.length > 0) client.#receive(rest, Date.now());
    return client;
  }

  get closed(): boolean {
    return this.#closed;
  }

  sendText(text: string): void {
    if (this.#closed) return;
    this.socket.write(maskedFrame(OPCODE_TEXT, Buffer.from(text)));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.destroy();
  }

  #receive(chunk: Buffer, receivedAtMs: number): void {
    let buffer = this.#buffer === null ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      if (buffer.length < 2) break;
      const fin = (buffer[0]! & 0x80) !== 0;
      const opcode = buffer[0]! & 0x0f;
      let length = buffer[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) break;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) break;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (buffer.length < offset + length) break;

      const payload = buffer.subarray(offset, offset + length);
      buffer = buffer.subarray(offset + length);
      this.#frame(fin, opcode, payload, receivedAtMs);
      if (this.#closed) return;
    }
    this.#buffer = buffer.length === 0 ? null : buffer;
  }

  #frame(fin: boolean, opcode: number, payload: Buffer, receivedAtMs: number): void {
    if (opcode === OPCODE_PING) {
      this.socket.write(maskedFrame(0xa, payload));
      return;
    }
    if (opcode === OPCODE_CLOSE) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      this.#end(`close_${code}`);
      return;
    }
    if (opcode !== OPCODE_TEXT && opcode !== OPCODE_CONTINUATION) return;

    if (!fin) {
      this.#fragments.push(Buffer.from(payload));
      return;
    }
    let message = payload;
    if (this.#fragments.length > 0) {
      message = Buffer.concat([...this.#fragments, payload]);
      this.#fragments = [];
    }
    this.events.onMessage(message.toString("utf8"), receivedAtMs);
  }

  #end(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.destroy();
    this.events.onClose(reason);
  }
}

/** Builds a masked client frame (RFC 6455, section 5.3); the mask only needs to vary, not to be secret, here. */
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : 4;
  const frame = Buffer.allocUnsafe(headerLength + 4 + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  }
  const mask = (Math.random() * 0xffffffff) >>> 0;
  frame.writeUInt32BE(mask, headerLength);
  const maskBytes = frame.subarray(headerLength, headerLength + 4);
  for (let i = 0; i < length; i += 1) frame[headerLength + 4 + i] = payload[i]! ^ maskBytes[i & 3]!;
  return frame;
}

/** A client of one SSE stream, passing each event's text (its field lines) to `onMessage`. */
export class RawEventStream {
  #closed = false;
  #text = "";
  /** Chunked transfer decoding state: bytes left in the current chunk, or -1 while reading a size line. */
  #chunkLeft = -1;
  #sizeLine = "";
  #skipCrlf = 0;

  private constructor(
    private readonly socket: Socket,
    private readonly chunked: boolean,
    private readonly events: ClientEvents,
  ) {
    socket.on("data", (chunk: Buffer) => this.#receive(chunk, Date.now()));
    socket.on("error", (error: NodeJS.ErrnoException) => this.#end(error.code ?? "error"));
    socket.on("close", () => this.#end("eof"));
  }

  static async open(port: number, path: string, events: ClientEvents): Promise<RawEventStream> {
    const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`;
    const { socket, head, rest } = await openHttp(port, request, 200);
    const chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
    const stream = new RawEventStream(socket, chunked, events);
    if (rest.length > 0) stream.#receive(rest, Date.now());
    return stream;
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.destroy();
  }

  #receive(chunk: Buffer, receivedAtMs: number): void {
    this.#text += this.chunked ? this.#dechunk(chunk) : chunk.toString("utf8");
    let end = this.#text.indexOf("\n\n");
    while (end !== -1) {
      const event = this.#text.slice(0, end);
      this.#text = this.#text.slice(end + 2);
      if (!event.startsWith(":")) this.events.onMessage(event, receivedAtMs);
      end = this.#text.indexOf("\n\n");
    }
  }

  /** Removes chunked transfer coding (RFC 9112, section 7.1); chunk extensions and trailers are not expected. */
  #dechunk(chunk: Buffer): string {
    let out = "";
    let i = 0;
    while (i < chunk.length) {
      if (this.#skipCrlf > 0) {
        this.#skipCrlf -= 1;
        i += 1;
        continue;
      }
      if (this.#chunkLeft === -1) {
        const newline = chunk.indexOf(0x0a, i);
        if (newline === -1) {
          this.#sizeLine += chunk.toString("latin1", i);
          break;
        }
        this.#sizeLine += chunk.toString("latin1", i, newline);
        i = newline + 1;
        const size = parseInt(this.#sizeLine.trim(), 16);
        this.#sizeLine = "";
        if (size === 0) {
          this.#end("eof");
          break;
        }
        this.#chunkLeft = size;
        continue;
      }
      const take = Math.min(this.#chunkLeft, chunk.length - i);
      out += chunk.toString("utf8", i, i + take);
      i += take;
      this.#chunkLeft -= take;
      if (this.#chunkLeft === 0) {
        this.#chunkLeft = -1;
        this.#skipCrlf = 2;
      }
    }
    return out;
  }

  #end(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.destroy();
    this.events.onClose(reason);
  }
}
