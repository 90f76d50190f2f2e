/**
 * Upstream amplification: status requests that reach Runblob per watched
 * generation per poll interval, counted by the simulator, with 1, 100 and
 * 1,000 subscribers per generation, on 1 relay instance and on 3 instances
 * sharing Redis. The same counts for browsers polling the relay's REST
 * status route, and for the baseline without the relay.
 */
import { LoadFleet, workersFor } from "../lib/load-fleet.js";
import { steadyPlan } from "../lib/simulator-api.js";
import { subscriberConnections, counts, type Scenario, type ScenarioOutput } from "../lib/scenario.js";
import {
  sleep,
  startNaiveProxy,
  startRedis,
  startRelay,
  startSimulator,
  trackFleet,
  type RunContext,
  type SimulatorHandle,
} from "../lib/stack.js";
import type { Table, TargetCheck } from "../lib/report.js";
import type { BarChart } from "../lib/svg.js";

const SUBSCRIBER_COUNTS = [1, 100, 1000] as const;
/** Accepted distance of a relay row's mean from 1.00: the window's start and end cut polls at random phases. */
const TOLERANCE = 0.05;

interface Sizes {
  intervalMs: number;
  /** Intervals counted after the warm-up interval. */
  windowIntervals: number;
  /** Generations per subscriber count, for the push rows. */
  generations: Record<(typeof SUBSCRIBER_COUNTS)[number], number>;
  /** Generations per poller count, for the REST and baseline rows. */
  polledGenerations: number;
}

const QUICK: Sizes = { intervalMs: 1000, windowIntervals: 20, generations: { 1: 10, 100: 4, 1000: 2 }, polledGenerations: 1 };
const FULL: Sizes = { intervalMs: 5000, windowIntervals: 12, generations: { 1: 20, 100: 5, 1000: 5 }, polledGenerations: 2 };

interface Row {
  setup: string;
  subscribers: number;
  generations: number;
  mean: number;
  min: number;
  max: number;
  note: string;
}

/** Per-generation request counts over the window, divided by the number of intervals. */
function rates(stats: Record<string, number>, ids: readonly string[], intervals: number): { mean: number; min: number; max: number } {
  const values = ids.map((id) => (stats[id] ?? 0) / intervals);
  return {
    mean: values.reduce((sum, value) => sum + value, 0) / values.length,
    min: Math.min(...values),
    max: Math.max(...values),
  };
}

/** Resets the simulator's counters after one warm-up interval, waits out the window and returns the counts per generation. */
async function countWindow(simulator: SimulatorHandle, sizes: Sizes): Promise<Record<string, number>> {
  await sleep(sizes.intervalMs);
  await simulator.api.resetStats();
  await sleep(sizes.intervalMs * sizes.windowIntervals);
  return (await simulator.api.stats()).status_requests_by_generation;
}

async function relayPhase(context: RunContext, sizes: Sizes, instances: number): Promise<Row[]> {
  const simulator = await startSimulator(context, "1");
  const redis = instances > 1 ? await startRedis(context, "1") : undefined;
  const relays = [];
  for (let i = 0; i < instances; i += 1) {
    relays.push(
      await startRelay(context, {
        name: `relay-${i + 1}`,
        simulator,
        ...(redis === undefined ? {} : { redis }),
        cpus: "0",
        env: { POLL_INTERVAL_MS: String(sizes.intervalMs) },
      }),
    );
  }
  const ports = relays.map((relay) => relay.port);

  const plan = steadyPlan();
  const groups = [];
  for (const subscribers of SUBSCRIBER_COUNTS) {
    groups.push({ subscribers, ids: await simulator.api.createGenerations(sizes.generations[subscribers], plan) });
  }
  const polled = [];
  if (instances === 1) {
    for (const pollers of SUBSCRIBER_COUNTS) polled.push({ pollers, ids: await simulator.api.createGenerations(sizes.polledGenerations, plan) });
  }

  const connections = groups.flatMap((group) => subscriberConnections(group.ids, group.subscribers, ports));
  const pollerCount = polled.reduce((sum, group) => sum + group.pollers * group.ids.length, 0);
  const fleet = await LoadFleet.start({
    name: `amplification-load-${instances}`,
    workers: workersFor(Math.max(connections.length, pollerCount), 2),
    cpus: "1",
    repoRoot: context.repoRoot,
    logDir: context.runDir,
  });
  trackFleet(context, fleet);

  try {
    const opened = await fleet.open(connections, 2000);
    // REST pollers run through the warm-up and the window, and a little past it.
    const polling =
      polled.length === 0
        ? Promise.resolve({ ok: 0, failed: 0 })
        : fleet.poll(
            ports[0]!,
            polled.flatMap((group) => group.ids.map((id) => ({ path: `/v1/sora/generations/${id}`, pollers: group.pollers }))),
            sizes.intervalMs,
            sizes.intervalMs * (sizes.windowIntervals + 1.5),
          );
    const stats = await countWindow(simulator, sizes);
    const polls = await polling;

    const setup = instances === 1 ? "relay, 1 instance, push" : `relay, ${instances} instances + Redis, push`;
    const note = `${opened.ok} of ${connections.length} connections open (failures: ${counts(opened.failures)})`;
    const rows: Row[] = groups.map((group) => ({
      setup,
      subscribers: group.subscribers,
      generations: group.ids.length,
      ...rates(stats, group.ids, sizes.windowIntervals),
      note,
    }));
    for (const group of polled) {
      rows.push({
        setup: "relay, 1 instance, REST polled every interval",
        subscribers: group.pollers,
        generations: group.ids.length,
        ...rates(stats, group.ids, sizes.windowIntervals),
        note: `${polls.ok} REST responses with 200, ${polls.failed} failed`,
      });
    }
    return rows;
  } finally {
    await fleet.stop();
    for (const relay of relays) await relay.process.stop();
    await redis?.process.stop();
    await simulator.process.stop();
  }
}

