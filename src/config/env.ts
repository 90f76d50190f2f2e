/**
 * Configuration from environment variables, validated once at start-up.
 *
 * Every variable has a default that runs the relay locally (simulator,
 * in-memory store). An invalid value stops start-up with one line per problem.
 */
import { z } from "zod";
import { AUTH_SECRET_VARIABLES, authEnvShape, checkAuthEnv } from "../auth/auth-env.js";
import { limitsEnvShape } from "../limits/limits-env.js";

const integer = (name: string, min: number, max: number) =>
  z.coerce
    .number({ error: `${name} must be an integer from ${min} to ${max}` })
    .int(`${name} must be an integer from ${min} to ${max}`)
    .min(min, `${name} must be an integer from ${min} to ${max}`)
    .max(max, `${name} must be an integer from ${min} to ${max}`);

const boolean = (name: string) =>
  z.enum(["true", "false", "1", "0"], { error: `${name} must be true or false` }).transform((v) => v === "true" || v === "1");

const origin = (name: string) =>
  z.string().superRefine((value, ctx) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      ctx.addIssue({ code: "custom", message: `${name} must be an absolute http(s) URL such as https://platform.runblob.io` });
      return;
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      ctx.addIssue({ code: "custom", message: `${name} must use http or https` });
    }
  });

const emptyAsUndefined = (value: unknown) => (value === "" ? undefined : value);

