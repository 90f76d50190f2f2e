/**
 * One push measurement against live relay instances: generations that change
 * on every poll, connections opened by a load fleet, a warm-up, then a window
 * in which push latency, relay RSS and relay CPU are recorded.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Histogram, LatencySummary } from "./histogram.js";
import { LoadFleet, workersFor } from "./load-fleet.js";
import { hotFunctions, profilesSince, type HotFunction } from "./profile.js";
import { UsageSampler, type UsageSummary } from "./processes.js";
import { changingPlan } from "./simulator-api.js";
import { sleep, startRedis, startRelay, startSimulator, trackFleet, type RelayHandle, type RunContext } from "./stack.js";
import type { ConnectionSpec } from "./worker-protocol.js";

export interface PushCase {
  label: string;
  /** CPU list of each relay instance; two or more instances share a redis-server. */
  relayCpus: string[];
  /** Use Redis even with one instance, as a production deployment would. */
  redis: boolean;
  /** CPU list of the simulator, Redis and load generators; unpinned when absent. */
  loadCpus?: string;
  generations: number;
  /** The connections to open, given the generation ids and the relay ports. */
  connections(ids: string[], ports: number[]): ConnectionSpec[];
  /** Relay settings added to the benchmark defaults. */
  relayEnv?: Record<string, string>;
  pollIntervalMs: number;
  warmupMs: number;
  windowMs: number;
  openPerSecond: number;
  /**
   * Handshakes waiting per load generator process. The relay listens with
   * Node's default backlog of 511, and a relay busy with new subscriptions
   * drops SYNs past it, which clients see as ETIMEDOUT after retries.
   */
  maxInFlight: number;
}

export interface PushCaseResult {
  label: string;
  planned: number;
  open: number;
  openFailures: Record<string, number>;
  subscriptions: number;
  /** Status messages received in the window, and about how many were due (one per subscription per interval). */
  messages: number;
  expectedMessages: number;
  /** Upstream status requests in the window per generation per poll interval, counted by the simulator. */
  pollsPerInterval: number;
  latency: { all: LatencySummary; ws: LatencySummary; sse: LatencySummary };
  /** One entry per relay instance. */
  relays: UsageSummary[];
  loadCpuPercent: number;
  errorCodes: Record<string, number>;
  closeReasons: Record<string, number>;
  /** Lines of relay logs that report errors (EMFILE and others), counted by message. */
  relayLogErrors: Record<string, number>;
  hotFunctions: HotFunction[][];
  /** Set when the case could not run to the end; the other fields are then empty. */
  failure?: string;
}

const NO_LATENCY = { samples: 0, p50: Number.NaN, p99: Number.NaN, max: Number.NaN };

/** Runs a case, and turns a failure into a result that names the error, so one failed case does not lose the others. */
export async function runPushCaseOrReport(context: RunContext, spec: PushCase): Promise<PushCaseResult> {
  try {
    return await runPushCase(context, spec);
  } catch (error) {
    const message = error instanceof Error ? error.message.split("\n")[0]! : String(error);
    process.stderr.write(`bench: case ${spec.label} failed: ${message}\n`);
    return {
      label: spec.label,
      planned: 0,
      open: 0,
      openFailures: {},
      subscriptions: 0,
      messages: 0,
      expectedMessages: 0,
      pollsPerInterval: Number.NaN,
      latency: { all: NO_LATENCY, ws: NO_LATENCY, sse: NO_LATENCY },
      relays: [],
      loadCpuPercent: Number.NaN,
      errorCodes: {},
      closeReasons: {},
      relayLogErrors: {},
      hotFunctions: [],
      failure: message,
    };
  }
}

function subscriptionCount(specs: readonly ConnectionSpec[]): number {
  return specs.reduce((sum, spec) => sum + (spec.transport === "ws" ? spec.ids.length : 1), 0);
}

