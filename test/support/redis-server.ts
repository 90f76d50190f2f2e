/**
 * Starts a private redis-server for tests: bound to 127.0.0.1 on a free port,
 * with persistence off, so it writes no files and keeps no data after stop.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export interface RedisServer {
  url: string;
  port: number;
  /** Sends SIGTERM and waits for the process to exit, sending SIGKILL after 5 s. */
  stop(): Promise<void>;
  /** Sends SIGKILL without waiting, for exit handlers. */
  kill(): void;
  /** Resolves once the process has exited, however it was stopped. */
  exited: Promise<void>;
}

const NOT_FOUND_MESSAGE =
  "redis-server not found on PATH: install it with 'apt-get install redis-server' (Debian/Ubuntu) " +
  "or 'brew install redis' (macOS), or set REDIS_URL to a running server";

const HOST = "127.0.0.1";
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
/** Another process can take the free port before redis-server binds it, so startup retries on a new port. */
const START_ATTEMPTS = 3;

export interface RedisServerOptions {
  /**
   * Port to bind, for a restart on the port that clients already use. Without it, a free port is
   * picked. A fixed port is tried once, so startup fails when another process uses it.
   */
  port?: number;
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  if (options.port !== undefined) {
    return startOnce(options.port);
  }
  let lastError: unknown;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    try {
      return await startOnce(await findFreePort());
    } catch (error) {
      if (error instanceof Error && error.message === NOT_FOUND_MESSAGE) {
        throw error;
      }
      lastError = error;
    }
  }
  throw new Error(`redis-server failed to start after ${START_ATTEMPTS} attempts`, { cause: lastError });
}

async function startOnce(port: number): Promise<RedisServer> {
  const child = spawn(
    "redis-server",
    ["--bind", HOST, "--port", String(port), "--save", "", "--appendonly", "no", "--loglevel", "warning"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));

  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
    }
  };
  // Kills the server if the test process exits without calling stop().
  // NOTE: "exit" does not fire when a signal ends the test process, so a killed run can leave the server running.
  process.once("exit", kill);

  try {
    await waitForPong(child, port);
  } catch (error) {
    kill();
    process.off("exit", kill);
    if (isNotFound(error)) {
      throw new Error(NOT_FOUND_MESSAGE);
    }
    throw new Error(`redis-server on port ${port} did not start: ${String(error)}\n${output}`, { cause: error });
  }

  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  return {
    url: `redis://${HOST}:${port}`,
    port,
    kill,
    exited,
    stop: async () => {
      process.off("exit", kill);
      await stopProcess(child);
    },
  };
}

/** Resolves once PING returns PONG. Rejects if the process fails to spawn, exits, or the timeout passes. */
async function waitForPong(child: ChildProcess, port: number): Promise<void> {
  let failure: unknown = null;
  child.once("error", (error) => (failure = error));
  child.once("exit", (code, signal) => (failure ??= new Error(`exited with code ${code} and signal ${signal}`)));

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (failure !== null) {
      throw failure;
    }
    if (await pingOnce(port)) {
      return;
    }
    await sleep(50);
  }
  throw new Error(`PING timed out after ${START_TIMEOUT_MS} ms`);
}

function pingOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    let reply = "";
    socket.setTimeout(1_000, () => socket.destroy());
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (reply.includes("\r\n")) {
        socket.end();
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => resolve(reply.startsWith("+PONG")));
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Returns a port that was free on 127.0.0.1 a moment ago. Another process can take it before the caller binds it. */
export async function findFreePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, HOST);
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") {
    throw new Error(`unexpected server address ${String(address)} while looking for a free port`);
  }
  return address.port;
}

function isNotFound(error: unknown): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === "ENOENT";
}
