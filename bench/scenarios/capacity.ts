/**
 * Capacity: many concurrent push connections on one or two relay instances,
 * with every generation changing on every 5 s poll. Reports relay RSS and
 * CPU and the latency from the poll response (`updated_at`) to the client's
 * receipt, then raises the load past the targets to find the first limit.
 */
import { runPushCaseOrReport as runPushCase, type PushCase, type PushCaseResult } from "../lib/push-case.js";
import { counts, mib, ms, subscriberConnections, wsPath, MiB, type Scenario, type ScenarioOutput } from "../lib/scenario.js";
import type { Table, TargetCheck } from "../lib/report.js";
import { scaled, type RunContext } from "../lib/stack.js";
import type { ConnectionSpec } from "../lib/worker-protocol.js";
import type { BarChart } from "../lib/svg.js";

const POLL_INTERVAL_MS = 5000;
const GENERATIONS = 2000;

interface Sizes {
  warmupMs: number;
  windowMs: number;
  /** Connection counts on one instance past case (a), until one fails. */
  connectionSteps: number[];
  /** Subscriptions per WebSocket past case (b)'s 20, until a target is missed. */
  subscriptionSteps: number[];
}

const QUICK: Sizes = { warmupMs: 6000, windowMs: 20_000, connectionSteps: [21_000], subscriptionSteps: [40] };
const FULL: Sizes = { warmupMs: 10_000, windowMs: 60_000, connectionSteps: [19_500, 21_000, 24_000], subscriptionSteps: [40, 80, 160] };

/** `sockets` WebSockets that each subscribe to `perSocket` different generations, spread evenly over `ids`. */
function multiplexed(ids: readonly string[], sockets: number, perSocket: number, port: number): ConnectionSpec[] {
  return Array.from({ length: sockets }, (_, n) => ({
    transport: "ws" as const,
    port,
    path: wsPath,
    ids: Array.from({ length: perSocket }, (_, k) => ids[(n * perSocket + k) % ids.length]!),
  }));
}

/** `total` connections, half WebSocket and half SSE, spread evenly over the generations and ports. */
function halfAndHalf(ids: readonly string[], total: number, ports: readonly number[]): ConnectionSpec[] {
  const perGeneration = Math.ceil(total / ids.length);
  return subscriberConnections(ids, perGeneration, ports).slice(0, total);
}

function oneInstance(context: RunContext, label: string, connections: number, sizes: Sizes, windowMs = sizes.windowMs): PushCase {
  return {
    label,
    relayCpus: ["0"],
    redis: true,
    loadCpus: "1",
    generations: scaled(context, GENERATIONS),
    connections: (ids, ports) => halfAndHalf(ids, scaled(context, connections), ports),
    pollIntervalMs: POLL_INTERVAL_MS,
    warmupMs: sizes.warmupMs,
    windowMs,
    openPerSecond: 3000,
    maxInFlight: 64,
  };
}

function multiplexCase(context: RunContext, label: string, perSocket: number, sizes: Sizes): PushCase {
  return {
    label,
    relayCpus: ["0"],
    redis: true,
    loadCpus: "1",
    generations: scaled(context, GENERATIONS),
    connections: (ids, ports) => multiplexed(ids, scaled(context, 5000), perSocket, ports[0]!),
    relayEnv: { WS_MAX_SUBSCRIPTIONS: "1000" },
    pollIntervalMs: POLL_INTERVAL_MS,
    warmupMs: sizes.warmupMs,
    windowMs: sizes.windowMs,
    openPerSecond: 2000,
    maxInFlight: 64,
  };
}

/** RSS of the case's first relay instance, NaN when the case failed (so every comparison is false). */
function rssOf(result: PushCaseResult): number {
  return result.relays[0]?.rssMaxBytes ?? Number.NaN;
}