async function baselinePhase(context: RunContext, sizes: Sizes): Promise<Row[]> {
  const simulator = await startSimulator(context, "1");
  const proxy = await startNaiveProxy(context, simulator, "0");
  const groups = [];
  for (const pollers of SUBSCRIBER_COUNTS) groups.push({ pollers, ids: await simulator.api.createGenerations(sizes.polledGenerations, steadyPlan()) });
  const pollerCount = groups.reduce((sum, group) => sum + group.pollers * group.ids.length, 0);
  const fleet = await LoadFleet.start({
    name: "amplification-baseline",
    workers: workersFor(pollerCount, 2),
    cpus: "1",
    repoRoot: context.repoRoot,
    logDir: context.runDir,
  });
  try {
    const polling = fleet.poll(
      proxy.port,
      groups.flatMap((group) => group.ids.map((id) => ({ path: `/v1/sora/generations/${id}`, pollers: group.pollers }))),
      sizes.intervalMs,
      sizes.intervalMs * (sizes.windowIntervals + 1.5),
    );
    const stats = await countWindow(simulator, sizes);
    const polls = await polling;
    return groups.map((group) => ({
      setup: "baseline: naive proxy, every browser polls every interval",
      subscribers: group.pollers,
      generations: group.ids.length,
      ...rates(stats, group.ids, sizes.windowIntervals),
      note: `${polls.ok} responses with 200, ${polls.failed} failed`,
    }));
  } finally {
    await fleet.stop();
    await proxy.process.stop();
    await simulator.process.stop();
  }
}

export const amplification: Scenario = {
  name: "amplification",
  timeLimitMs: (quick) => (quick ? 6 : 20) * 60_000,

  async run(context: RunContext): Promise<ScenarioOutput> {
    const sizes = context.quick ? QUICK : FULL;
    const rows = [
      ...(await relayPhase(context, sizes, 1)),
      ...(await relayPhase(context, sizes, 3)),
      ...(await baselinePhase(context, sizes)),
    ];

    const table: Table = {
      title: `Upstream status requests per generation per interval (interval ${sizes.intervalMs} ms, counted over ${sizes.windowIntervals} intervals)`,
      columns: ["setup", "subscribers or pollers per generation", "generations", "mean", "min", "max", "connections and requests"],
      rows: rows.map((row) => [row.setup, row.subscribers, row.generations, row.mean.toFixed(2), row.min.toFixed(2), row.max.toFixed(2), row.note]),
    };

    const targets: TargetCheck[] = rows
      .filter((row) => row.setup.startsWith("relay"))
      .map((row) => {
        const push = row.setup.endsWith("push");
        return {
          what: `${row.setup}, ${row.subscribers} per generation`,
          target: push ? `1.00 (mean within ±${TOLERANCE})` : "at most 1.00",
          measured: row.mean.toFixed(2),
          met: push ? Math.abs(row.mean - 1) <= TOLERANCE : row.mean <= 1 + TOLERANCE,
        };
      });

    const chart: BarChart = {
      title: "Upstream status requests per generation per interval",
      axis: "requests per generation per interval",
      log: true,
      groups: SUBSCRIBER_COUNTS.map((subscribers) => ({
        label: `${subscribers} per generation`,
        bars: rows
          .filter((row) => row.subscribers === subscribers)
          .map((row) => ({ series: row.setup.split(",").slice(0, 2).join(",").replace("baseline: naive proxy", "naive proxy"), value: row.mean })),
      })),
    };

    return {
      result: {
        title: "1. Upstream amplification",
        method: [
          "Each generation is watched by N subscribers (half WebSocket, half SSE, dealt round-robin over the relay instances) " +
            "and stays in the same status for the whole run, so only polling reaches Runblob. After all connections are open " +
            "and one warm-up interval has passed, the simulator's per-generation counters are reset, and the status requests " +
            "that arrive over the next window are divided by the number of intervals in it. The mean is over the generations " +
            "of the row; min and max show single generations, which vary by one request because the window cuts polls at random phases.",
          "**Baseline.** The naive row is a backend-for-frontend without sharing (bench/naive-proxy.ts): it holds the token " +
            "and forwards every `GET /v1/sora/generations/{id}` to Runblob. N browsers that each poll every interval through " +
            "it cost N upstream requests per interval, which is what the relay replaces. The relay's own REST status route is " +
            "not a baseline, because it already serves fresh statuses from its store; its rows show browsers that poll the " +
            "relay instead of subscribing. A lone poller costs less than one request per interval: its next request arrives " +
            "just under one interval after the fetch it caused, while that status still counts as fresh, so every other " +
            "request is served from the store.",
          "The 3-instance rows share one redis-server: each instance polls a generation only while it holds the poll lease in Redis. " +
            "Relay instances are pinned to core 0, the simulator, Redis and the load generators to core 1.",
        ],
        tables: [table],
        targets,
        findings: [],
        charts: ["amplification.svg"],
      },
      charts: { "amplification.svg": chart },
    };
  },
};
