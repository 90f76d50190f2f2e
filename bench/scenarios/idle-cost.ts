/**
 * Idle cost: relay memory per idle WebSocket, per idle SSE stream, and per
 * extra subscription on an open WebSocket, from RSS before and after.
 */
import { LoadFleet, workersFor } from "../lib/load-fleet.js";
import { readUsage } from "../lib/processes.js";
import { steadyPlan } from "../lib/simulator-api.js";
import { counts, mib, ssePath, wsPath, type Scenario, type ScenarioOutput } from "../lib/scenario.js";
import { scaled, sleep, startRelay, startSimulator, trackFleet, type RunContext, type SimulatorHandle } from "../lib/stack.js";
import type { ConnectionSpec } from "../lib/worker-protocol.js";
import type { Table } from "../lib/report.js";
import type { BarChart } from "../lib/svg.js";

const CONNECTIONS = 10_000;
const SUBSCRIPTION_SOCKETS = 1000;
const SUBSCRIPTIONS_PER_SOCKET = 100;
const GENERATIONS = 1000;
/** Handshakes waiting per load generator, below the relay's listen backlog of 511. */
const OPEN_MAX_IN_FLIGHT = 64;
/** Time for RSS to settle after a step; V8 grows its heap in steps, so one reading alone is noisy. */
const SETTLE_MS = 5000;

/** Median of three RSS readings one second apart, in bytes. */
async function settledRss(pid: number): Promise<number> {
  await sleep(SETTLE_MS - 2000);
  const readings: number[] = [];
  for (let i = 0; i < 3; i += 1) {
    readings.push(readUsage(pid).rssBytes);
    if (i < 2) await sleep(1000);
  }
  return readings.sort((a, b) => a - b)[1]!;
}

interface Step {
  what: string;
  before: number;
  after: number;
  units: number;
  note: string;
}

/**
 * Measures the relay's RSS before and after `act` on a fresh relay. `act`
 * returns how many units (connections or subscriptions) it added and a note.
 */
async function measureStep(
  context: RunContext,
  simulator: SimulatorHandle,
  what: string,
  act: (fleet: LoadFleet, port: number) => Promise<{ units: number; note: string }>,
  before?: (fleet: LoadFleet, port: number) => Promise<void>,
): Promise<Step> {
  const relay = await startRelay(context, { name: "relay", simulator, cpus: "0" });
  const fleet = await LoadFleet.start({
    name: "idle-load",
    workers: workersFor(scaled(context, CONNECTIONS), 2),
    cpus: "1",
    repoRoot: context.repoRoot,
    logDir: context.runDir,
  });
  trackFleet(context, fleet);
  try {
    await before?.(fleet, relay.port);
    const rssBefore = await settledRss(relay.process.pid);
    const { units, note } = await act(fleet, relay.port);
    const rssAfter = await settledRss(relay.process.pid);
    return { what, before: rssBefore, after: rssAfter, units, note };
  } finally {
    await fleet.stop();
    await relay.process.stop();
  }
}

