/**
 * Runblob's wire types, as documented in its API reference (Sora section).
 *
 * Response schemas are loose objects: fields Runblob adds later are kept and
 * passed through to clients instead of failing validation. Request schemas are
 * strict, because invalid input must never reach Runblob.
 */
import { z } from "zod";

/** Runblob sends ISO 8601 without an offset and with microseconds; an offset or fewer digits are accepted too. */
export const upstreamTimestamp = z
  .string()
  .regex(
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$/,
    "expected an ISO 8601 timestamp such as 2025-11-24T10:00:00.000000",
  );

/** Statuses after which a generation never changes again. */
export const FINAL_STATUSES: ReadonlySet<string> = new Set(["completed", "failed"]);

export const KNOWN_STATUSES = ["pending", "processing", "completed", "failed"] as const;

export function isFinalStatus(status: string): boolean {
  return FINAL_STATUSES.has(status);
}

export const upstreamStatusSchema = z.looseObject({
  generation_id: z.string().min(1),
  // A status value Runblob adds later is kept and treated as not final.
  status: z.string().min(1),
  prompt: z.string().nullish(),
  video_url: z.string().nullish(),
  created_at: upstreamTimestamp.nullish(),
  completed_at: upstreamTimestamp.nullish(),
  progress_pct: z.number().int().min(0).max(100).nullish(),
  progress_pos_in_queue: z.number().int().min(0).nullish(),
  error_message: z.string().nullish(),
});
export type UpstreamStatus = z.infer<typeof upstreamStatusSchema>;

export const upstreamListItemSchema = z.looseObject({
  generation_id: z.string().min(1),
  status: z.string().min(1),
  prompt: z.string().nullish(),
  video_url: z.string().nullish(),
  created_at: upstreamTimestamp.nullish(),
  completed_at: upstreamTimestamp.nullish(),
});
export const upstreamListSchema = z.array(upstreamListItemSchema);
export type UpstreamListItem = z.infer<typeof upstreamListItemSchema>;

export const generateResponseSchema = z.looseObject({
  generation_id: z.string().min(1),
  status: z.string().min(1),
  price: z.string().nullish(),
});
export type GenerateResponse = z.infer<typeof generateResponseSchema>;

/** One entry of a FastAPI-style 422 upstreamResponse. */
export const validationIssueSchema = z.object({
  type: z.string(),
  loc: z.array(z.union([z.string(), z.number()])),
  msg: z.string(),
});
export type ValidationIssue = z.infer<typeof validationIssueSchema>;

/** Runblob's error body: `detail` is a string, or an array of issues for 422. */
export const errorBodySchema = z.looseObject({
  detail: z.union([z.string(), z.array(validationIssueSchema.loose())]),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

export const ORIENTATIONS = ["9:16", "16:9"] as const;
export const DURATIONS = [10, 15] as const;
export const PROMPT_MAX_CHARS = 4000;
export const IMAGE_MAX_BYTES = 10 * 1024 * 1024;
