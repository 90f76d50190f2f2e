/**
 * One load generator process. The benchmark runner starts several of them
 * (see LoadFleet) and drives each over its IPC channel: open connections,
 * subscribe, measure push latency, poll over HTTP, close.
 *
 * Latency of a status message is its arrival time minus its `updated_at`
 * (the relay's observation time, or the publish time for Pushpin), both read
 * from this machine's clock. Only statuses with `updated_at` at or after the
 * `measure` start count, so the snapshots sent on subscribing are left out.
 *
 * The process exits by itself when the runner disconnects, or after
 * BENCH_WORKER_MAX_MS (default 30 minutes) whatever happens.
 */
import { Agent, request } from "node:http";
import { Histogram } from "./histogram.js";
import { RawEventStream, RawWebSocket, type ClientEvents } from "./push-clients.js";
import type { ConnectionSpec, WorkerCommand, WorkerReply, WorkerReport } from "./worker-protocol.js";

const MAX_LIFETIME_MS = Number(process.env.BENCH_WORKER_MAX_MS ?? 30 * 60_000);
/** Subscribe messages per batch: below the relay's default WS_MAX_MESSAGES_PER_SECOND of 50. */
const SUBSCRIBES_PER_BATCH = 40;
/**
 * Time between two batches on one socket, counted from the first reply to
 * the previous batch. The relay starts its one-second rate window when it
 * reads the first message of a batch and replies only after reading it, so
 * a busy relay that reads a batch late does not see two batches in one
 * window. NOTE: a status push of an earlier subscription that arrives first
 * also counts as the reply, and starts the gap early.
 */
const BATCH_GAP_MS = 1100;
/** A batch whose messages get no reply (the relay sends none for a repeated id) is followed anyway after this. */
const BATCH_REPLY_TIMEOUT_MS = 5000;

const UPDATED_AT = '"updated_at":"';

const histograms = { ws: new Histogram(), sse: new Histogram() };
let measureFromMs = Number.POSITIVE_INFINITY;
let statusMessages = 0;
let allMessages = 0;
let finals = 0;
const errorCodes: Record<string, number> = {};
const closeReasons: Record<string, number> = {};
const sockets: RawWebSocket[] = [];
const streams: RawEventStream[] = [];
interface SubscribeBatches {
  ids: string[];
  sentAt: number;
  /** Arrival time of the first message after the last batch was sent; undefined until one arrives. */
  firstReplyAt: number | undefined;
}

/** Subscribe messages not sent yet, per socket. */
const subscribeQueue = new Map<RawWebSocket, SubscribeBatches>();
const replySeen = new WeakMap<RawWebSocket, () => void>();

function count(table: Record<string, number>, key: string): void {
  table[key] = (table[key] ?? 0) + 1;
}

function eventsFor(transport: "ws" | "sse"): ClientEvents {
  return {
    onMessage(text, receivedAtMs) {
      allMessages += 1;
      const at = text.indexOf(UPDATED_AT);
      if (at === -1) {
        const code = /"code":"([a-z_]+)"/.exec(text)?.[1];
        if (code !== undefined) count(errorCodes, code);
        else if (text.includes('"type":"timeout"') || text.startsWith("event: timeout")) count(errorCodes, "timeout");
        return;
      }
      const updatedAtMs = Date.parse(text.slice(at + UPDATED_AT.length, at + UPDATED_AT.length + 24));
      if (!(updatedAtMs >= measureFromMs)) return;
      statusMessages += 1;
      // Looked up per message: "measure" replaces the histograms.
      histograms[transport].add(receivedAtMs - updatedAtMs);
      if (text.includes('"status":"completed"') || text.includes('"status":"failed"')) finals += 1;
    },
    onClose(reason) {
      count(closeReasons, `${transport}:${reason}`);
    },
  };
}

function queueSubscribes(socket: RawWebSocket, ids: readonly string[]): void {
  const queued = subscribeQueue.get(socket);
  if (queued !== undefined) {
    queued.ids.push(...ids);
    return;
  }
  const batches: SubscribeBatches = { ids: [...ids], sentAt: 0, firstReplyAt: undefined };
  subscribeQueue.set(socket, batches);
  replySeen.set(socket, () => {
    batches.firstReplyAt ??= Date.now();
  });
}

/** Sends the next batch on every socket whose previous batch got its first reply long enough ago. */
function sendQueuedSubscribes(): void {
  const now = Date.now();
  for (const [socket, batches] of subscribeQueue) {
    if (socket.closed) {
      subscribeQueue.delete(socket);
      continue;
    }
    const first = batches.sentAt === 0;
    const replied = batches.firstReplyAt !== undefined && now - batches.firstReplyAt >= BATCH_GAP_MS;
    if (!first && !replied && now - batches.sentAt < BATCH_REPLY_TIMEOUT_MS) continue;

    const batch = batches.ids.splice(0, SUBSCRIBES_PER_BATCH);
    batches.sentAt = now;
    batches.firstReplyAt = undefined;
    for (const id of batch) socket.sendText(`{"type":"subscribe","generation_id":"${id}"}`);
    if (batches.ids.length === 0) subscribeQueue.delete(socket);
  }
}

/** Resolves once every queued subscribe message has been written. */
async function drainSubscribes(): Promise<void> {
  sendQueuedSubscribes();
  while (subscribeQueue.size > 0) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    sendQueuedSubscribes();
  }
}

