/**
 * Options of `createSimulator`, with their defaults and allowed ranges.
 */
import type { FastifyBaseLogger } from "fastify";
import { z } from "zod";
import { balanceUsdSchema } from "./billing.js";
import { delayMsSchema } from "./faults.js";

/** Starting balance when none is given, in USD: enough for about 8 million 10-second generations. */
export const DEFAULT_BALANCE_USD = 1_000_000;

/** The plain-data options, validated when the simulator is created. */
export const simulatorSettingsSchema = z.strictObject({
  /** Bearer token that every request must carry. */
  token: z
    .string()
    .min(1, "token must not be empty")
    .regex(/^\S+$/, "token must not contain whitespace"),
  /** Queue position of a new generation, counting down to 1. */
  queueStart: z.number().int().min(1).default(3),
  /** Time in ms a generation stays `pending`. */
  queueMs: z.number().int().min(0).default(12_000),
  /** Time in ms a generation stays `processing`. */
  processingMs: z.number().int().min(0).default(30_000),
  /** Fraction (0 to 1) of generations that fail. Prompts containing "[fail]" always fail. */
  failureRate: z.number().min(0).max(1).default(0),
  /** Starting account balance in USD, charged the price of each generation. */
  balance: balanceUsdSchema.default(DEFAULT_BALANCE_USD),
  /** Delay in ms added to every response of the Runblob routes, changeable with `control.setLatency`. */
  latencyMs: delayMsSchema.default(0),
  /**
   * Base URL of `video_url` values, e.g. `http://127.0.0.1:4010`. When absent, the
   * address the server listens on is used once it listens.
   */
  baseUrl: z.url({ protocol: /^https?$/ }).optional(),
});
export type SimulatorSettings = z.output<typeof simulatorSettingsSchema>;

export type SimulatorOptions = z.input<typeof simulatorSettingsSchema> & {
  /** Clock in ms since the epoch, `Date.now` by default. Timers for delays and latency always use real time. */
  now?: () => number;
  /** Source of random numbers in [0, 1) for `failureRate`, `Math.random` by default. */
  random?: () => number;
  /** `true` for Fastify's default pino logger, a pino logger instance, or `false` (default) for none. */
  logger?: boolean | FastifyBaseLogger;
};

/** Validates the plain-data options and fills in defaults. Throws an Error that names each invalid option. */
export function resolveSettings(options: SimulatorOptions): SimulatorSettings {
  const { now: _now, random: _random, logger: _logger, ...settings } = options;
  const parsed = simulatorSettingsSchema.safeParse(settings);
  if (!parsed.success) throw new Error(`invalid simulator options:\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
