/**
 * The watch scheduler's cadence on its own, with a local lease and an
 * in-memory store and bus, so the only timing comes from the scheduler.
 */
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryChangeBus } from "../src/bus/memory-bus.js";
import { MemoryStatusStore } from "../src/store/memory-store.js";
import { LocalPollLease } from "../src/watch/poll-lease.js";
import { WatchScheduler } from "../src/watch/watch-scheduler.js";
import type { StoredStatus } from "../src/store/status-store.js";
import type { RelayStatus } from "../src/wire/relay.js";
import type { UpstreamStatus } from "../src/wire/upstream.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const GENERATION_ID = "3f6c1a2e-8b4d-4e5f-9a7b-1c2d3e4f5a6b";
const OTHER_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

function processingStatus(generationId = GENERATION_ID): UpstreamStatus {
  return { generation_id: generationId, status: "processing", progress_pct: 10 } as UpstreamStatus;
}

function storedStatus(generationId: string): StoredStatus {
  const status = { ...processingStatus(generationId), version: 1, updated_at: new Date().toISOString() } as RelayStatus;
  return { status, json: JSON.stringify(status), checkedAtMs: Date.now() };
}

/** Returns a scheduler over in-memory parts that records each poll's generation id. */
function schedulerFor(options: { intervalMs: number; random?: () => number; onPoll?: () => void }): { scheduler: WatchScheduler; polled: string[] } {
  const polled: string[] = [];
  const scheduler = new WatchScheduler({
    store: new MemoryStatusStore({ ttlSeconds: 60 }),
    client: {
      getStatus: async (generationId) => {
        polled.push(generationId);
        options.onPoll?.();
        return processingStatus(generationId);
      },
    },
    bus: new MemoryChangeBus(),
    lease: new LocalPollLease(60_000),
    logger: pino({ level: "silent" }),
    intervalMs: options.intervalMs,
    maxAttempts: 1000,
    graceMs: 60_000,
    concurrency: 4,
    ...(options.random === undefined ? {} : { random: options.random }),
  });
  cleanups.push(() => scheduler.stop());
  return { scheduler, polled };
}

/** Blocks the event loop for `busyMs`, starting in `startInMs`, so a poll due meanwhile starts late. */
function blockEventLoopLater(startInMs: number, busyMs: number): void {
  const timer = setTimeout(() => {
    const until = Date.now() + busyMs;
    while (Date.now() < until) {
      // Busy on purpose, like a relay writing a large fan-out.
    }
  }, startInMs);
  cleanups.push(() => clearTimeout(timer));
}

describe("watch scheduler cadence", () => {
  it("keeps the interval when ticks run late", async () => {
    const intervalMs = 200;
    // Every next poll starts about 50 ms late.
    const { scheduler, polled } = schedulerFor({ intervalMs, onPoll: () => blockEventLoopLater(intervalMs - 10, 60) });
    scheduler.addSubscriber(GENERATION_ID);

    const windowMs = 4000;
    await new Promise((resolve) => setTimeout(resolve, windowMs));

    // 20 intervals fit in the window. Scheduling from each poll's late start instead of its due
    // time stretches every interval by the lateness, to about 250 ms, which gives at most 16 polls.
    console.log(`cadence: ${polled.length} polls in ${windowMs} ms at a ${intervalMs} ms interval`);
    expect(polled.length).toBeGreaterThanOrEqual(18);
  });

  it("polls others when one entry moves later", async () => {
    // The first poll of the first generation is due after 100 ms, of the second after 200 ms.
    const dues = [0.1, 0.2];
    const { scheduler, polled } = schedulerFor({ intervalMs: 1000, random: () => dues.shift() ?? 0.5 });
    scheduler.addSubscriber(GENERATION_ID);
    scheduler.addSubscriber(OTHER_ID);

    // A read for a new subscriber moves the first one's poll to one interval from now.
    scheduler.notePolled(GENERATION_ID, storedStatus(GENERATION_ID));
    await new Promise((resolve) => setTimeout(resolve, 500));

    // A heap keyed on the entry's own, changing due time put the moved entry on top with 1000 ms,
    // which hid the second one until then.
    expect(polled).toEqual([OTHER_ID]);
  });
});
