/** The sliced sweep: every item once per period, a tenth of them per tick. */
import { afterEach, describe, expect, it } from "vitest";
import { SLICES, SlicedSweep } from "../src/push/sliced-sweep.js";

const sweeps: Array<SlicedSweep<number>> = [];
afterEach(() => {
  for (const sweep of sweeps.splice(0)) sweep.stop();
});

describe("sliced sweep", () => {
  it("visits each item once per period", async () => {
    const sweep = new SlicedSweep<number>();
    sweeps.push(sweep);
    for (let item = 0; item < 25; item += 1) sweep.add(item);
    const order: number[] = [];
    const allVisited = new Promise<void>((resolve) => {
      sweep.start(400, (item) => {
        order.push(item);
        if (new Set(order).size === 25) {
          sweep.stop();
          resolve();
        }
      });
    });
    await allVisited;

    // Items are dealt round-robin, so one tick visits the items of one remainder modulo SLICES.
    const runs: number[][] = [];
    for (const item of order) {
      const run = runs.at(-1);
      if (run !== undefined && run[0]! % SLICES === item % SLICES) run.push(item);
      else runs.push([item]);
    }
    expect(order.length).toBe(25);
    expect(runs.length).toBe(SLICES);
    expect(Math.max(...runs.map((run) => run.length))).toBeLessThanOrEqual(Math.ceil(25 / SLICES));
  });

  it("stops visiting deleted items", async () => {
    const sweep = new SlicedSweep<number>();
    sweeps.push(sweep);
    sweep.add(1);
    sweep.add(2);
    sweep.delete(1);
    const visited: number[] = [];

    sweep.start(100, (item) => visited.push(item));
    await new Promise((resolve) => setTimeout(resolve, 150));

    expect(sweep.size).toBe(1);
    expect(visited.length).toBeGreaterThan(0);
    expect(visited.every((item) => item === 2)).toBe(true);
  });
});
