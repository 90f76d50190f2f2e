/**
 * What the relay's WebSocket endpoint does with bad client input: invalid
 * frames get an error message and leave the connection usable, limit
 * violations close it with the RFC 6455 close code, and no invalid message
 * costs an upstream request.
 */
import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, EVENT_TIMEOUT_MS, httpRequest, openProbeWebSocket, upstreamRequestTotal } from "./support/probe-clients.js";
import type { ProbeWebSocket, WsMessage } from "./support/probe-clients.js";

const CLOSE_MESSAGE_TOO_BIG = 1009;
const CLOSE_POLICY_VIOLATION = 1008;

const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

async function setup(env: Record<string, string> = {}): Promise<{ sim: SimulatorHandle; relay: RelayHandle }> {
  // Generations stay pending for 10 minutes, so a subscription lasts the whole test.
  const sim = await startSimulator({ queueStart: 1, queueMs: 600_000, processingMs: 600_000 });
  cleanup.add(() => sim.close());
  const relay = await startRelay(sim, env);
  cleanup.add(() => relay.close());
  return { sim, relay };
}

async function connect(relay: RelayHandle): Promise<ProbeWebSocket> {
  const client = await openProbeWebSocket(relay.wsUrl);
  cleanup.add(() => client.close());
  return client;
}

const isError = (code: string) => (message: WsMessage) => message.type === "error" && message.code === code;
const isStatusOf = (generationId: string) => (message: WsMessage) =>
  message.type === "status" && (message.generation as { generation_id?: string } | undefined)?.generation_id === generationId;

/** Subscribes and waits for the first status, which proves the connection still works. */
async function expectSubscriptionWorks(client: ProbeWebSocket, generationId: string): Promise<void> {
  client.sendJson({ type: "subscribe", generation_id: generationId });
  const status = await client.messages.next(isStatusOf(generationId), `first status of ${generationId}`);
  expect(status.generation).toMatchObject({ generation_id: generationId, status: "pending", version: 1 });
}

/** Sends one frame and returns the relay's error reply, asserting that no upstream request was made for it. */
async function expectErrorReply(sim: SimulatorHandle, client: ProbeWebSocket, send: () => void, code: string): Promise<WsMessage> {
  const before = upstreamRequestTotal(sim);
  send();
  const reply = await client.messages.next((message) => message.type === "error", `an error reply with code ${code}`);
  expect(reply).toEqual({ type: "error", code, message: expect.any(String), ...(reply.generation_id === undefined ? {} : { generation_id: reply.generation_id }) });
  expect(reply.message!.length).toBeGreaterThan(0);
  expect(upstreamRequestTotal(sim)).toBe(before);
  return reply;
}

