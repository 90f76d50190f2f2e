/**
 * The runner's side of the load generators: starts worker processes (pinned
 * with taskset), spreads connections over them and merges their reports.
 *
 * Each process stays well under the 20,000 open files a process may hold on
 * the benchmark machine, so tens of thousands of connections need several.
 */
import { fileURLToPath } from "node:url";
import { Histogram } from "./histogram.js";
import { startProcess, type ManagedProcess } from "./processes.js";
import type { ConnectionSpec, OpenResult, WorkerCommand, WorkerReply, WorkerReport } from "./worker-protocol.js";

/** Connections per load generator process; leaves room under a 20,000 open-file limit. */
export const CONNECTIONS_PER_WORKER = 4500;

const WORKER_FILE = fileURLToPath(new URL("./load-worker.ts", import.meta.url));
const REPLY_TIMEOUT_MS = 300_000;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

class Worker {
  #nextId = 1;
  readonly #waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  readonly ready: Promise<void>;
  /** WebSockets this worker opened, in order, for later subscribe commands. */
  webSockets = 0;

  constructor(readonly process: ManagedProcess) {
    this.ready = new Promise((resolve, reject) => {
      process.child.on("message", (message: WorkerReply) => {
        if (message.type === "ready") {
          resolve();
          return;
        }
        const waiting = this.#waiting.get(message.id);
        if (waiting === undefined) return;
        this.#waiting.delete(message.id);
        if (message.type === "done") waiting.resolve(message.result);
        else waiting.reject(new Error(`load generator ${process.name} failed: ${message.message}`));
      });
      void process.exited.then((code) => {
        const error = new Error(`load generator ${process.name} exited with status ${code}; see ${process.logFile}`);
        reject(error);
        for (const waiting of this.#waiting.values()) waiting.reject(error);
        this.#waiting.clear();
      });
    });
  }

  call<T>(command: DistributiveOmit<WorkerCommand, "id">): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`load generator ${this.process.name} did not reply to "${command.type}" within ${REPLY_TIMEOUT_MS} ms`));
      }, REPLY_TIMEOUT_MS);
      this.#waiting.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.process.child.send({ ...command, id });
    });
  }
}

export interface FleetReport {
  ws: Histogram;
  sse: Histogram;
  all: Histogram;
  statusMessages: number;
  allMessages: number;
  finals: number;
  errorCodes: Record<string, number>;
  closeReasons: Record<string, number>;
  open: { ws: number; sse: number };
}

export interface FleetOptions {
  name: string;
  workers: number;
  /** CPU list for taskset, e.g. "1". */
  cpus?: string;
  repoRoot: string;
  logDir: string;
}

export class LoadFleet {
  private constructor(
    readonly workers: Worker[],
    readonly options: FleetOptions,
  ) {}

  static async start(options: FleetOptions): Promise<LoadFleet> {
    const workers: Worker[] = [];
    for (let i = 0; i < options.workers; i += 1) {
      const managed = startProcess({
        name: `${options.name}-${i + 1}`,
        command: process.execPath,
        args: ["--import", "tsx", WORKER_FILE],
        cwd: options.repoRoot,
        ...(options.cpus === undefined ? {} : { cpus: options.cpus }),
        ipc: true,
        logDir: options.logDir,
      });
      workers.push(new Worker(managed));
    }
    await Promise.all(workers.map((worker) => worker.ready));
    return new LoadFleet(workers, options);
  }

  get pids(): number[] {
    return this.workers.map((worker) => worker.process.pid);
  }

  /**
   * Opens the connections, dealt round-robin over the workers, at `perSecond`
   * in all and with at most `maxInFlight` handshakes waiting per worker.
   */
  async open(connections: readonly ConnectionSpec[], perSecond: number, maxInFlight = 512): Promise<OpenResult> {
    const shares: ConnectionSpec[][] = this.workers.map(() => []);
    connections.forEach((spec, i) => shares[i % shares.length]!.push(spec));
    shares.forEach((share, i) => {
      this.workers[i]!.webSockets += share.filter((spec) => spec.transport === "ws").length;
    });

    const results = await Promise.all(
      this.workers.map((worker, i) =>
        worker.call<OpenResult>({ type: "open", connections: shares[i]!, perSecond: perSecond / this.workers.length, maxInFlight }),
      ),
    );
    const failures: Record<string, number> = {};
    let ok = 0;
    for (const result of results) {
      ok += result.ok;
      for (const [reason, times] of Object.entries(result.failures)) failures[reason] = (failures[reason] ?? 0) + times;
    }
    return { ok, failures };
  }

  /** Subscribes every open WebSocket to `idsFor(n)`, where n numbers the fleet's sockets from 0. */
  async subscribeEach(idsFor: (socketNumber: number) => string[]): Promise<void> {
    let base = 0;
    await Promise.all(
      this.workers.map((worker) => {
        const first = base;
        base += worker.webSockets;
        const idsPerSocket = Array.from({ length: worker.webSockets }, (_, i) => idsFor(first + i));
        return worker.call({ type: "subscribe", idsPerSocket });
      }),
    );
  }

  /** Starts counting statuses whose `updated_at` is at or after `fromMs`. */
  async measure(fromMs: number): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.call({ type: "measure", fromMs })));
  }

  async report(): Promise<FleetReport> {
    const reports = await Promise.all(this.workers.map((worker) => worker.call<WorkerReport>({ type: "report" })));
    const merged: FleetReport = {
      ws: new Histogram(),
      sse: new Histogram(),
      all: new Histogram(),
      statusMessages: 0,
      allMessages: 0,
      finals: 0,
      errorCodes: {},
      closeReasons: {},
      open: { ws: 0, sse: 0 },
    };
    for (const report of reports) {
      merged.ws.merge(report.ws);
      merged.sse.merge(report.sse);
      merged.all.merge(report.ws);
      merged.all.merge(report.sse);
      merged.statusMessages += report.statusMessages;
      merged.allMessages += report.allMessages;
      merged.finals += report.finals;
      addCounts(merged.errorCodes, report.errorCodes);
      addCounts(merged.closeReasons, report.closeReasons);
      merged.open.ws += report.open.ws;
      merged.open.sse += report.open.sse;
    }
    return merged;
  }

  async closeConnections(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.call({ type: "close" })));
    for (const worker of this.workers) worker.webSockets = 0;
  }

  /** Runs HTTP pollers spread over the workers; returns the responses counted. */
  async poll(
    port: number,
    targets: Array<{ path: string; pollers: number }>,
    intervalMs: number,
    durationMs: number,
  ): Promise<{ ok: number; failed: number }> {
    const count = this.workers.length;
    const results = await Promise.all(
      this.workers.map((worker, w) =>
        worker.call<{ ok: number; failed: number }>({
          type: "poll",
          port,
          targets: targets.map((target) => ({
            path: target.path,
            pollers: Math.floor(target.pollers / count) + (w < target.pollers % count ? 1 : 0),
          })),
          intervalMs,
          durationMs,
          maxSockets: 256,
        }),
      ),
    );
    return results.reduce((sum, result) => ({ ok: sum.ok + result.ok, failed: sum.failed + result.failed }), { ok: 0, failed: 0 });
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.process.stop(5000)));
  }
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, times] of Object.entries(from)) into[key] = (into[key] ?? 0) + times;
}

/** Number of workers for `connections`, at least `minimum`. */
export function workersFor(connections: number, minimum = 1): number {
  return Math.max(minimum, Math.ceil(connections / CONNECTIONS_PER_WORKER));
}