function row(result: PushCaseResult): Array<string | number> {
  if (result.failure !== undefined) return [result.label, `failed: ${result.failure}`, ...COLUMNS.slice(2).map(() => "n/a")];
  const rss = result.relays.map((usage) => mib(usage.rssMaxBytes)).join(" + ");
  const cpu = result.relays.map((usage) => usage.cpuPercent.toFixed(0)).join(" + ");
  return [
    result.label,
    `${result.open.toLocaleString("en-US")} / ${result.planned.toLocaleString("en-US")}`,
    result.subscriptions,
    `${result.messages.toLocaleString("en-US")} / ~${result.expectedMessages.toLocaleString("en-US")}`,
    result.pollsPerInterval.toFixed(2),
    ms(result.latency.all.p50),
    ms(result.latency.all.p99),
    ms(result.latency.all.max),
    `${ms(result.latency.ws.p99)} / ${ms(result.latency.sse.p99)}`,
    rss,
    cpu,
    result.loadCpuPercent.toFixed(0),
  ];
}

const COLUMNS = [
  "case",
  "connections open / planned",
  "subscriptions",
  "statuses received / due",
  "polls per generation per interval",
  "p50 ms",
  "p99 ms",
  "max ms",
  "p99 WS / SSE ms",
  "relay RSS max MiB",
  "relay CPU %",
  "load generators CPU %",
];

function problems(result: PushCaseResult): string {
  if (result.failure !== undefined) return `- **${result.label}**: the case failed: ${result.failure}.`;
  const parts = [
    `open failures: ${counts(result.openFailures)}`,
    `error messages: ${counts(result.errorCodes)}`,
    `connections ended: ${counts(result.closeReasons)}`,
    `relay warnings and errors: ${counts(result.relayLogErrors)}`,
  ];
  return `- **${result.label}**: ${parts.join("; ")}.`;
}

function profileFindings(results: readonly PushCaseResult[]): string[] {
  return results
    .filter((result) => result.hotFunctions.length > 0)
    .map((result) => {
      const lines = result.hotFunctions.map(
        (functions, i) => `  - instance ${i + 1}: ${functions.map((entry) => `${entry.name} ${entry.selfPercent.toFixed(1)} %`).join(", ")}`,
      );
      return [`CPU profile of **${result.label}** (self time, \`--profile\`):`, ...lines].join("\n");
    });
}

