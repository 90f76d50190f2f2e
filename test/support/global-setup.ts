/**
 * Vitest global setup: provides `redisUrl` to every test file. It uses REDIS_URL
 * when set, and otherwise starts one private redis-server for the whole run.
 * Tests share that server, so each test isolates its data with its own key
 * prefix or channel and never runs FLUSHALL.
 */
// Resolves the "vitest" module so the augmentation below extends it.
import type {} from "vitest";
import type { TestProject } from "vitest/node";
import { startRedisServer } from "./redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** URL of the Redis server for this run, read with inject("redisUrl"). */
    redisUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const externalUrl = process.env.REDIS_URL;
  if (externalUrl) {
    project.provide("redisUrl", externalUrl);
    return undefined;
  }

  const server = await startRedisServer();
  project.provide("redisUrl", server.url);
  return () => server.stop();
}