describe("WebSocket invalid messages", () => {
  const invalidTextFrames = [
    { name: "plain text", frame: "hello" },
    { name: "truncated JSON", frame: '{"type":"subscribe"' },
    { name: "empty frame", frame: "" },
  ];

  it.each(invalidTextFrames)("rejects non-JSON $name, stays open", async ({ frame }) => {
    const { sim, relay } = await setup();
    const client = await connect(relay);

    await expectErrorReply(sim, client, () => client.sendText(frame), "invalid_message");
    await expectSubscriptionWorks(client, sim.simulator.control.create());
  });

  it("rejects a binary frame, stays open", async () => {
    const { sim, relay } = await setup();
    const client = await connect(relay);
    const subscribe = Buffer.from(JSON.stringify({ type: "subscribe", generation_id: sim.simulator.control.create() }));

    const reply = await expectErrorReply(sim, client, () => client.sendBinary(subscribe), "invalid_message");
    expect(reply.message).toMatch(/binary/);
    await expectSubscriptionWorks(client, sim.simulator.control.create());
  });

  const wrongShapes: Array<{ name: string; message: unknown }> = [
    { name: "unknown type", message: { type: "subscribe_all", generation_id: randomUUID() } },
    { name: "ping type", message: { type: "ping" } },
    { name: "missing type", message: { generation_id: randomUUID() } },
    { name: "numeric type", message: { type: 1, generation_id: randomUUID() } },
    { name: "JSON null", message: null },
    { name: "JSON number", message: 42 },
    { name: "JSON string", message: "subscribe" },
    { name: "JSON array", message: [{ type: "subscribe", generation_id: randomUUID() }] },
    { name: "unknown field", message: { type: "subscribe", generation_id: randomUUID(), channel: "all" } },
    { name: "negative after_version", message: { type: "subscribe", generation_id: randomUUID(), after_version: -1 } },
  ];

  it.each(wrongShapes)("rejects $name as invalid_message", async ({ message }) => {
    const { sim, relay } = await setup();
    const client = await connect(relay);

    await expectErrorReply(sim, client, () => client.sendJson(message), "invalid_message");
    await expectSubscriptionWorks(client, sim.simulator.control.create());
  });

  const badIds: Array<{ name: string; value: unknown; shown: string }> = [
    { name: "word", value: "abc", shown: "abc" },
    { name: "UUID one digit short", value: "550e8400-e29b-41d4-a716-44665544000", shown: "550e8400-e29b-41d4-a716-44665544000" },
    { name: "path", value: "../../v1/data/balance", shown: "../../v1/data/balance" },
  ];

  it.each(badIds)("names a bad generation_id: $name", async ({ value, shown }) => {
    const { sim, relay } = await setup();
    const client = await connect(relay);

    for (const type of ["subscribe", "unsubscribe"]) {
      const reply = await expectErrorReply(sim, client, () => client.sendJson({ type, generation_id: value }), "invalid_generation_id");
      expect(reply.message).toContain(shown);
    }
    await expectSubscriptionWorks(client, sim.simulator.control.create());
  });

  it("rejects a missing or numeric generation_id", async () => {
    const { sim, relay } = await setup();
    const client = await connect(relay);

    const missing = await expectErrorReply(sim, client, () => client.sendJson({ type: "subscribe" }), "invalid_generation_id");
    expect(missing.message).toMatch(/generation_id/);
    const numeric = await expectErrorReply(sim, client, () => client.sendJson({ type: "subscribe", generation_id: 42 }), "invalid_generation_id");
    expect(numeric.message).toMatch(/generation_id/);
  });
});

describe("WebSocket subscriptions", () => {
  it("reports an unknown generation as not_found", async () => {
    const { sim, relay } = await setup();
    const client = await connect(relay);
    const id = randomUUID();

    client.sendJson({ type: "subscribe", generation_id: id });
    const reply = await client.messages.next(isError("not_found"), "not_found");
    expect(reply).toEqual({ type: "error", code: "not_found", message: expect.any(String), generation_id: id });
    expect(sim.simulator.stats.statusRequests(id)).toBeGreaterThanOrEqual(1);
    await expectSubscriptionWorks(client, sim.simulator.control.create());
  });

  it("stops polling after not_found", async () => {
    const intervalMs = 100;
    const { sim, relay } = await setup({ POLL_INTERVAL_MS: String(intervalMs) });
    const client = await connect(relay);
    const id = randomUUID();

    client.sendJson({ type: "subscribe", generation_id: id });
    await client.messages.next(isError("not_found"), "not_found");
    const afterAnswer = sim.simulator.stats.statusRequests(id);

    // Nothing is awaited here on purpose: the check is that no further request comes, over 10 poll intervals.
    await new Promise((resolve) => setTimeout(resolve, intervalMs * 10));
    expect(sim.simulator.stats.statusRequests(id)).toBe(afterAnswer);
  });

  it("enforces WS_MAX_SUBSCRIPTIONS", async () => {
    const { sim, relay } = await setup({ WS_MAX_SUBSCRIPTIONS: "2" });
    const client = await connect(relay);
    const [first, second, third] = [1, 2, 3].map(() => sim.simulator.control.create());

    await expectSubscriptionWorks(client, first!);
    await expectSubscriptionWorks(client, second!);

    const before = sim.simulator.stats.statusRequests(third!);
    client.sendJson({ type: "subscribe", generation_id: third });
    const reply = await client.messages.next(isError("too_many_subscriptions"), "too_many_subscriptions");
    expect(reply).toEqual({ type: "error", code: "too_many_subscriptions", message: expect.stringContaining("2"), generation_id: third });
    expect(sim.simulator.stats.statusRequests(third!)).toBe(before);

    // Unsubscribing frees a slot on the same connection.
    client.sendJson({ type: "unsubscribe", generation_id: first });
    await expectSubscriptionWorks(client, third!);
  });

  it("counts subscriptions per connection", async () => {
    const { sim, relay } = await setup({ WS_MAX_SUBSCRIPTIONS: "1" });
    const firstClient = await connect(relay);
    const secondClient = await connect(relay);

    await expectSubscriptionWorks(firstClient, sim.simulator.control.create());
    await expectSubscriptionWorks(secondClient, sim.simulator.control.create());
  });
});