export const capacity: Scenario = {
  name: "capacity",
  timeLimitMs: (quick) => (quick ? 12 : 45) * 60_000,

  async run(context: RunContext): Promise<ScenarioOutput> {
    const sizes = context.quick ? QUICK : FULL;

    const number = (count: number) => scaled(context, count).toLocaleString("en-US");
    const caseA = await runPushCase(context, oneInstance(context, `(a) ${number(18_000)} connections, 1 instance`, 18_000, sizes));
    const caseB = await runPushCase(
      context,
      multiplexCase(context, `(b) ${number(100_000)} subscriptions on ${number(5000)} WebSockets`, 20, sizes),
    );
    const caseC = await runPushCase(context, {
      label: `(c) ${number(36_000)} connections, 2 instances`,
      relayCpus: ["0", "1"],
      redis: true,
      generations: scaled(context, GENERATIONS),
      connections: (ids, ports) => halfAndHalf(ids, scaled(context, 36_000), ports),
      pollIntervalMs: POLL_INTERVAL_MS,
      warmupMs: sizes.warmupMs,
      windowMs: sizes.windowMs,
      openPerSecond: 3000,
      maxInFlight: 32,
    });

    // Raising the load: more connections on one instance, then more subscriptions per socket.
    const raised: PushCaseResult[] = [];
    for (const connections of sizes.connectionSteps) {
      const result = await runPushCase(
        context,
        oneInstance(context, `(a+) ${number(connections)} connections, 1 instance`, connections, sizes, Math.min(sizes.windowMs, 20_000)),
      );
      raised.push(result);
      if (result.failure !== undefined || result.open < result.planned) break;
    }
    for (const perSocket of sizes.subscriptionSteps) {
      const label = `(b+) ${number(perSocket * 5000)} subscriptions on ${number(5000)} WebSockets`;
      const result = await runPushCase(context, multiplexCase(context, label, perSocket, sizes));
      raised.push(result);
      if (result.failure !== undefined || result.latency.all.p99 > 100 || rssOf(result) > 1024 * MiB || result.open < result.planned) break;
    }

    const targets: TargetCheck[] = [
      { what: "(a) relay RSS", target: "≤ 600 MB", measured: `${mib(rssOf(caseA))} MiB`, met: rssOf(caseA) <= 600 * MiB },
      { what: "(a) push latency p99", target: "≤ 50 ms", measured: `${ms(caseA.latency.all.p99)} ms`, met: caseA.latency.all.p99 <= 50 },
      { what: "(a) all connections open", target: caseA.planned.toLocaleString("en-US"), measured: caseA.open.toLocaleString("en-US"), met: caseA.failure === undefined && caseA.open === caseA.planned },
      { what: "(b) relay RSS", target: "≤ 1 GB", measured: `${mib(rssOf(caseB))} MiB`, met: rssOf(caseB) <= 1024 * MiB },
      { what: "(b) push latency p99", target: "≤ 100 ms", measured: `${ms(caseB.latency.all.p99)} ms`, met: caseB.latency.all.p99 <= 100 },
      {
        what: "(a) and (b) each generation polled once per interval, so it changes about every 5 s",
        target: "≥ 0.95 polls per generation per interval",
        measured: `${caseA.pollsPerInterval.toFixed(2)} and ${caseB.pollsPerInterval.toFixed(2)}`,
        met: caseA.pollsPerInterval >= 0.95 && caseB.pollsPerInterval >= 0.95,
      },
      { what: "(c) all connections open", target: caseC.planned.toLocaleString("en-US"), measured: caseC.open.toLocaleString("en-US"), met: caseC.failure === undefined && caseC.open === caseC.planned },
    ];

    const tables: Table[] = [
      { title: "Capacity at the target sizes", columns: COLUMNS, rows: [caseA, caseB, caseC].map(row) },
      { title: "Raising the load", columns: COLUMNS, rows: raised.map(row) },
    ];

    const chart: BarChart = {
      title: "Push latency from poll response to receipt",
      axis: "ms",
      groups: [caseA, caseB, caseC, ...raised].map((result) => ({
        label: result.label.length > 50 ? `${result.label.slice(0, 48)}…` : result.label,
        bars: [
          { series: "p50", value: result.latency.all.p50 },
          { series: "p99", value: result.latency.all.p99 },
          { series: "max", value: result.latency.all.max },
        ],
      })),
    };

    return {
      result: {
        title: "2. Capacity",
        method: [
          `Every generation's queue position moves every ${POLL_INTERVAL_MS / 2} ms in the simulator, so each ${POLL_INTERVAL_MS} ms poll ` +
            `finds a change and pushes it. ${GENERATIONS.toLocaleString("en-US")} generations; connections are spread evenly over them ` +
            "(half WebSocket, half SSE, except in (b)). Each case starts a fresh simulator, redis-server and relay (Redis store and bus, " +
            "as in production), opens the connections, waits one warm-up period and then measures for the window.",
          "**Latency** is the client's receipt time minus the status's `updated_at`, which the relay sets when the poll response " +
            "arrives; both clocks are this machine's, at 1 ms resolution. It covers the store write, fan-out (on the polling " +
            "instance directly, on the others after Redis pub/sub), the kernel and the load generator's event loop. **RSS** is the largest of 1 s samples of the relay " +
            "process in the window; **CPU** is the relay's CPU time in the window divided by its length (100 % is one core).",
          "Relay instances are pinned to core 0 (in (c), one instance per core); the simulator, Redis and the load generators run " +
            "on core 1 (unpinned in (c)). The load generators hold at most 4,500 connections per process because every process " +
            "may open at most 20,000 files here. (b) raises WS_MAX_SUBSCRIPTIONS to 1000 by environment.",
          "Statuses due is one per subscription per poll interval, which holds only while every generation is polled once " +
            "per interval: the polls column is the simulator's count of status requests in the window per generation per " +
            "interval, so a value below 1.00 means the relay fell behind with polling and fewer changes existed to push.",
        ],
        tables,
        targets,
        findings: [
          ...([caseA, caseB, caseC].some((result) => result.pollsPerInterval < 0.95)
            ? [
                "NOTE: the relay polled each generation less than once per interval, so the cases carried fewer changes than " +
                  "intended and their latency and CPU figures describe that lighter load. The relay's CPU stayed low meanwhile, " +
                  "so the polling rate, not the machine, set the limit.",
              ]
            : []),
          "Connection problems and relay log lines per case:",
          [caseA, caseB, caseC, ...raised].map(problems).join("\n"),
          ...profileFindings([caseA, caseB, caseC, ...raised]),
        ],
        charts: ["capacity.svg"],
      },
      charts: { "capacity.svg": chart },
    };
  },
};

