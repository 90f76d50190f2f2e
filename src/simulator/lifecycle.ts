/**
 * The life of one simulated generation: pure functions that compute the status
 * object Runblob would return for it at a given time.
 *
 * A generation waits in the queue for `queueMs` (status `pending`, queue
 * position counting down from `queueStart` to 1), is processed for
 * `processingMs` (status `processing`, `progress_pct` rising from 0), and then
 * ends as `completed` or `failed`. A status pinned through the control API
 * (an override) replaces the computed one until it is released.
 */
import { z } from "zod";

export const generationPlanSchema = z.strictObject({
  /** Queue position reported right after creation, counting down to 1. */
  queueStart: z.number().int().min(1),
  /** Time in ms spent `pending`. */
  queueMs: z.number().int().min(0),
  /** Time in ms spent `processing`. */
  processingMs: z.number().int().min(0),
  outcome: z.enum(["completed", "failed"]),
  /** `error_message` of a failed generation, or a generic message when absent. */
  errorMessage: z.string().min(1).optional(),
});
export type GenerationPlan = z.infer<typeof generationPlanSchema>;

export type FinalOutcome = GenerationPlan["outcome"];

/** Runblob's status object, with every field that Runblob's own examples carry. */
export interface SimulatedStatus {
  generation_id: string;
  /** `pending`, `processing`, `completed` or `failed`, or any other value forced through the control API. */
  status: string;
  prompt: string;
  video_url: string | null;
  created_at: string;
  completed_at: string | null;
  progress_pct: number | null;
  progress_pos_in_queue: number | null;
  error_message: string | null;
  /** Extra fields forced through the control API, sent as given. */
  [extra: string]: unknown;
}

/** One entry of the list endpoint: the status object without progress and error fields. */
export interface SimulatedListItem {
  generation_id: string;
  status: string;
  prompt: string;
  video_url: string | null;
  created_at: string;
  completed_at: string | null;
}

/** Fields that replace the computed ones; `status` may be any string and unknown fields are sent as given. */
export type StatusOverrideFields = Partial<SimulatedStatus> & Record<string, unknown>;

export interface GenerationRecord {
  generation_id: string;
  prompt: string;
  created_at: Date;
  plan: GenerationPlan;
  /** Status pinned through the control API, returned as is instead of the computed one. */
  override?: SimulatedStatus;
  /** Where the final status is posted, from the generate request. */
  callback_url?: string;
}

/** The stage of a generation's life at one moment, with its progress value. */
export type Phase =
  | { status: "pending"; position: number }
  | { status: "processing"; percent: number }
  | { status: "completed"; at: Date }
  | { status: "failed"; at: Date; errorMessage: string };

export const DEFAULT_ERROR_MESSAGE = "Video generation failed in the Runblob simulator.";

/** Builds the download URL of a completed generation's video. */
export type VideoUrlBuilder = (generationId: string) => string;

/**
 * Formats a time the way Runblob does: ISO 8601 in UTC without an offset and
 * with 6 fractional digits, e.g. `2025-11-24T10:00:00.000000`.
 */
export function formatRunblobTimestamp(time: Date): string {
  // toISOString() gives milliseconds and a trailing "Z", but Runblob sends microseconds and no offset.
  return time.toISOString().replace(/Z$/, "000");
}

/** Computes the phase of a generation at `now` (ms since the epoch), ignoring any override. */
export function computePhase(record: GenerationRecord, now: number): Phase {
  const { queueStart, queueMs, processingMs } = record.plan;
  // A clock that runs backwards (an injected `now`) keeps the generation at the start of its life.
  const elapsed = Math.max(0, now - record.created_at.getTime());

  if (elapsed < queueMs) {
    const stepsDone = Math.floor((elapsed * queueStart) / queueMs);
    return { status: "pending", position: Math.max(1, queueStart - stepsDone) };
  }

  const processingElapsed = elapsed - queueMs;
  if (processingElapsed < processingMs) {
    const percent = Math.floor((processingElapsed * 100) / processingMs);
    return { status: "processing", percent: Math.min(99, percent) };
  }

  const at = new Date(record.created_at.getTime() + queueMs + processingMs);
  if (record.plan.outcome === "completed") return { status: "completed", at };
  return { status: "failed", at, errorMessage: record.plan.errorMessage ?? DEFAULT_ERROR_MESSAGE };
}