export const envSchema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  RUNBLOB_TOKEN: z.preprocess(emptyAsUndefined, z.string().min(8, "RUNBLOB_TOKEN looks truncated: expected the full API token").optional()),
  RUNBLOB_BASE_URL: origin("RUNBLOB_BASE_URL").default("https://platform.runblob.io"),
  REDIS_URL: z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .regex(/^rediss?:\/\/.+/, "REDIS_URL must start with redis:// or rediss://")
      .optional(),
  ),
  REDIS_SENTINELS: z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .regex(/^[^\s,:]+:\d{1,5}(,[^\s,:]+:\d{1,5})*$/, "REDIS_SENTINELS must be a comma list of host:port")
      .optional(),
  ),
  REDIS_SENTINEL_NAME: z.string().min(1).default("mymaster"),
  REDIS_CLUSTER_NODES: z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .regex(/^[^\s,:]+:\d{1,5}(,[^\s,:]+:\d{1,5})*$/, "REDIS_CLUSTER_NODES must be a comma list of host:port")
      .optional(),
  ),
  REDIS_PASSWORD: z.preprocess(emptyAsUndefined, z.string().optional()),
  INSTANCE_ID: z.preprocess(
    emptyAsUndefined,
    z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, "INSTANCE_ID may use letters, digits, . _ : - (1-64 characters)").optional(),
  ),
  REDIS_KEY_PREFIX: z.string().regex(/^[A-Za-z0-9:_-]{1,64}$/, "REDIS_KEY_PREFIX may use letters, digits, : _ - (1-64 characters)").default("relay:"),
  HOST: z.string().min(1).default("127.0.0.1"),
  PORT: integer("PORT", 0, 65535).default(3000),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),

  POLL_INTERVAL_MS: integer("POLL_INTERVAL_MS", 100, 3_600_000).default(5000),
  POLL_MAX_ATTEMPTS: integer("POLL_MAX_ATTEMPTS", 1, 100_000).default(180),
  POLL_CONCURRENCY: integer("POLL_CONCURRENCY", 1, 10_000).default(64),
  WATCH_GRACE_MS: integer("WATCH_GRACE_MS", 0, 86_400_000).default(60_000),
  STATUS_TTL_SECONDS: integer("STATUS_TTL_SECONDS", 1, 30 * 86_400).default(86_400),

  UPSTREAM_TIMEOUT_MS: integer("UPSTREAM_TIMEOUT_MS", 100, 600_000).default(10_000),
  UPSTREAM_CONNECTIONS: integer("UPSTREAM_CONNECTIONS", 1, 1024).default(32),
  UPSTREAM_RETRY_ATTEMPTS: integer("UPSTREAM_RETRY_ATTEMPTS", 1, 10).default(3),
  UPSTREAM_RETRY_BASE_MS: integer("UPSTREAM_RETRY_BASE_MS", 1, 60_000).default(200),
  UPSTREAM_RETRY_MAX_DELAY_MS: integer("UPSTREAM_RETRY_MAX_DELAY_MS", 1, 600_000).default(5000),
  UPSTREAM_MAX_RPS: integer("UPSTREAM_MAX_RPS", 1, 100_000).default(50),
  UPSTREAM_MAX_CONCURRENT: integer("UPSTREAM_MAX_CONCURRENT", 1, 10_000).default(32),
  UPSTREAM_CLIENT_RESERVE: integer("UPSTREAM_CLIENT_RESERVE", 0, 10_000).default(5),
  UPSTREAM_BUDGET_WAIT_MS: integer("UPSTREAM_BUDGET_WAIT_MS", 0, 60_000).default(2000),
  BREAKER_FAILURE_THRESHOLD: integer("BREAKER_FAILURE_THRESHOLD", 1, 10_000).default(5),
  BREAKER_COOLDOWN_MS: integer("BREAKER_COOLDOWN_MS", 100, 3_600_000).default(15_000),
  NOT_FOUND_CACHE_MS: integer("NOT_FOUND_CACHE_MS", 0, 3_600_000).default(30_000),
  PUBLIC_BASE_URL: z.preprocess(emptyAsUndefined, origin("PUBLIC_BASE_URL").optional()),
  WEBHOOK_TOKEN_TTL_SECONDS: integer("WEBHOOK_TOKEN_TTL_SECONDS", 60, 30 * 86_400).default(86_400),

  WS_MAX_PAYLOAD_BYTES: integer("WS_MAX_PAYLOAD_BYTES", 256, 1_048_576).default(4096),
  WS_MAX_SUBSCRIPTIONS: integer("WS_MAX_SUBSCRIPTIONS", 1, 100_000).default(100),
  WS_MAX_MESSAGES_PER_SECOND: integer("WS_MAX_MESSAGES_PER_SECOND", 1, 100_000).default(50),
  WS_PING_INTERVAL_MS: integer("WS_PING_INTERVAL_MS", 1000, 3_600_000).default(30_000),
  SSE_KEEPALIVE_MS: integer("SSE_KEEPALIVE_MS", 1000, 15_000).default(15_000),
  MAX_BUFFERED_BYTES: integer("MAX_BUFFERED_BYTES", 16_384, 1_073_741_824).default(1_048_576),
  PUSH_CONFLATE_BYTES: z.preprocess(emptyAsUndefined, integer("PUSH_CONFLATE_BYTES", 1024, 1_073_741_824).optional()),
  MAX_CONNECTIONS: z.preprocess(emptyAsUndefined, integer("MAX_CONNECTIONS", 0, 10_000_000).optional()),
  METRICS_PORT: z.preprocess(emptyAsUndefined, integer("METRICS_PORT", 0, 65535).optional()),
  SHUTDOWN_TIMEOUT_MS: integer("SHUTDOWN_TIMEOUT_MS", 0, 600_000).default(10_000),

  DEMO_ENABLED: boolean("DEMO_ENABLED").default(true),
  SIMULATOR_QUEUE_START: integer("SIMULATOR_QUEUE_START", 1, 1000).default(3),
  SIMULATOR_QUEUE_MS: integer("SIMULATOR_QUEUE_MS", 0, 3_600_000).default(12_000),
  SIMULATOR_PROCESSING_MS: integer("SIMULATOR_PROCESSING_MS", 0, 3_600_000).default(30_000),
  SIMULATOR_FAILURE_RATE: z.coerce
    .number({ error: "SIMULATOR_FAILURE_RATE must be a number from 0 to 1" })
    .min(0, "SIMULATOR_FAILURE_RATE must be a number from 0 to 1")
    .max(1, "SIMULATOR_FAILURE_RATE must be a number from 0 to 1")
    .default(0.1),

  ...authEnvShape,
  ...limitsEnvShape,
});

export type Env = z.infer<typeof envSchema>;

/** PUSH_CONFLATE_BYTES when unset, or half of MAX_BUFFERED_BYTES when that is smaller. */
const DEFAULT_CONFLATE_BYTES = 65_536;

