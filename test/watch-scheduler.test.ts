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
import type { UpstreamStatus } from "../src/wire/upstream.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const GENERATION_ID = "3f6c1a2e-8b4d-4e5f-9a7b-1c2d3e4f5a6b";

function processingStatus(): UpstreamStatus {
  return { generation_id: GENERATION_ID, status: "processing", progress_pct: 10 } as UpstreamStatus;
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
    const polls: number[] = [];
    const scheduler = new WatchScheduler({
      store: new MemoryStatusStore({ ttlSeconds: 60 }),
      client: {
        getStatus: async () => {
          polls.push(Date.now());
          // Every next poll starts about 50 ms late.
          blockEventLoopLater(intervalMs - 10, 60);
          return processingStatus();
        },
      },
      bus: new MemoryChangeBus(),
      lease: new LocalPollLease(60_000),
      logger: pino({ level: "silent" }),
      intervalMs,
      maxAttempts: 1000,
      graceMs: 60_000,
      concurrency: 4,
    });
    cleanups.push(() => scheduler.stop());
    scheduler.addSubscriber(GENERATION_ID);

    const windowMs = 4000;
    await new Promise((resolve) => setTimeout(resolve, windowMs));

    // 20 intervals fit in the window. Scheduling from each poll's late start instead of its due
    // time stretches every interval by the lateness, to about 250 ms, which gives at most 16 polls.
    console.log(`cadence: ${polls.length} polls in ${windowMs} ms at a ${intervalMs} ms interval`);
    expect(polls.length).toBeGreaterThanOrEqual(18);
  });
});
