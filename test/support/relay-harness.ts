/**
 * Starts a real relay on a free port, in this process, against a real
 * simulator over HTTP. Log lines are captured so tests can read them.
 */
import { Writable } from "node:stream";
import { randomBytes } from "node:crypto";
import { loadConfig } from "../../src/config/env.js";
import { createLogger } from "../../src/logging/logger.js";
import { createRelay } from "../../src/relay.js";
import type { Relay } from "../../src/relay.js";
import { createSimulator } from "../../src/simulator/app.js";

export type Simulator = ReturnType<typeof createSimulator>;

export interface SimulatorHandle {
  simulator: Simulator;
  url: string;
  token: string;
  close(): Promise<void>;
}

export async function startSimulator(options: Partial<Parameters<typeof createSimulator>[0]> = {}): Promise<SimulatorHandle> {
  const token = `sim-${randomBytes(16).toString("hex")}`;
  const simulator = createSimulator({ token, queueStart: 2, queueMs: 400, processingMs: 600, failureRate: 0, ...options });
  const url = await simulator.listen(0, "127.0.0.1");
  return { simulator, url, token, close: () => simulator.close() };
}

export interface RelayHandle {
  relay: Relay;
  baseUrl: string;
  wsUrl: string;
  logs: string[];
  close(): Promise<void>;
}

/** Starts a relay with the given environment on top of test defaults (fast polls, no demo). */
export async function startRelay(sim: SimulatorHandle, env: Record<string, string> = {}): Promise<RelayHandle> {
  const config = loadConfig({
    NODE_ENV: "test",
    RUNBLOB_TOKEN: sim.token,
    RUNBLOB_BASE_URL: sim.url,
    HOST: "127.0.0.1",
    PORT: "0",
    POLL_INTERVAL_MS: "100",
    LOG_LEVEL: "debug",
    DEMO_ENABLED: "false",
    // Retries, the request budget and the breaker each change what a single fault does; their own
    // tests switch them on, the others see every upstream answer as it came.
    UPSTREAM_RETRY_ATTEMPTS: "1",
    UPSTREAM_MAX_RPS: "100000",
    UPSTREAM_CONNECTIONS: "1024",
    UPSTREAM_MAX_CONCURRENT: "1024",
    BREAKER_FAILURE_THRESHOLD: "10000",
    NOT_FOUND_CACHE_MS: "0",
    ...env,
  });
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(String(chunk));
      callback();
    },
  });
  const logger = createLogger({ level: config.LOG_LEVEL, nodeEnv: "test", destination });
  const relay = await createRelay(config, logger);
  const baseUrl = await relay.listen();
  return {
    relay,
    baseUrl,
    wsUrl: `${baseUrl.replace(/^http/, "ws")}/v1/sora/ws`,
    logs,
    close: () => relay.close(),
  };
}
