/** Environment variables of the per-user and per-address limits; merged into the relay's schema in src/config/env.ts. */
import { z } from "zod";
import { integerValue } from "../config/env-values.js";

export const limitsEnvShape = {
  RATE_LIMIT_WINDOW_SECONDS: integerValue("RATE_LIMIT_WINDOW_SECONDS", 1, 86_400).default(60),
  RATE_LIMIT_PER_IP: integerValue("RATE_LIMIT_PER_IP", 0, 10_000_000).default(1200),
  RATE_LIMIT_PER_USER: integerValue("RATE_LIMIT_PER_USER", 0, 10_000_000).default(600),
  GENERATIONS_PER_HOUR: integerValue("GENERATIONS_PER_HOUR", 1, 1_000_000).default(30),
  MAX_ACTIVE_GENERATIONS: integerValue("MAX_ACTIVE_GENERATIONS", 1, 100_000).default(5),
  DAILY_SPEND_LIMIT_USD: z
    .string()
    .regex(/^\d{1,9}(\.\d{1,4})?$/, "DAILY_SPEND_LIMIT_USD must be an amount in USD with at most 4 decimals, such as 10 or 2.50")
    .default("10"),
  MAX_CONNECTIONS_PER_USER: integerValue("MAX_CONNECTIONS_PER_USER", 1, 100_000).default(20),
};
