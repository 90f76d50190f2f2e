/**
 * Starts a relay as a separate process (`node --import tsx src/main.ts`), so
 * tests can kill it with a signal or watch it exit, as an orchestrator would.
 * The relay listens on 127.0.0.1 on a port picked here, because the port of
 * PORT=0 does not reliably reach the log.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { findFreePort } from "./redis-server.js";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const HOST = "127.0.0.1";
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 12_000;
/** Output kept per process for failure messages, in characters. */
const OUTPUT_LIMIT = 64 * 1024;
/** Another process can take the picked port before the relay binds it, so startup retries on a new port. */
const START_ATTEMPTS = 3;

export interface RelayExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when the process exited. */
  at: number;
}

export interface RelayProcess {
  name: string;
  /** The INSTANCE_ID the relay runs with, which is also the value of the poll leases it holds in Redis. */
  instanceId: string;
  pid: number;
  port: number;
  baseUrl: string;
  wsUrl: string;
  exited: Promise<RelayExit>;
  isRunning(): boolean;
  /** The last 64 KB of the process's stdout and stderr. */
  output(): string;
  signal(signal: NodeJS.Signals): void;
  /** Sends SIGTERM, waits for the exit, and sends SIGKILL after 12 s. Does nothing once the process has exited. */
  stop(): Promise<RelayExit>;
}

export interface RelayProcessOptions {
  name: string;
  /** Relay variables (REDIS_URL, RUNBLOB_BASE_URL, ...), over the defaults below. */
  env: Record<string, string>;
}

/** Variables every test relay gets unless the test sets them. */
const DEFAULT_ENV: Record<string, string> = {
  NODE_ENV: "test",
  HOST,
  LOG_LEVEL: "warn",
  DEMO_ENABLED: "false",
  POLL_INTERVAL_MS: "500",
};

export async function startRelayProcess(options: RelayProcessOptions): Promise<RelayProcess> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const port = await findFreePort();
    try {
      return await startOnce(options, port);
    } catch (error) {
      lastError = error;
      if (!(error instanceof Error) || !error.message.includes("EADDRINUSE")) break;
    }
  }
  throw lastError;
}

async function startOnce(options: RelayProcessOptions, port: number): Promise<RelayProcess> {
  const instanceId = options.env.INSTANCE_ID ?? options.name;
  // Only what node and the relay need, so variables of the test runner (NODE_OPTIONS, REDIS_URL) do not leak in.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    ...(process.env.HOME === undefined ? {} : { HOME: process.env.HOME }),
    ...DEFAULT_ENV,
    INSTANCE_ID: instanceId,
    ...options.env,
    PORT: String(port),
  };
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });

  let output = "";
  const append = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT);
  };
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);

  const kill = () => {
    if (isRunning(child)) child.kill("SIGKILL");
  };
  // Kills the relay if the test process exits without stopping it.
  // NOTE: "exit" does not fire when a signal ends the test process, so a killed run can leave relays running.
  process.once("exit", kill);

  const exited = new Promise<RelayExit>((resolve) => {
    child.once("exit", (code, signal) => {
      process.off("exit", kill);
      resolve({ code, signal, at: performance.now() });
    });
  });

  const baseUrl = `http://${HOST}:${port}`;
  try {
    await waitForHealth(baseUrl, child, exited);
  } catch (error) {
    kill();
    await exited;
    throw new Error(`relay ${options.name} on port ${port} did not start: ${(error as Error).message}\n${output}`, { cause: error });
  }

  return {
    name: options.name,
    instanceId,
    pid: child.pid!,
    port,
    baseUrl,
    wsUrl: `ws://${HOST}:${port}/v1/sora/ws`,
    exited,
    isRunning: () => isRunning(child),
    output: () => output,
    signal: (signal) => {
      if (isRunning(child)) child.kill(signal);
    },
    stop: async () => {
      if (!isRunning(child)) return exited;
      child.kill("SIGTERM");
      const timer = setTimeout(kill, STOP_TIMEOUT_MS);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Resolves once GET /healthz returns 200. Rejects when the process exits first or READY_TIMEOUT_MS passes. */
async function waitForHealth(baseUrl: string, child: ChildProcess, exited: Promise<RelayExit>): Promise<void> {
  let exit: RelayExit | undefined;
  void exited.then((value) => (exit = value));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exit !== undefined) throw new Error(`the process exited with code ${exit.code} and signal ${exit.signal}`);
    try {
      const response = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(1000) });
      await response.body?.cancel();
      if (response.status === 200 && isRunning(child)) return;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  throw new Error(`GET /healthz did not return 200 within ${READY_TIMEOUT_MS} ms`);
}
