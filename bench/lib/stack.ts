/**
 * Starts the parts a scenario runs against, each in its own process on
 * 127.0.0.1: the Runblob simulator, redis-server, relay instances, and the
 * naive proxy of the amplification baseline.
 */
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { createServer, connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { logTail, startProcess, type ManagedProcess } from "./processes.js";
import { SimulatorApi } from "./simulator-api.js";

export interface RunContext {
  /** Repository with the relay's `dist/` build and `node_modules`. */
  relayRoot: string;
  /** This repository, where the bench sources and tsx live. */
  repoRoot: string;
  /** Folder for logs, profiles and temporary configuration of this run. */
  runDir: string;
  quick: boolean;
  /** Factor (0 < scale <= 1) applied to connection, subscription and generation counts. */
  scale: number;
  /** Run the relay with --cpu-prof and write profiles into the run directory. */
  profile: boolean;
  /** Command lines of every process started, for the report. */
  commands: Set<string>;
}

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 100 ms until it returns true; throws with `describe()` after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // Not up yet.
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await sleep(100);
  }
}

/** Resolves with the HTTP status of GET `path`, or rejects when the connection fails. */
export function httpStatus(port: number, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    const extra = Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join("");
    socket.setTimeout(2000, () => socket.destroy(new Error("timeout")));
    socket.once("error", reject);
    socket.once("data", (chunk) => {
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(chunk.toString("latin1"))?.[1] ?? 0));
      socket.destroy();
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n${extra}\r\n`);
  });
}

/** Records a started process's command line for the report, with the random bench token replaced. */
export function track(context: RunContext, managed: ManagedProcess): ManagedProcess {
  context.commands.add(`(cd ${managed.cwd} && ${managed.commandLine.replace(/bench-[0-9a-f]{24}/g, "$BENCH_TOKEN")})`);
  return managed;
}

/** Records the command line of a load fleet's workers once, with their number. */
export function trackFleet(context: RunContext, fleet: { workers: Array<{ process: ManagedProcess }> }): void {
  const first = fleet.workers[0]!.process;
  context.commands.add(`(cd ${first.cwd} && ${first.commandLine})  # ${fleet.workers.length} load generator processes`);
}

/** Scales a count by the run's --scale factor, keeping at least `minimum`. */
export function scaled(context: RunContext, count: number, minimum = 1): number {
  return Math.max(minimum, Math.round(count * context.scale));
}

/**
 * Builds the relay with `npm run build`. Returns a warning when tsc reported
 * type errors but still wrote `dist/main.js` (tsc emits despite type errors).
 */
