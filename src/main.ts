/** Entry point: reads the configuration, starts the relay and stops it on SIGTERM or SIGINT. */
import { ConfigError, loadConfig, redactedConfig } from "./config/env.js";
import { createLogger } from "./logging/logger.js";
import { createRelay } from "./relay.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`runblob-relay: ${error.message}\n`);
    process.exit(1);
  }

  const logger = createLogger({ level: config.LOG_LEVEL, nodeEnv: config.NODE_ENV });
  logger.info({ config: redactedConfig(config) }, "starting runblob-relay");

  const relay = await createRelay(config, logger);
  const address = await relay.listen();
  logger.info({ address }, `runblob-relay listening on ${address}`);
  if (config.DEMO_ENABLED) logger.info(`demo page: ${address}/`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    const deadline = setTimeout(() => {
      logger.error({ timeout_ms: config.SHUTDOWN_TIMEOUT_MS }, "shutdown took too long; exiting");
      process.exit(1);
    }, config.SHUTDOWN_TIMEOUT_MS);
    deadline.unref();
    relay.close().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((error: unknown) => {
  process.stderr.write(`runblob-relay failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
