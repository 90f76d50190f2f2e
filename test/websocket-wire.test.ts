/**
 * Pre-built WebSocket frames written straight to the socket: what a ws
 * client receives, and whether the direct path is taken with the installed
 * ws. Its checks read private fields of ws, so a ws upgrade that changes
 * them fails here instead of falling back to `send` unnoticed.
 */
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { canWriteFramed, sendText, textFrame } from "../src/push/websocket-wire.js";

const servers: WebSocketServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    for (const client of server.clients) client.terminate();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** Starts a server and one client; resolves with both ends of the connection. */
async function connect(perMessageDeflate: boolean): Promise<{ server: WebSocket; client: WebSocket; received: string[] }> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate });
  servers.push(wss);
  await once(wss, "listening");
  const { port } = wss.address() as AddressInfo;
  const accepted = once(wss, "connection") as Promise<[WebSocket]>;
  const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate });
  const received: string[] = [];
  client.on("message", (data, isBinary) => received.push(isBinary ? "(binary)" : String(data)));
  await once(client, "open");
  const [server] = await accepted;
  return { server, client, received };
}

async function waitForCount(received: string[], count: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (received.length < count) {
    if (Date.now() > deadline) throw new Error(`received ${received.length} of ${count} messages`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// Payload lengths around the three header sizes of RFC 6455: 7-bit, 16-bit and 64-bit lengths.
const PAYLOADS = [0, 1, 125, 126, 65_535, 65_536, 200_000].map((length) => "x".repeat(length));

describe("pre-built WebSocket frames", () => {
  it("takes the direct path with this ws", async () => {
    const { server } = await connect(false);

    expect(canWriteFramed(server)).toBe(true);
  });

  it("delivers every payload size intact", async () => {
    const { server, received } = await connect(false);

    for (const payload of PAYLOADS) sendText(server, payload, textFrame(Buffer.from(payload)));
    await waitForCount(received, PAYLOADS.length);

    expect(received.map((text) => text.length)).toEqual(PAYLOADS.map((payload) => payload.length));
    expect(received).toEqual(PAYLOADS);
  });

  it("keeps order with messages sent by ws", async () => {
    const { server, received } = await connect(false);
    const frame = textFrame(Buffer.from("framed"));

    server.send("first");
    sendText(server, "framed", frame);
    server.send("third");
    await waitForCount(received, 3);

    expect(received).toEqual(["first", "framed", "third"]);
  });

  it("falls back to send under compression", async () => {
    const { server, received } = await connect(true);
    const payload = JSON.stringify({ type: "status", note: "y".repeat(500) });

    expect(canWriteFramed(server)).toBe(false);
    sendText(server, payload, textFrame(Buffer.from(payload)));
    await waitForCount(received, 1);

    expect(received).toEqual([payload]);
  });
});
