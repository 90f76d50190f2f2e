/**
 * Message types of the relay's protocols, inferred from the server's zod
 * schemas. The imports are type-only, so the SDK's JavaScript contains no
 * zod and the two sides cannot drift apart without a type error.
 */
import type { z } from "zod";
import type { relayStatusSchema, serverMessageSchema, ErrorCode } from "../../src/wire/relay.js";
import type { generateRequestSchema } from "../../src/wire/generate.js";
import type { generateResponseSchema } from "../../src/wire/upstream.js";

/** Runblob's status object plus the relay's `version` and `updated_at`. */
export type RelayStatus = z.output<typeof relayStatusSchema>;
/** A message the relay sends over the WebSocket; SSE events carry the same payloads. */
export type ServerMessage = z.output<typeof serverMessageSchema>;
/** Body of POST /v1/sora/generate. */
export type GenerateRequest = z.input<typeof generateRequestSchema>;
/** Runblob's response to a generate request, passed through by the relay. */
export type GenerateResponse = z.output<typeof generateResponseSchema>;
export type { ErrorCode };
