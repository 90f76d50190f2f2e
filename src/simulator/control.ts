/**
 * The in-process control API of the simulator, for tests and benchmarks: make
 * generations directly, pin their status, inject faults and set latency.
 * The `/__simulator/` HTTP routes call the same functions.
 */
import { z } from "zod";
import { balanceUsdSchema } from "./billing.js";
import { delayMsSchema, faultSchema, type Fault } from "./faults.js";
import { completePlan } from "./generations.js";
import {
  forceStatus,
  type FinalOutcome,
  type GenerationPlan,
  type GenerationRecord,
  type SimulatedStatus,
  type StatusOverrideFields,
} from "./lifecycle.js";
import { statusNow, videoUrlBuilder, type SimulatorState } from "./state.js";
import type { RouteKey } from "./stats.js";

/** Prompt of generations created through `control.create` without one. */
export const DEFAULT_CONTROL_PROMPT = "A simulated generation created through the control API";

export class GenerationNotFoundError extends Error {
  constructor(readonly generationId: string) {
    super(`generation ${JSON.stringify(generationId)} not found in the simulator: use an id returned by generate or control.create`);
    this.name = "GenerationNotFoundError";
  }
}

export interface SimulatorControl {
  /**
   * Creates a generation directly, as if another client of the account had
   * made it: nothing is charged and no request is counted. Plan fields that
   * are left out take the configured timings and outcome `completed`.
   * Returns the new generation_id. Throws a ZodError on an invalid plan field.
   */
  create(plan?: Partial<GenerationPlan>, prompt?: string): string;
  /** Returns a generation's current status object without counting a request. */
  status(generationId: string): SimulatedStatus;
  /**
   * Pins a generation's status until `release`: `fields` replace the current
   * values and may carry any `status` value and fields that Runblob does not
   * send. Forcing another known status starts from that status's first state.
   * Returns the pinned status object.
   */
  force(generationId: string, fields: StatusOverrideFields): SimulatedStatus;
  /** Removes a pinned status, so the generation follows its plan again. */
  release(generationId: string): void;
  /** Pins a final status now, with `errorMessage` as `error_message` of a failure. Returns the pinned status object. */
  finish(generationId: string, outcome: FinalOutcome, errorMessage?: string): SimulatedStatus;
  /** Queues faults for a route, and each matching request uses up the next one. Throws a ZodError on an invalid fault. */
  injectFaults(route: RouteKey, faults: readonly Fault[]): void;
  /** Drops the queued faults of one route, or of every route. */
  clearFaults(route?: RouteKey): void;
  /** Returns the number of faults still queued per route. */
  pendingFaults(): Record<RouteKey, number>;
  /** Sets the delay in ms added to every response of the Runblob routes from now on. 0 turns it off. */
  setLatency(ms: number): void;
  /** Sets the account balance in USD. */
  setBalance(usd: number): void;
}


export function createControl(state: SimulatorState): SimulatorControl {
  const buildVideoUrl = videoUrlBuilder(state);

  function lookup(generationId: string): GenerationRecord {
    const record = state.generations.get(generationId);
    if (record === undefined) throw new GenerationNotFoundError(generationId);
    return record;
  }

  function force(generationId: string, fields: StatusOverrideFields): SimulatedStatus {
    const record = lookup(generationId);
    const pinned = forceStatus(record, statusNow(state, record), fields, new Date(state.now()), buildVideoUrl);
    record.override = pinned;
    return pinned;
  }

  return {
    create(plan = {}, prompt = DEFAULT_CONTROL_PROMPT) {
      const record = state.generations.create(prompt, completePlan(plan, state.settings), new Date(state.now()));
      return record.generation_id;
    },

    status(generationId) {
      return statusNow(state, lookup(generationId));
    },

    force,

    release(generationId) {
      delete lookup(generationId).override;
    },

    finish(generationId, outcome, errorMessage) {
      const fields: StatusOverrideFields = { status: outcome };
      if (outcome === "failed" && errorMessage !== undefined) fields.error_message = errorMessage;
      const status = force(generationId, fields);
      const callbackUrl = state.generations.get(generationId)?.callback_url;
      if (callbackUrl !== undefined) state.webhooks.deliver(callbackUrl, status);
      return status;
    },

    injectFaults(route, faults) {
      state.faults.add(route, z.array(faultSchema).parse(faults));
    },

    clearFaults(route) {
      state.faults.clear(route);
    },

    pendingFaults() {
      return state.faults.pending();
    },

    setLatency(ms) {
      state.latencyMs = delayMsSchema.parse(ms);
    },

    setBalance(usd) {
      state.balance.set(balanceUsdSchema.parse(usd));
    },
  };
}