export const idleCost: Scenario = {
  name: "idle-cost",
  timeLimitMs: (quick) => (quick ? 5 : 10) * 60_000,

  async run(context: RunContext): Promise<ScenarioOutput> {
    const connections = scaled(context, CONNECTIONS);
    const subscriptionSockets = scaled(context, SUBSCRIPTION_SOCKETS);
    const generations = scaled(context, GENERATIONS);
    const subscriptions = subscriptionSockets * SUBSCRIPTIONS_PER_SOCKET;
    const simulator = await startSimulator(context, "1");
    const steps: Step[] = [];
    try {
      const ids = await simulator.api.createGenerations(generations, steadyPlan());

      steps.push(
        await measureStep(context, simulator, "idle WebSocket (no subscription)", async (fleet, port) => {
          const specs: ConnectionSpec[] = Array.from({ length: connections }, () => ({ transport: "ws", port, path: wsPath, ids: [] }));
          const opened = await fleet.open(specs, 3000, OPEN_MAX_IN_FLIGHT);
          return { units: opened.ok, note: `${opened.ok} of ${specs.length} open, failures: ${counts(opened.failures)}` };
        }),
      );

      steps.push(
        await measureStep(context, simulator, "idle SSE stream (one generation each)", async (fleet, port) => {
          const specs: ConnectionSpec[] = Array.from({ length: connections }, (_, n) => ({
            transport: "sse",
            port,
            path: ssePath(ids[n % ids.length]!),
          }));
          const opened = await fleet.open(specs, 3000, OPEN_MAX_IN_FLIGHT);
          return { units: opened.ok, note: `${opened.ok} of ${specs.length} open, failures: ${counts(opened.failures)}` };
        }),
      );

      steps.push(
        await measureStep(
          context,
          simulator,
          `extra subscription on an open WebSocket (${SUBSCRIPTIONS_PER_SOCKET} per socket)`,
          async (fleet) => {
            await fleet.subscribeEach((n) =>
              Array.from({ length: SUBSCRIPTIONS_PER_SOCKET }, (_, k) => ids[(n * SUBSCRIPTIONS_PER_SOCKET + k) % ids.length]!),
            );
            const report = await fleet.report();
            return {
              units: report.open.ws * SUBSCRIPTIONS_PER_SOCKET,
              note: `${subscriptions} subscribe messages on ${report.open.ws} open sockets, error messages: ${counts(report.errorCodes)}`,
            };
          },
          async (fleet, port) => {
            const specs: ConnectionSpec[] = Array.from({ length: subscriptionSockets }, () => ({ transport: "ws", port, path: wsPath, ids: [] }));
            await fleet.open(specs, 2000, OPEN_MAX_IN_FLIGHT);
          },
        ),
      );
    } finally {
      await simulator.process.stop();
    }

    const table: Table = {
      title: "Relay RSS per idle connection and per subscription",
      columns: ["what", "count added", "RSS before MiB", "RSS after MiB", "per unit KiB", "notes"],
      rows: steps.map((step) => [
        step.what,
        step.units,
        mib(step.before),
        mib(step.after),
        ((step.after - step.before) / step.units / 1024).toFixed(2),
        step.note,
      ]),
    };
    const chart: BarChart = {
      title: "Relay memory per idle connection and per subscription",
      axis: "KiB of RSS",
      groups: steps.map((step) => ({
        label: step.what.replace(/ \(.*\)$/, ""),
        bars: [{ series: "KiB per unit", value: (step.after - step.before) / step.units / 1024 }],
      })),
    };

    return {
      result: {
        title: "4. Idle cost",
        method: [
          `Each row starts a fresh relay (in-memory store, pinned to core 0), reads its RSS, adds the load, waits ${SETTLE_MS / 1000} s ` +
            "and reads it again; each reading is the median of three samples one second apart. The per-unit figure is the RSS " +
            "difference divided by the count.",
          `WebSockets open without subscribing. SSE streams each watch one of ${generations.toLocaleString("en-US")} generations, ` +
            `so an SSE figure includes one subscription and a share of the per-generation state. The subscription row opens ` +
            `${subscriptionSockets.toLocaleString("en-US")} WebSockets first (before the first reading), then subscribes each to ` +
            `${SUBSCRIPTIONS_PER_SOCKET} generations (the default WS_MAX_SUBSCRIPTIONS), about ` +
            `${Math.round(subscriptions / generations)} subscribers per generation; ` +
            "no status changes during the measurement.",
          "NOTE: RSS also moves with V8's heap growth and garbage collection, so figures within about 10 % of each other are not different.",
        ],
        tables: [table],
        targets: [],
        findings: [],
        charts: ["idle-cost.svg"],
      },
      charts: { "idle-cost.svg": chart },
    };
  },
};