describe("WebSocket limits", () => {
  it("closes with 1009 on oversized frames", async () => {
    const { sim, relay } = await setup({ WS_MAX_PAYLOAD_BYTES: "256" });
    const client = await connect(relay);
    const before = upstreamRequestTotal(sim);

    client.sendText(JSON.stringify({ type: "subscribe", generation_id: randomUUID() }).padEnd(257, " "));
    const closed = await withTimeout(client.closed, "the relay closes the connection");
    expect(closed.code).toBe(CLOSE_MESSAGE_TOO_BIG);
    expect(upstreamRequestTotal(sim)).toBe(before);
  });

  it("accepts a frame at the limit", async () => {
    const { sim, relay } = await setup({ WS_MAX_PAYLOAD_BYTES: "256" });
    const client = await connect(relay);
    const id = sim.simulator.control.create();

    // JSON allows trailing whitespace, so the padded frame is still a valid subscribe message.
    const frame = JSON.stringify({ type: "subscribe", generation_id: id }).padEnd(256, " ");
    expect(Buffer.byteLength(frame)).toBe(256);
    client.sendText(frame);
    await client.messages.next(isStatusOf(id), "status after a 256-byte frame");
  });

  it("closes with 1008 on a flood", async () => {
    const { sim, relay } = await setup({ WS_MAX_MESSAGES_PER_SECOND: "5" });
    const client = await connect(relay);
    const id = sim.simulator.control.create();

    // Five messages in a burst are within the limit, so the relay replies to each.
    for (let i = 0; i < 4; i += 1) client.sendText("not json");
    client.sendJson({ type: "subscribe", generation_id: id });
    for (let i = 0; i < 4; i += 1) await client.messages.next(isError("invalid_message"), `invalid_message reply ${i + 1}`);
    await client.messages.next(isStatusOf(id), "status of the fifth message");

    for (let i = 0; i < 30; i += 1) client.sendJson({ type: "unsubscribe", generation_id: randomUUID() });
    const closed = await withTimeout(client.closed, "the relay closes the flooding connection");
    expect(closed.code).toBe(CLOSE_POLICY_VIOLATION);
  });

  it("answers plain HTTP with 426", async () => {
    const { sim, relay } = await setup();
    const before = upstreamRequestTotal(sim);

    const result = await httpRequest(`${relay.baseUrl}/v1/sora/ws`);
    expect(result.status, result.text).toBe(426);
    expect(result.headers["content-type"]).toMatch(/^application\/json/);
    expect(result.json).toEqual({ detail: expect.stringMatching(/WebSocket/) });
    expect(upstreamRequestTotal(sim)).toBe(before);
  });
});

async function withTimeout<T>(promise: Promise<T>, description: string, timeoutMs = EVENT_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting until ${description}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