async function openOne(spec: ConnectionSpec): Promise<void> {
  if (spec.transport === "ws") {
    const events = eventsFor("ws");
    let socket: RawWebSocket | undefined;
    socket = await RawWebSocket.open(spec.port, spec.path, {
      onMessage(text, receivedAtMs) {
        if (socket !== undefined) replySeen.get(socket)?.();
        events.onMessage(text, receivedAtMs);
      },
      onClose: events.onClose,
    });
    sockets.push(socket);
    if (spec.ids.length > 0) queueSubscribes(socket, spec.ids);
    return;
  }
  streams.push(await RawEventStream.open(spec.port, spec.path, eventsFor("sse")));
}

/** Opens connections at `perSecond`, at most `maxInFlight` handshakes at a time, and counts failures by reason. */
async function openAll(
  specs: readonly ConnectionSpec[],
  perSecond: number,
  maxInFlight: number,
): Promise<{ ok: number; failures: Record<string, number> }> {
  const failures: Record<string, number> = {};
  let ok = 0;
  const pending = new Set<Promise<void>>();
  const startedAt = performance.now();

  for (let i = 0; i < specs.length; i += 1) {
    const dueAt = startedAt + (i * 1000) / perSecond;
    const wait = dueAt - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    while (pending.size >= maxInFlight) await Promise.race(pending);

    const attempt = openOne(specs[i]!).then(
      () => {
        ok += 1;
      },
      (error: Error) => count(failures, error.message),
    );
    const tracked = attempt.finally(() => pending.delete(tracked));
    pending.add(tracked);
    // Subscriptions of sockets opened so far go out while the rest connect.
    if (i % 200 === 199) sendQueuedSubscribes();
  }
  await Promise.all(pending);
  await drainSubscribes();
  return { ok, failures };
}

/** Runs `count` HTTP pollers per path, each requesting once per interval, starting at random points of the interval. */
async function pollAll(command: Extract<WorkerCommand, { type: "poll" }>): Promise<{ ok: number; failed: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: command.maxSockets });
  let ok = 0;
  let failed = 0;
  const stopAt = performance.now() + command.durationMs;
  const timers: NodeJS.Timeout[] = [];

  const get = (path: string) =>
    new Promise<void>((resolve) => {
      const req = request({ host: "127.0.0.1", port: command.port, path, agent }, (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 200) ok += 1;
          else failed += 1;
          resolve();
        });
      });
      req.on("error", () => {
        failed += 1;
        resolve();
      });
      req.end();
    });

  for (const target of command.targets) {
    for (let i = 0; i < target.pollers; i += 1) {
      const start = setTimeout(() => {
        void get(target.path);
        const every = setInterval(() => {
          if (performance.now() >= stopAt) clearInterval(every);
          else void get(target.path);
        }, command.intervalMs);
        timers.push(every);
      }, Math.random() * command.intervalMs);
      timers.push(start);
    }
  }
  await new Promise((resolve) => setTimeout(resolve, command.durationMs + 100));
  for (const timer of timers) clearInterval(timer);
  agent.destroy();
  return { ok, failed };
}

function report(): WorkerReport {
  return {
    ws: histograms.ws.toJSON(),
    sse: histograms.sse.toJSON(),
    statusMessages,
    allMessages,
    finals,
    errorCodes: { ...errorCodes },
    closeReasons: { ...closeReasons },
    open: { ws: sockets.filter((s) => !s.closed).length, sse: streams.filter((s) => !s.closed).length },
  };
}

function reply(message: WorkerReply): void {
  process.send?.(message);
}

async function handle(command: WorkerCommand): Promise<void> {
  switch (command.type) {
    case "open": {
      const result = await openAll(command.connections, command.perSecond, command.maxInFlight);
      reply({ type: "done", id: command.id, result });
      return;
    }
    case "subscribe": {
      const open = sockets.filter((socket) => !socket.closed);
      command.idsPerSocket.forEach((ids, i) => {
        const socket = open[i];
        if (socket !== undefined) queueSubscribes(socket, ids);
      });
      await drainSubscribes();
      reply({ type: "done", id: command.id, result: { sockets: Math.min(open.length, command.idsPerSocket.length) } });
      return;
    }
    case "measure":
      histograms.ws = new Histogram();
      histograms.sse = new Histogram();
      statusMessages = 0;
      finals = 0;
      for (const key of Object.keys(errorCodes)) delete errorCodes[key];
      measureFromMs = command.fromMs;
      reply({ type: "done", id: command.id, result: null });
      return;
    case "report":
      reply({ type: "done", id: command.id, result: report() });
      return;
    case "close":
      for (const socket of sockets) socket.close();
      for (const stream of streams) stream.close();
      sockets.length = 0;
      streams.length = 0;
      subscribeQueue.clear();
      reply({ type: "done", id: command.id, result: null });
      return;
    case "poll":
      reply({ type: "done", id: command.id, result: await pollAll(command) });
      return;
  }
}

process.on("message", (command: WorkerCommand) => {
  handle(command).catch((error: unknown) => {
    reply({ type: "failed", id: command.id, message: error instanceof Error ? error.stack ?? error.message : String(error) });
  });
});
process.on("disconnect", () => process.exit(0));
setTimeout(() => {
  process.stderr.write(`load worker: exiting after its maximum lifetime of ${MAX_LIFETIME_MS} ms\n`);
  process.exit(0);
}, MAX_LIFETIME_MS).unref();
reply({ type: "ready" });