/** Builds the status object for a phase, with the fields set and nulled as in Runblob's examples. */
export function statusFromPhase(record: GenerationRecord, phase: Phase, buildVideoUrl: VideoUrlBuilder): SimulatedStatus {
  const status: SimulatedStatus = {
    generation_id: record.generation_id,
    status: phase.status,
    prompt: record.prompt,
    video_url: null,
    created_at: formatRunblobTimestamp(record.created_at),
    completed_at: null,
    progress_pct: null,
    progress_pos_in_queue: null,
    error_message: null,
  };

  switch (phase.status) {
    case "pending":
      status.progress_pos_in_queue = phase.position;
      break;
    case "processing":
      status.progress_pct = phase.percent;
      break;
    case "completed":
      status.video_url = buildVideoUrl(record.generation_id);
      status.completed_at = formatRunblobTimestamp(phase.at);
      status.progress_pct = 100;
      break;
    case "failed":
      status.completed_at = formatRunblobTimestamp(phase.at);
      status.error_message = phase.errorMessage;
      break;
  }
  return status;
}

/** Returns the first phase of a known status value, with `at` as the time a final status was reached. */
function firstPhaseOf(record: GenerationRecord, status: string, at: Date): Phase | null {
  switch (status) {
    case "pending":
      return { status: "pending", position: 1 };
    case "processing":
      return { status: "processing", percent: 0 };
    case "completed":
      return { status: "completed", at };
    case "failed":
      return { status: "failed", at, errorMessage: record.plan.errorMessage ?? DEFAULT_ERROR_MESSAGE };
    default:
      return null;
  }
}

/**
 * Computes the status object to pin when `fields` are forced onto a generation
 * whose status is `current` at time `at`.
 *
 * Without a `status` field, or with the current one, the current object is kept
 * and `fields` replace its values, so forcing `processing` at 45 % stays at 45 %.
 * Another known status starts from that status's first state (queue position 1,
 * 0 %, or final at `at`, with a video URL or error message). An unknown status
 * value nulls every optional field. Fields not in Runblob's status object are
 * added as given.
 */
export function forceStatus(
  record: GenerationRecord,
  current: SimulatedStatus,
  fields: StatusOverrideFields,
  at: Date,
  buildVideoUrl: VideoUrlBuilder,
): SimulatedStatus {
  let base: SimulatedStatus = current;

  if (fields.status !== undefined && fields.status !== current.status) {
    const phase = firstPhaseOf(record, fields.status, at);
    if (phase !== null) {
      base = statusFromPhase(record, phase, buildVideoUrl);
    } else {
      base = {
        ...current,
        video_url: null,
        completed_at: null,
        progress_pct: null,
        progress_pos_in_queue: null,
        error_message: null,
      };
    }
  }

  return { ...base, ...fields, generation_id: record.generation_id };
}

/** Computes the status object that the status endpoint returns at `now`: the pinned one when set, else the plan's. */
export function currentStatus(record: GenerationRecord, now: number, buildVideoUrl: VideoUrlBuilder): SimulatedStatus {
  if (record.override !== undefined) return record.override;
  return statusFromPhase(record, computePhase(record, now), buildVideoUrl);
}

/** Shortens a status object to a list item (Runblob's list carries no progress or error fields). */
export function toListItem(status: SimulatedStatus): SimulatedListItem {
  return {
    generation_id: status.generation_id,
    status: status.status,
    prompt: status.prompt,
    video_url: status.video_url,
    created_at: status.created_at,
    completed_at: status.completed_at,
  };
}