export interface Config extends Env {
  /** Resolved from MAX_BUFFERED_BYTES when unset. */
  PUSH_CONFLATE_BYTES: number;
  /** True when no token is configured and the relay runs its built-in simulator. */
  useSimulator: boolean;
  /** True when any Redis deployment (single node, Sentinel or Cluster) is configured. */
  useRedis: boolean;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((line) => `  ${line}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

const SECRET_VARIABLES = new Set<string>(["RUNBLOB_TOKEN", "REDIS_URL", "REDIS_PASSWORD", ...AUTH_SECRET_VARIABLES]);

function describeValue(name: string, value: unknown): string {
  if (value === undefined) return "unset";
  if (SECRET_VARIABLES.has(name)) return "(value hidden)";
  return JSON.stringify(value);
}

/**
 * Parses the environment into a Config, or throws ConfigError with one line
 * per problem: the variable, its value (hidden for secrets) and what is allowed.
 */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  const picked: Record<string, string | undefined> = {};
  for (const key of Object.keys(envSchema.shape)) picked[key] = source[key];

  const parsed = envSchema.safeParse(picked);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? "environment");
      return `${name}=${describeValue(name, picked[name])}: ${issue.message}`;
    });
    throw new ConfigError(problems);
  }

  const env = parsed.data;
  const authProblems = checkAuthEnv(env);
  if (authProblems.length > 0) throw new ConfigError(authProblems);
  if (env.NODE_ENV === "production" && env.RUNBLOB_TOKEN === undefined) {
    throw new ConfigError([
      "RUNBLOB_TOKEN=unset: required when NODE_ENV=production (the built-in simulator is for development only)",
    ]);
  }
  if (env.UPSTREAM_MAX_CONCURRENT > env.UPSTREAM_CONNECTIONS) {
    throw new ConfigError([
      `UPSTREAM_MAX_CONCURRENT=${env.UPSTREAM_MAX_CONCURRENT}: must be at most UPSTREAM_CONNECTIONS (${env.UPSTREAM_CONNECTIONS}), so a request the budget lets go never waits for a connection`,
    ]);
  }
  if (env.UPSTREAM_CLIENT_RESERVE >= Math.min(env.UPSTREAM_MAX_RPS, env.UPSTREAM_MAX_CONCURRENT)) {
    throw new ConfigError([
      `UPSTREAM_CLIENT_RESERVE=${env.UPSTREAM_CLIENT_RESERVE}: must be below UPSTREAM_MAX_RPS (${env.UPSTREAM_MAX_RPS}) and UPSTREAM_MAX_CONCURRENT (${env.UPSTREAM_MAX_CONCURRENT}), or polls could never run`,
    ]);
  }
  const redisChoices = [env.REDIS_URL, env.REDIS_SENTINELS, env.REDIS_CLUSTER_NODES].filter((value) => value !== undefined);
  if (redisChoices.length > 1) {
    throw new ConfigError([
      "REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER_NODES: set only one of them (single node, Sentinel or Cluster)",
    ]);
  }
  const conflateBytes = env.PUSH_CONFLATE_BYTES ?? Math.min(DEFAULT_CONFLATE_BYTES, Math.floor(env.MAX_BUFFERED_BYTES / 2));
  if (conflateBytes >= env.MAX_BUFFERED_BYTES) {
    throw new ConfigError([
      `PUSH_CONFLATE_BYTES=${conflateBytes}: must be below MAX_BUFFERED_BYTES (${env.MAX_BUFFERED_BYTES}), or slow clients are dropped before their statuses are conflated`,
    ]);
  }
  if (env.METRICS_PORT !== undefined && env.METRICS_PORT !== 0 && env.METRICS_PORT === env.PORT) {
    throw new ConfigError([`METRICS_PORT=${env.METRICS_PORT}: must differ from PORT; leave it unset to serve /metrics on PORT`]);
  }
  return {
    ...env,
    PUSH_CONFLATE_BYTES: conflateBytes,
    useSimulator: env.RUNBLOB_TOKEN === undefined,
    useRedis: redisChoices.length === 1,
  };
}

/** The configuration with secrets replaced, for the start-up log line. */
export function redactedConfig(config: Config): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...config };
  for (const name of SECRET_VARIABLES) {
    if (copy[name] !== undefined) copy[name] = "[redacted]";
  }
  return copy;
}
