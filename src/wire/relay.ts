/**
 * What the relay itself sends and accepts: the status object it stores and
 * pushes, the WebSocket protocol, and list query rules. Every TypeScript type
 * of these payloads is inferred from the schemas here.
 */
import { z } from "zod";
import { upstreamStatusSchema } from "./upstream.js";

/** A generation id, lowercased, so case variants of one id share its cache, polls and ownership. */
export const generationIdSchema = z
  .uuid({
    error: (issue) =>
      typeof issue.input === "string"
        ? `invalid generation_id ${JSON.stringify(issue.input.slice(0, 80))}: expected a UUID`
        : "generation_id must be a UUID string",
  })
  .toLowerCase();

/** Runblob's status object plus the relay's `version` and `updated_at`. */
export const relayStatusSchema = upstreamStatusSchema.extend({
  /** 1 for the first state the relay saw, +1 on every change. */
  version: z.number().int().min(1),
  /** ISO 8601 UTC time at which the relay observed this state. */
  updated_at: z.string(),
});
export type RelayStatus = z.infer<typeof relayStatusSchema>;

/** A query parameter holding a decimal integer; `0x10`, `1e1` and an empty value are rejected, as FastAPI does. */
const decimalInteger = (name: string, min: number, max: number, fallback: number) =>
  z
    .string()
    .regex(/^\d{1,9}$/, `${name} must be a decimal integer from ${min} to ${max}`)
    .transform(Number)
    .pipe(
      z
        .number()
        .min(min, `${name} must be at least ${min}`)
        .max(max, `${name} must be at most ${max}`),
    )
    .default(fallback);

export const listQuerySchema = z.strictObject({
  limit: decimalInteger("limit", 1, 100, 20),
  offset: decimalInteger("offset", 0, 999_999_999, 0),
});

export const generationParamsSchema = z.strictObject({ id: generationIdSchema });

/** `Last-Event-ID` carries the version of the last status event the client received. */
export const lastEventIdSchema = z
  .string()
  .regex(/^\d{1,15}$/, "Last-Event-ID must be the version number (a non-negative integer) of the last status event")
  .transform(Number);

// WebSocket protocol: client to relay.

export const subscribeMessageSchema = z.strictObject({
  type: z.literal("subscribe"),
  generation_id: generationIdSchema,
  /** Resume: send the current status only if its version is above this one. */
  after_version: z.number().int().min(0).optional(),
});

export const unsubscribeMessageSchema = z.strictObject({
  type: z.literal("unsubscribe"),
  generation_id: generationIdSchema,
});

export const clientMessageSchema = z.discriminatedUnion("type", [subscribeMessageSchema, unsubscribeMessageSchema], {
  error: `type must be "subscribe" or "unsubscribe"`,
});
export type ClientMessage = z.infer<typeof clientMessageSchema>;

// WebSocket protocol: relay to client.

export const ERROR_CODES = [
  "invalid_message",
  "invalid_generation_id",
  "not_found",
  "upstream_error",
  "too_many_subscriptions",
  "rate_limited",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export const statusMessageSchema = z.object({ type: z.literal("status"), generation: relayStatusSchema });
export const timeoutMessageSchema = z.object({ type: z.literal("timeout"), generation_id: z.string() });
export const errorMessageSchema = z.object({
  type: z.literal("error"),
  code: z.enum(ERROR_CODES),
  message: z.string(),
  generation_id: z.string().optional(),
});
/** Runblob's state as the relay sees it: "degraded" while the relay pauses requests to it, "ok" once they resume. */
export const upstreamMessageSchema = z.object({ type: z.literal("upstream"), state: z.enum(["degraded", "ok"]) });
export const serverMessageSchema = z.discriminatedUnion("type", [
  statusMessageSchema,
  timeoutMessageSchema,
  errorMessageSchema,
  upstreamMessageSchema,
]);
export type ServerMessage = z.infer<typeof serverMessageSchema>;
export type ErrorMessage = z.infer<typeof errorMessageSchema>;

// Multi-generation SSE stream: GET /v1/sora/events?ids=...&after=...

/** Cursor entry of a generation for which the stream will send nothing more (final status, timeout or not found). */
export const CURSOR_DONE = "-";

/** A generation's resume position: the last version the client received, or "done". */
export type StreamPosition = number | typeof CURSOR_DONE;

const positionEntrySchema = z
  .string()
  .regex(/^[^:]+:\d{1,15}$/, "each after entry must be <generation_id>:<version>, such as 3da42dea-70a9-4951-81c5-4aa9c000fe2d:4")
  .transform((entry) => entry.split(":") as [string, string])
  .pipe(z.tuple([generationIdSchema, z.string().transform(Number)]));

/**
 * Query of the multi-generation stream. `ids` lists the generations (at most
 * `maxIds`, no repeats); `after` optionally gives resume positions as
 * `<generation_id>:<version>` pairs for some of them.
 */
export function multiEventsQuerySchema(maxIds: number) {
  return z
    .strictObject({
      ids: z
        .string({ error: "ids is required: a comma-separated list of generation ids" })
        .transform((value) => value.split(","))
        .pipe(
          z
            .array(generationIdSchema)
            .min(1, "ids must name at least one generation")
            .max(maxIds, `ids may name at most ${maxIds} generations (WS_MAX_SUBSCRIPTIONS)`),
        ),
      after: z
        .string()
        .transform((value) => value.split(","))
        .pipe(z.array(positionEntrySchema))
        .optional(),
    })
    .superRefine((query, ctx) => {
      const seen = new Set<string>();
      query.ids.forEach((id, index) => {
        if (seen.has(id)) ctx.addIssue({ code: "custom", path: ["ids", index], message: `generation_id "${id}" appears more than once in ids` });
        seen.add(id);
      });
      query.after?.forEach(([id], index) => {
        if (!seen.has(id)) ctx.addIssue({ code: "custom", path: ["after", index], message: `after names generation_id "${id}", which is not in ids` });
      });
    });
}
export type MultiEventsQuery = z.infer<ReturnType<typeof multiEventsQuerySchema>>;

/**
 * `Last-Event-ID` of the multi-generation stream: one entry per generation of
 * `ids`, in the same order, each the last version sent or `-` once the stream
 * sends nothing more for it. For example `4,-,0` for three generations.
 */
export const multiEventsCursorSchema = z
  .string()
  .regex(
    /^(\d{1,15}|-)(,(\d{1,15}|-))*$/,
    "Last-Event-ID must be the id of an event of this stream: one version number or - per generation of ids, comma-separated",
  )
  .transform((value): StreamPosition[] => value.split(",").map((entry) => (entry === CURSOR_DONE ? CURSOR_DONE : Number(entry))));
