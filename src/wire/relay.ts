/**
 * What the relay itself sends and accepts: the status object it stores and
 * pushes, the WebSocket protocol, and list query rules. Every TypeScript type
 * of these payloads is inferred from the schemas here.
 */
import { z } from "zod";
import { upstreamStatusSchema } from "./upstream.js";

export const generationIdSchema = z.uuid({
  error: (issue) =>
    typeof issue.input === "string"
      ? `invalid generation_id ${JSON.stringify(issue.input.slice(0, 80))}: expected a UUID`
      : "generation_id must be a UUID string",
});

/** Runblob's status object plus the relay's `version` and `updated_at`. */
export const relayStatusSchema = upstreamStatusSchema.extend({
  /** 1 for the first state the relay saw, +1 on every change. */
  version: z.number().int().min(1),
  /** ISO 8601 UTC time at which the relay observed this state. */
  updated_at: z.string(),
});
export type RelayStatus = z.infer<typeof relayStatusSchema>;

export const listQuerySchema = z.strictObject({
  limit: z.coerce
    .number({ error: "limit must be an integer from 1 to 100" })
    .int("limit must be an integer from 1 to 100")
    .min(1, "limit must be at least 1")
    .max(100, "limit must be at most 100")
    .default(20),
  offset: z.coerce
    .number({ error: "offset must be an integer of 0 or more" })
    .int("offset must be an integer of 0 or more")
    .min(0, "offset must be 0 or more")
    .default(0),
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
export const serverMessageSchema = z.discriminatedUnion("type", [
  statusMessageSchema,
  timeoutMessageSchema,
  errorMessageSchema,
]);
export type ServerMessage = z.infer<typeof serverMessageSchema>;
export type ErrorMessage = z.infer<typeof errorMessageSchema>;