/** Counts warn and error log lines of a relay by message, to show why connections failed. */
function relayLogErrors(relays: readonly RelayHandle[]): Record<string, number> {
  const found: Record<string, number> = {};
  for (const relay of relays) {
    let text = "";
    try {
      text = readFileSync(relay.process.logFile, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      let message = line.slice(0, 120);
      try {
        const entry = JSON.parse(line) as { level?: number; msg?: string; err?: { code?: string; message?: string } };
        if ((entry.level ?? 0) < 40) continue;
        message = `${entry.msg ?? ""}${entry.err?.code ? ` (${entry.err.code})` : entry.err?.message ? ` (${entry.err.message.slice(0, 60)})` : ""}`;
      } catch {
        // Not a JSON log line (a crash trace, say): counted as it is.
      }
      found[message] = (found[message] ?? 0) + 1;
    }
  }
  return found;
}

export async function runPushCase(context: RunContext, spec: PushCase): Promise<PushCaseResult> {
  const simulator = await startSimulator(context, spec.loadCpus);
  const redis = spec.redis || spec.relayCpus.length > 1 ? await startRedis(context, spec.loadCpus) : undefined;
  const relays: RelayHandle[] = [];
  const profileStart = Date.now();
  let fleet: LoadFleet | undefined;

  try {
    for (const [i, cpus] of spec.relayCpus.entries()) {
      relays.push(
        await startRelay(context, {
          name: `relay-${i + 1}`,
          simulator,
          ...(redis === undefined ? {} : { redis }),
          cpus,
          env: { POLL_INTERVAL_MS: String(spec.pollIntervalMs), ...spec.relayEnv },
        }),
      );
    }
    const ids = await simulator.api.createGenerations(spec.generations, changingPlan(spec.pollIntervalMs / 2));
    const connections = spec.connections(
      ids,
      relays.map((relay) => relay.port),
    );
    fleet = await LoadFleet.start({
      name: `load-${spec.label.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}`,
      workers: workersFor(connections.length, 2),
      ...(spec.loadCpus === undefined ? {} : { cpus: spec.loadCpus }),
      repoRoot: context.repoRoot,
      logDir: context.runDir,
    });
    trackFleet(context, fleet);

    const opened = await fleet.open(connections, spec.openPerSecond, spec.maxInFlight);
    await sleep(spec.warmupMs);

    const samplers = relays.map((relay) => new UsageSampler(() => [relay.process.pid]));
    const loadSampler = new UsageSampler(() => fleet!.pids);
    await simulator.api.resetStats();
    await fleet.measure(Date.now());
    await sleep(spec.windowMs);
    const upstreamStatusRequests = (await simulator.api.stats()).requests.status ?? 0;
    // Statuses observed just before the window ended are still on their way.
    await sleep(250);
    const report = await fleet.report();
    const relayUsage = samplers.map((sampler) => sampler.stop());
    const loadUsage = loadSampler.stop();

    const subscriptions = subscriptionCount(connections);
    const summarize = (histogram: Histogram) => histogram.summary();
    const result: PushCaseResult = {
      label: spec.label,
      planned: connections.length,
      open: opened.ok,
      openFailures: opened.failures,
      subscriptions,
      messages: report.statusMessages,
      expectedMessages: Math.round((subscriptions * spec.windowMs) / spec.pollIntervalMs),
      pollsPerInterval: upstreamStatusRequests / ids.length / (spec.windowMs / spec.pollIntervalMs),
      latency: { all: summarize(report.all), ws: summarize(report.ws), sse: summarize(report.sse) },
      relays: relayUsage,
      loadCpuPercent: loadUsage.cpuPercent,
      errorCodes: report.errorCodes,
      closeReasons: report.closeReasons,
      relayLogErrors: relayLogErrors(relays),
      hotFunctions: [],
    };

    await fleet.stop();
    fleet = undefined;
    for (const relay of relays) await relay.process.stop(15_000);
    if (context.profile) {
      result.hotFunctions = profilesSince(join(context.runDir, "profiles"), profileStart).map((file) => hotFunctions(file));
    }
    return result;
  } finally {
    await fleet?.stop();
    for (const relay of relays) await relay.process.stop();
    await redis?.process.stop();
    await simulator.process.stop();
  }
}
