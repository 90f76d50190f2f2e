/**
 * The mutable state of one simulator instance, shared by its routes, its
 * control API and its stats.
 */
import { Balance } from "./billing.js";
import { FaultQueues } from "./faults.js";
import { GenerationRegistry } from "./generations.js";
import { currentStatus, type GenerationRecord, type SimulatedStatus, type VideoUrlBuilder } from "./lifecycle.js";
import { resolveSettings, type SimulatorOptions, type SimulatorSettings } from "./options.js";
import { SimulatorStats } from "./stats.js";
import { videoPath } from "./video.js";
import { WebhookSender } from "./webhooks.js";

/**
 * Base of `video_url` until the simulator has its own address, in the form of
 * Runblob's CDN URLs.
 * NOTE: nothing is served there for simulated ids. The fallback is only used
 * when the app runs through `inject()` without listening and without `baseUrl`.
 */
export const FALLBACK_VIDEO_BASE_URL = "https://cdn.runblob.io";

export interface SimulatorState {
  readonly settings: SimulatorSettings;
  readonly now: () => number;
  readonly random: () => number;
  readonly generations: GenerationRegistry;
  readonly balance: Balance;
  readonly stats: SimulatorStats;
  readonly faults: FaultQueues;
  /** Delay in ms added to every response of the Runblob routes. */
  latencyMs: number;
  /** Base URL of the simulator's own videos, known once it listens or when given as an option. */
  baseUrl: string | undefined;
  /** Aborted when the simulator closes, so that pending delays end at once. */
  readonly closing: AbortController;
  readonly webhooks: WebhookSender;
}

/** Validates the options and creates the initial state. Throws an Error that names each invalid option. */
export function createState(options: SimulatorOptions): SimulatorState {
  const settings = resolveSettings(options);
  return {
    settings,
    now: options.now ?? Date.now,
    random: options.random ?? Math.random,
    generations: new GenerationRegistry(),
    balance: new Balance(settings.balance),
    stats: new SimulatorStats(),
    faults: new FaultQueues(),
    latencyMs: settings.latencyMs,
    baseUrl: settings.baseUrl?.replace(/\/+$/, ""),
    closing: new AbortController(),
    webhooks: new WebhookSender(),
  };
}

/** Creates the builder of `video_url` values, which reads the base URL at call time. */
export function videoUrlBuilder(state: SimulatorState): VideoUrlBuilder {
  return (generationId) => `${state.baseUrl ?? FALLBACK_VIDEO_BASE_URL}${videoPath(generationId)}`;
}

/** Computes a generation's status object at the simulator's current time. */
export function statusNow(state: SimulatorState, record: GenerationRecord): SimulatedStatus {
  return currentStatus(record, state.now(), videoUrlBuilder(state));
}
