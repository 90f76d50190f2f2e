/**
 * The simulated account's generations, kept in memory for the simulator's lifetime.
 *
 * NOTE: records are never evicted, so a standalone simulator that runs for days
 * under a benchmark grows without bound. Restart it between long runs.
 */
import { randomUUID } from "node:crypto";
import { generationPlanSchema, type GenerationPlan, type GenerationRecord } from "./lifecycle.js";
import type { SimulatorSettings } from "./options.js";

/** A prompt containing this marker always fails, so tests get a failure without randomness. */
export const FAIL_MARKER = "[fail]";

export const FAIL_MARKER_ERROR_MESSAGE = `Generation failed because the prompt contains the simulator's failure marker ${FAIL_MARKER}.`;
export const RANDOM_FAILURE_ERROR_MESSAGE = "Generation failed at random (simulator failureRate).";

/** Decides the plan of a generation made through the generate endpoint. */
export function planGeneration(prompt: string, settings: SimulatorSettings, random: () => number): GenerationPlan {
  const timing = { queueStart: settings.queueStart, queueMs: settings.queueMs, processingMs: settings.processingMs };

  if (prompt.includes(FAIL_MARKER)) {
    return { ...timing, outcome: "failed", errorMessage: FAIL_MARKER_ERROR_MESSAGE };
  }
  if (random() < settings.failureRate) {
    return { ...timing, outcome: "failed", errorMessage: RANDOM_FAILURE_ERROR_MESSAGE };
  }
  return { ...timing, outcome: "completed" };
}

/**
 * Completes a partial plan with the configured timings and outcome `completed`,
 * and validates it. Throws a ZodError on an invalid field.
 */
export function completePlan(partial: Partial<GenerationPlan>, settings: SimulatorSettings): GenerationPlan {
  return generationPlanSchema.parse({
    queueStart: settings.queueStart,
    queueMs: settings.queueMs,
    processingMs: settings.processingMs,
    outcome: "completed",
    ...partial,
  });
}

export class GenerationRegistry {
  // Map iteration follows insertion order, which breaks ties between equal created_at values.
  private readonly records = new Map<string, GenerationRecord>();

  /** Creates and stores a generation with a new UUID v4. */
  create(prompt: string, plan: GenerationPlan, createdAt: Date): GenerationRecord {
    const record: GenerationRecord = { generation_id: randomUUID(), prompt, created_at: createdAt, plan };
    this.records.set(record.generation_id, record);
    return record;
  }

  get(generationId: string): GenerationRecord | undefined {
    return this.records.get(generationId);
  }

  /** Returns up to `limit` generations after skipping `offset`, newest `created_at` first. */
  page(offset: number, limit: number): GenerationRecord[] {
    // The reversed insertion order plus a stable sort puts the later-created of two equal timestamps first.
    const newestFirst = [...this.records.values()].reverse();
    newestFirst.sort((a, b) => b.created_at.getTime() - a.created_at.getTime());
    return newestFirst.slice(offset, offset + limit);
  }

  get size(): number {
    return this.records.size;
  }
}