export function buildRelay(context: RunContext): string | undefined {
  process.stdout.write(`bench: building the relay in ${context.relayRoot} (npm run build)\n`);
  try {
    execFileSync("npm", ["run", "build", "--silent"], { cwd: context.relayRoot, stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    const output = (error as { stdout?: Buffer; stderr?: Buffer }).stdout?.toString() ?? "";
    // tsc still writes JavaScript when it finds type errors, so the run goes on with it and prints a warning.
    if (!existsSync(join(context.relayRoot, "dist/main.js"))) {
      throw new Error(`npm run build failed in ${context.relayRoot} and wrote no dist/main.js:\n${output}`);
    }
    process.stderr.write(`bench: WARNING: npm run build reported errors; using the JavaScript it wrote anyway:\n${output}\n`);
    return `npm run build reported type errors in ${context.relayRoot}; the run used the JavaScript tsc wrote anyway`;
  }
  return undefined;
}

export interface SimulatorHandle {
  process: ManagedProcess;
  port: number;
  url: string;
  token: string;
  api: SimulatorApi;
}

/** Starts the Runblob simulator from the relay's build, with no random failures. */
export async function startSimulator(context: RunContext, cpus?: string): Promise<SimulatorHandle> {
  const port = await freePort();
  const token = `bench-${randomBytes(12).toString("hex")}`;
  const managed = track(
    context,
    startProcess({
      name: `simulator-${port}`,
      command: process.execPath,
      args: ["dist/simulator/standalone.js"],
      cwd: context.relayRoot,
      env: { SIMULATOR_PORT: String(port), SIMULATOR_HOST: "127.0.0.1", SIMULATOR_TOKEN: token, SIMULATOR_FAILURE_RATE: "0" },
      ...(cpus === undefined ? {} : { cpus }),
      logDir: context.runDir,
    }),
  );
  const api = new SimulatorApi(port, token);
  await waitFor(
    async () => (await httpStatus(port, "/__simulator/stats", { authorization: `Bearer ${token}` })) === 200,
    20_000,
    () => `simulator did not start:\n${logTail(managed)}`,
  );
  return { process: managed, port, url: `http://127.0.0.1:${port}`, token, api };
}

export interface RedisHandle {
  process: ManagedProcess;
  port: number;
  url: string;
}

/** Installs a Debian package with apt-get when `binary` is missing; throws with the install hint when that fails. */
export function ensureInstalled(binary: string, aptPackage: string): void {
  const found = ["/usr/bin", "/usr/local/bin", "/usr/sbin", "/bin"].some((dir) => existsSync(join(dir, binary)));
  if (found) return;
  process.stdout.write(`bench: ${binary} is missing; installing ${aptPackage} with apt-get\n`);
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
    execFileSync("apt-get", ["install", "-y", "-qq", aptPackage], { stdio: "inherit", env });
  } catch (error) {
    throw new Error(`could not install ${aptPackage} (${(error as Error).message}): run "apt-get install ${aptPackage}" as root and try again`);
  }
}

/** Starts a private redis-server without persistence. */
export async function startRedis(context: RunContext, cpus?: string): Promise<RedisHandle> {
  ensureInstalled("redis-server", "redis-server");
  const port = await freePort();
  const dir = join(context.runDir, `redis-${port}`);
  mkdirSync(dir, { recursive: true });
  const managed = track(
    context,
    startProcess({
      name: `redis-${port}`,
      command: "redis-server",
      args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--maxclients", "1000"],
      cwd: context.runDir,
      ...(cpus === undefined ? {} : { cpus }),
      logDir: context.runDir,
    }),
  );
  await waitFor(
    () =>
      new Promise<boolean>((resolve, reject) => {
        const socket = connect({ host: "127.0.0.1", port });
        socket.once("error", reject);
        socket.once("data", (chunk) => {
          resolve(chunk.toString().startsWith("+PONG"));
          socket.destroy();
        });
        socket.write("PING\r\n");
      }),
    10_000,
    () => `redis-server did not start:\n${logTail(managed)}`,
  );
  return { process: managed, port, url: `redis://127.0.0.1:${port}` };
}

/** Upstream requests per second the relay may start in the benchmark: room for 2,000 generations polled every 5 s, and reads. */
export const BENCH_UPSTREAM_MAX_RPS = 5000;

export interface RelayHandle {
  process: ManagedProcess;
  port: number;
  name: string;
}

export interface RelayOptions {
  name: string;
  simulator: SimulatorHandle;
  redis?: RedisHandle;
  cpus?: string;
  /** Relay settings (see src/config/env.ts) added to the benchmark defaults. */
  env?: Record<string, string>;
}

/** Starts one relay instance from `dist/main.js` and waits until /readyz returns 200. */
export async function startRelay(context: RunContext, options: RelayOptions): Promise<RelayHandle> {
  const port = await freePort();
  const env: Record<string, string> = {
    NODE_ENV: "production",
    RUNBLOB_TOKEN: options.simulator.token,
    RUNBLOB_BASE_URL: options.simulator.url,
    HOST: "127.0.0.1",
    PORT: String(port),
    LOG_LEVEL: "warn",
    DEMO_ENABLED: "false",
    INSTANCE_ID: options.name,
    // Every benchmark client connects from 127.0.0.1, so per-address request limits would count them all as one
    // client; authentication is off so that the numbers show the push path alone. Older relays ignore both.
    AUTH_MODE: "none",
    RATE_LIMIT_PER_IP: "0",
    RATE_LIMIT_PER_USER: "0",
    // The simulator has no rate limit of its own. The default request budget (UPSTREAM_MAX_RPS=50) stands in for
    // Runblob's and would cap polling at about 225 generations per 5 s interval, below the scenarios' sizes.
    UPSTREAM_MAX_RPS: String(BENCH_UPSTREAM_MAX_RPS),
    ...(options.redis === undefined ? {} : { REDIS_URL: options.redis.url }),
    ...options.env,
  };
  const nodeArgs = context.profile ? ["--cpu-prof", `--cpu-prof-dir=${join(context.runDir, "profiles")}`, "--heapsnapshot-signal=SIGUSR2"] : [];
  const managed = track(
    context,
    startProcess({
      name: `${options.name}-${port}`,
      command: process.execPath,
      args: [...nodeArgs, "dist/main.js"],
      cwd: context.relayRoot,
      env,
      ...(options.cpus === undefined ? {} : { cpus: options.cpus }),
      logDir: context.runDir,
    }),
  );
  await waitFor(
    async () => (await httpStatus(port, "/readyz")) === 200,
    30_000,
    () => `relay ${options.name} did not become ready:\n${logTail(managed)}`,
  );
  return { process: managed, port, name: options.name };
}

const NAIVE_PROXY_FILE = fileURLToPath(new URL("../naive-proxy.ts", import.meta.url));

/** Starts the baseline proxy that forwards every status request to the simulator. */
export async function startNaiveProxy(context: RunContext, simulator: SimulatorHandle, cpus?: string): Promise<{ process: ManagedProcess; port: number }> {
  const port = await freePort();
  const managed = track(
    context,
    startProcess({
      name: `naive-proxy-${port}`,
      command: process.execPath,
      args: ["--import", "tsx", NAIVE_PROXY_FILE],
      cwd: context.repoRoot,
      env: { PROXY_PORT: String(port), UPSTREAM_URL: simulator.url, UPSTREAM_TOKEN: simulator.token },
      ...(cpus === undefined ? {} : { cpus }),
      logDir: context.runDir,
    }),
  );
  await waitFor(async () => (await httpStatus(port, "/healthz")) === 200, 20_000, () => `naive proxy did not start:\n${logTail(managed)}`);
  return { process: managed, port };
}
