/**
 * Runs the Runblob simulator as its own process (`npm run simulator`),
 * configured through environment variables:
 *
 *   SIMULATOR_PORT           TCP port, default 4010 (0 picks a free port)
 *   SIMULATOR_HOST           address to listen on, default 127.0.0.1
 *   SIMULATOR_TOKEN          bearer token clients must send, default a random one printed at start
 *   SIMULATOR_QUEUE_START    queue position of a new generation, default 3
 *   SIMULATOR_QUEUE_MS       time in ms a generation stays pending, default 12000
 *   SIMULATOR_PROCESSING_MS  time in ms a generation stays processing, default 30000
 *   SIMULATOR_FAILURE_RATE   fraction of generations that fail, 0 to 1, default 0
 *
 * An empty variable counts as unset. Invalid values are all reported, one line
 * each, and the process exits with status 1.
 */
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { z } from "zod";
import { loggerOptions } from "../logging/logger.js";
import { createSimulator } from "./app.js";

/** Maximum time to wait for open requests on SIGINT or SIGTERM before exiting anyway, in ms. */
const SHUTDOWN_DEADLINE_MS = 5_000;

const integerText = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/)
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const fractionText = z
  .string()
  .trim()
  .regex(/^(\d+(\.\d*)?|\.\d+)$/)
  .transform(Number)
  .pipe(z.number().min(0).max(1));

interface EnvironmentSetting<T> {
  name: string;
  schema: z.ZodType<T, string>;
  /** Description of the valid values, shown in the error line. */
  expected: string;
}

/** Reads one variable. An invalid value adds a line to `problems` and returns undefined. */
function readSetting<T>(setting: EnvironmentSetting<T>, problems: string[]): T | undefined {
  const raw = process.env[setting.name];
  if (raw === undefined || raw === "") return undefined;

  const parsed = setting.schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  problems.push(`invalid ${setting.name}=${JSON.stringify(raw)}: expected ${setting.expected}`);
  return undefined;
}

function readConfiguration() {
  const problems: string[] = [];
  const maxMs = Number.MAX_SAFE_INTEGER;

  const configuration = {
    port: readSetting({ name: "SIMULATOR_PORT", schema: integerText(0, 65_535), expected: "an integer port from 0 to 65535" }, problems),
    host: readSetting(
      { name: "SIMULATOR_HOST", schema: z.string().trim().regex(/^\S+$/), expected: "a host name or IP address without spaces, e.g. 127.0.0.1" },
      problems,
    ),
    token: readSetting(
      { name: "SIMULATOR_TOKEN", schema: z.string().regex(/^\S+$/), expected: "a token without whitespace" },
      problems,
    ),
    queueStart: readSetting(
      { name: "SIMULATOR_QUEUE_START", schema: integerText(1, 1_000_000), expected: "an integer queue position from 1 to 1000000" },
      problems,
    ),
    queueMs: readSetting(
      { name: "SIMULATOR_QUEUE_MS", schema: integerText(0, maxMs), expected: "a whole number of milliseconds, 0 or more" },
      problems,
    ),
    processingMs: readSetting(
      { name: "SIMULATOR_PROCESSING_MS", schema: integerText(0, maxMs), expected: "a whole number of milliseconds, 0 or more" },
      problems,
    ),
    failureRate: readSetting(
      { name: "SIMULATOR_FAILURE_RATE", schema: fractionText, expected: "a decimal number from 0 to 1, e.g. 0.25" },
      problems,
    ),
  };
  return { configuration, problems };
}

async function main(): Promise<void> {
  const { configuration, problems } = readConfiguration();
  if (problems.length > 0) {
    for (const problem of problems) console.error(problem);
    process.exit(1);
  }

  let token = configuration.token;
  if (token === undefined) {
    token = randomBytes(24).toString("base64url");
    // Printed on purpose and only once: a random local token is useless unless the user can copy it.
    console.log(`SIMULATOR_TOKEN is not set; this run accepts the random token ${token}`);
  }

  const simulator = createSimulator({
    token,
    queueStart: configuration.queueStart,
    queueMs: configuration.queueMs,
    processingMs: configuration.processingMs,
    failureRate: configuration.failureRate,
    // The relay's pino settings, which redact Authorization headers and token fields.
    logger: pino(loggerOptions("info", { service: "runblob-simulator" })),
  });
  const log = simulator.app.log;

  const url = await simulator.listen(configuration.port ?? 4010, configuration.host ?? "127.0.0.1");
  const { queueStart, queueMs, processingMs, failureRate } = simulator.settings;
  log.info(
    { url, queue_start: queueStart, queue_ms: queueMs, processing_ms: processingMs, failure_rate: failureRate },
    "Runblob simulator started",
  );

  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, "second signal received during shutdown: exiting now");
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, "Runblob simulator stopping");

    const deadline = setTimeout(() => {
      log.error({ deadline_ms: SHUTDOWN_DEADLINE_MS }, "Runblob simulator did not close in time: exiting");
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    deadline.unref();

    await simulator.close();
    clearTimeout(deadline);
    log.info("Runblob simulator stopped");
  };
  process.on("SIGINT", (signal) => void stop(signal));
  process.on("SIGTERM", (signal) => void stop(signal));
}

main().catch((error: unknown) => {
  console.error("Runblob simulator failed to start:", error);
  process.exit(1);
});
