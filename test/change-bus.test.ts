import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { pino, type Logger } from "pino";
import { afterAll, afterEach, describe, expect, inject, it, vi } from "vitest";
import type { ChangeBus, WatchEvent } from "../src/bus/change-bus.js";
import { MemoryChangeBus } from "../src/bus/memory-bus.js";
import { RedisChangeBus } from "../src/bus/redis-bus.js";
import type { RelayStatus } from "../src/wire/relay.js";

const redisUrl = inject("redisUrl");

const connections: Redis[] = [];
const openBuses: ChangeBus[] = [];

function connect(): Redis {
  const redis = new Redis(redisUrl);
  connections.push(redis);
  return redis;
}

/** Returns a new channel for one test, so tests that share the server never receive each other's events. */
function uniqueChannel(): string {
  return `relay-test:${randomUUID()}:events`;
}

afterEach(async () => {
  await Promise.all(openBuses.splice(0).map((bus) => bus.close()));
});

afterAll(async () => {
  await Promise.all(connections.map((redis) => redis.quit()));
});

interface CapturedLogger {
  logger: Logger;
  lines: Array<Record<string, unknown>>;
}

function captureLogger(): CapturedLogger {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

const PINO_WARN = 40;
const PINO_ERROR = 50;

interface RedisBusOptions {
  channel?: string;
  publisher?: Redis;
  logger?: Logger;
}

function createRedisBus(options: RedisBusOptions = {}): RedisChangeBus {
  const bus = new RedisChangeBus({
    publisher: options.publisher ?? connect(),
    subscriber: connect(),
    channel: options.channel ?? uniqueChannel(),
    logger: options.logger ?? captureLogger().logger,
  });
  openBuses.push(bus);
  return bus;
}

const GENERATION_ID = "0b7e4a0c-5d1f-4b53-9f3e-2c8d7a6b5e41";

function statusEvent(version: number, generationId = GENERATION_ID): WatchEvent & { kind: "status" } {
  const status: RelayStatus = {
    generation_id: generationId,
    status: "processing",
    progress_pct: version,
    resolution: "1080p",
    version,
    updated_at: new Date(Date.UTC(2025, 10, 24, 10, 0, version)).toISOString(),
  };
  return {
    kind: "status",
    change: { generationId, status, json: JSON.stringify(status), observedAtMs: 1_764_000_000_000 + version },
  };
}

/** Events of every kind, in the order a poller could publish them. */
function eventSequence(count: number): WatchEvent[] {
  const events: WatchEvent[] = [];
  for (let index = 1; index <= count; index++) {
    if (index % 10 === 0) {
      events.push({ kind: "upstream_error", generationId: GENERATION_ID, message: `poll ${index} failed` });
    } else {
      events.push(statusEvent(index));
    }
  }
  events.push({ kind: "not_found", generationId: randomUUID() });
  events.push({ kind: "timeout", generationId: GENERATION_ID });
  return events;
}

interface BusKind {
  name: string;
  create(): Promise<ChangeBus>;
}

const busKinds: BusKind[] = [
  {
    name: "MemoryChangeBus",
    async create() {
      const bus = new MemoryChangeBus();
      openBuses.push(bus);
      return bus;
    },
  },
  {
    name: "RedisChangeBus",
    async create() {
      const bus = createRedisBus();
      await bus.ready();
      return bus;
    },
  },
];

describe.each(busKinds)("$name", (kind) => {
  it("delivers events in publish order", async () => {
    const bus = await kind.create();
    const received: WatchEvent[] = [];
    bus.onEvent((event) => received.push(event));
    const events = eventSequence(60);

    await Promise.all(events.map((event) => bus.publish(event)));

    await vi.waitFor(() => expect(received).toHaveLength(events.length));
    expect(received).toEqual(events);
  });

  it("status event keeps json bytes and key order", async () => {
    const bus = await kind.create();
    const received: WatchEvent[] = [];
    bus.onEvent((event) => received.push(event));
    const sent = statusEvent(3);

    await bus.publish(sent);

    await vi.waitFor(() => expect(received).toHaveLength(1));
    const event = received[0];
    expect(event?.kind).toBe("status");
    if (event?.kind !== "status") {
      return;
    }
    expect(event.change.json).toBe(sent.change.json);
    expect(Object.keys(event.change.status)).toEqual(Object.keys(sent.change.status));
    expect(JSON.stringify(event.change.status)).toBe(sent.change.json);
  });

  it("second onEvent throws", async () => {
    const bus = await kind.create();
    bus.onEvent(() => undefined);

    expect(() => bus.onEvent(() => undefined)).toThrow(/already registered/);
  });
});

describe("MemoryChangeBus", () => {
  it("publish calls handler synchronously", async () => {
    const bus = new MemoryChangeBus();
    const received: WatchEvent[] = [];
    bus.onEvent((event) => received.push(event));

    const published = bus.publish(statusEvent(1));
    const receivedBeforeAwait = received.length;
    await published;

    expect(receivedBeforeAwait).toBe(1);
  });

  it("handler error rejects publish", async () => {
    const bus = new MemoryChangeBus();
    bus.onEvent(() => {
      throw new Error("handler failed");
    });

    await expect(bus.publish(statusEvent(1))).rejects.toThrow("handler failed");
  });

  it("close drops later events", async () => {
    const bus = new MemoryChangeBus();
    const received: WatchEvent[] = [];
    bus.onEvent((event) => received.push(event));

    await bus.close();
    await bus.publish(statusEvent(1));

    expect(received).toHaveLength(0);
  });
});

describe("RedisChangeBus", () => {
  it("event reaches bus on other connections", async () => {
    const channel = uniqueChannel();
    const sender = createRedisBus({ channel });
    const receiver = createRedisBus({ channel });
    const receivedBySender: WatchEvent[] = [];
    const receivedByReceiver: WatchEvent[] = [];
    sender.onEvent((event) => receivedBySender.push(event));
    receiver.onEvent((event) => receivedByReceiver.push(event));
    await Promise.all([sender.ready(), receiver.ready()]);

    await sender.publish(statusEvent(1));

    await vi.waitFor(() => expect(receivedByReceiver).toHaveLength(1));
    await vi.waitFor(() => expect(receivedBySender).toHaveLength(1));
    expect(receivedByReceiver).toEqual([statusEvent(1)]);
  });

  it("delivers its own events once, without Redis", async () => {
    const channel = uniqueChannel();
    const sender = createRedisBus({ channel });
    const other = createRedisBus({ channel });
    const receivedBySender: WatchEvent[] = [];
    sender.onEvent((event) => receivedBySender.push(event));
    other.onEvent(() => undefined);
    await Promise.all([sender.ready(), other.ready()]);

    const published = sender.publish(statusEvent(1));
    const receivedBeforeAwait = receivedBySender.length;
    await published;
    // Redis sends one subscriber its messages in publish order, so once the other bus' event is
    // here, the echo of the first one has been here too.
    const marker: WatchEvent = { kind: "timeout", generationId: GENERATION_ID };
    await other.publish(marker);
    await vi.waitFor(() => expect(receivedBySender).toHaveLength(2));

    expect(receivedBeforeAwait).toBe(1);
    expect(receivedBySender).toEqual([statusEvent(1), marker]);
  });

  it("reports the subscription back after a reconnect", async () => {
    const channel = uniqueChannel();
    const subscriber = connect();
    const bus = new RedisChangeBus({ publisher: connect(), subscriber, channel, logger: captureLogger().logger });
    openBuses.push(bus);
    const other = createRedisBus({ channel });
    const received: WatchEvent[] = [];
    bus.onEvent((event) => received.push(event));
    await Promise.all([bus.ready(), other.ready()]);
    let resubscribed = 0;
    bus.onResubscribed(() => (resubscribed += 1));

    // Closes the subscriber's TCP connection from the server side; ioredis reconnects.
    const admin = connect();
    await admin.call("CLIENT", "KILL", "TYPE", "pubsub");
    await vi.waitFor(() => expect(resubscribed).toBe(1), { timeout: 5000 });
    await other.publish(statusEvent(7));

    // The callback runs once SUBSCRIBE is acknowledged, so an event published after it arrives.
    await vi.waitFor(() => expect(received).toEqual([statusEvent(7)]));
  });

  it("onEvent before ready receives events", async () => {
    const bus = createRedisBus();
    const received: WatchEvent[] = [];
    bus.onEvent((event) => received.push(event));

    await bus.ready();
    await bus.publish(statusEvent(1));

    await vi.waitFor(() => expect(received).toEqual([statusEvent(1)]));
  });

  it("onEvent after ready receives events", async () => {
    const bus = createRedisBus();
    await bus.ready();
    const received: WatchEvent[] = [];
    bus.onEvent((event) => received.push(event));

    await bus.publish(statusEvent(1));

    await vi.waitFor(() => expect(received).toEqual([statusEvent(1)]));
  });

  const validStatusJson = statusEvent(1).change.json;
  const malformedMessages: Array<[string, string]> = [
    ["text that is not JSON", "status 1 ready"],
    ["JSON that is not an object", "[1,2,3]"],
    ["unknown kind", JSON.stringify({ kind: "deleted", generationId: GENERATION_ID })],
    ["status without json", JSON.stringify({ kind: "status", generationId: GENERATION_ID, observedAtMs: 1 })],
    ["status with non-numeric observedAtMs", JSON.stringify({ kind: "status", generationId: GENERATION_ID, observedAtMs: "1", json: validStatusJson })],
    ["json field that is not JSON", JSON.stringify({ kind: "status", generationId: GENERATION_ID, observedAtMs: 1, json: "{" })],
    ["json field without version", JSON.stringify({ kind: "status", generationId: GENERATION_ID, observedAtMs: 1, json: JSON.stringify({ generation_id: GENERATION_ID, status: "pending", updated_at: "x" }) })],
    ["json field of another generation", JSON.stringify({ kind: "status", generationId: randomUUID(), observedAtMs: 1, json: validStatusJson })],
    ["upstream_error without message", JSON.stringify({ kind: "upstream_error", generationId: GENERATION_ID })],
  ];

  it.each(malformedMessages)("ignores %s", async (_case, message) => {
    const channel = uniqueChannel();
    const publisher = connect();
    const { logger, lines } = captureLogger();
    const bus = createRedisBus({ channel, publisher, logger });
    const received: WatchEvent[] = [];
    bus.onEvent((event) => received.push(event));
    await bus.ready();

    await publisher.publish(channel, message);
    await bus.publish(statusEvent(2));

    await vi.waitFor(() => expect(received).toHaveLength(1));
    expect(received).toEqual([statusEvent(2)]);
    const warnings = lines.filter((line) => line.level === PINO_WARN);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toBe("change bus ignored a malformed message");
    expect(warnings[0]?.malformed_count).toBe(1);
  });

  it("malformed warnings are rate limited", async () => {
    const channel = uniqueChannel();
    const publisher = connect();
    const { logger, lines } = captureLogger();
    const bus = createRedisBus({ channel, publisher, logger });
    const received: WatchEvent[] = [];
    bus.onEvent((event) => received.push(event));
    await bus.ready();

    for (let index = 0; index < 5; index++) {
      await publisher.publish(channel, "not json");
    }
    await bus.publish(statusEvent(1));

    await vi.waitFor(() => expect(received).toHaveLength(1));
    expect(lines.filter((line) => line.level === PINO_WARN)).toHaveLength(1);
  });

  it("handler error is logged and delivery continues", async () => {
    const { logger, lines } = captureLogger();
    const bus = createRedisBus({ logger });
    const received: WatchEvent[] = [];
    bus.onEvent((event) => {
      if (event.kind === "status" && event.change.status.version === 1) {
        throw new Error("handler failed");
      }
      received.push(event);
    });
    await bus.ready();

    await bus.publish(statusEvent(1));
    await bus.publish(statusEvent(2));

    await vi.waitFor(() => expect(received).toEqual([statusEvent(2)]));
    const errors = lines.filter((line) => line.level === PINO_ERROR);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.generation_id).toBe(GENERATION_ID);
  });

  it("close releases both connections", async () => {
    const channel = uniqueChannel();
    const publisher = connect();
    const subscriber = connect();
    const listenersBefore = subscriber.listenerCount("message");
    const bus = new RedisChangeBus({ publisher, subscriber, channel, logger: captureLogger().logger });
    const received: WatchEvent[] = [];
    bus.onEvent((event) => received.push(event));
    await bus.ready();

    await bus.close();
    await publisher.publish(channel, JSON.stringify({ kind: "timeout", generationId: GENERATION_ID }));
    await sleep(100);

    expect(await publisher.pubsub("NUMSUB", channel)).toEqual([channel, 0]);
    expect(subscriber.listenerCount("message")).toBe(listenersBefore);
    // GET is rejected in subscriber mode, so this passes only if close() left that mode.
    expect(await subscriber.get(`relay-test:${randomUUID()}`)).toBeNull();
    expect(await publisher.ping()).toBe("PONG");
    expect(received).toHaveLength(0);
    await expect(bus.publish(statusEvent(1))).rejects.toThrow(/closed/);
  });

  it("close before ready unsubscribes", async () => {
    const channel = uniqueChannel();
    const publisher = connect();
    const bus = new RedisChangeBus({ publisher, subscriber: connect(), channel, logger: captureLogger().logger });

    await bus.close();

    expect(await publisher.pubsub("NUMSUB", channel)).toEqual([channel, 0]);
  });
});
