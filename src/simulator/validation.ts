/**
 * FastAPI-style validation of the simulated Runblob requests.
 *
 * Runblob is a FastAPI service, which responds to invalid fields with 422 and
 * a `detail` array of pydantic v2 errors `{type, loc, msg, input}`. The rules
 * come from the relay's own generate schema. Only the error wording is
 * translated to pydantic's, so clients see what Runblob would send.
 */
import { z } from "zod";
import { generateRequestSchema, type GenerateRequest } from "../wire/generate.js";

/** One entry of a 422 `detail` array. */
export interface FastApiIssue {
  type: string;
  loc: (string | number)[];
  msg: string;
  input?: unknown;
}

export type ValidationResult<T> = { ok: true; value: T } | { ok: false; issues: FastApiIssue[] };

// Unlike the relay's strict schema, FastAPI (pydantic's default) ignores unknown body fields.
const generateBodySchema = z.object(generateRequestSchema.shape);

/** pydantic's error for a body that is not a JSON object. */
export const NOT_AN_OBJECT_ISSUE: Readonly<FastApiIssue> = {
  type: "model_attributes_type",
  loc: ["body"],
  msg: "Input should be a valid dictionary or object to extract fields from",
};

function plural(count: number | bigint, noun: string): string {
  return `${count} ${noun}${Number(count) === 1 ? "" : "s"}`;
}

/** Translates one zod issue on a body field to pydantic's `type` and `msg`. */
function pydanticError(issue: z.core.$ZodIssue, field: string | number | undefined, input: unknown): Pick<FastApiIssue, "type" | "msg"> {
  if (input === undefined) return { type: "missing", msg: "Field required" };

  // Runblob declares these two as Literal types, so pydantic reports any wrong value the same way.
  if (field === "orientation") return { type: "literal_error", msg: "Input should be '9:16' or '16:9'" };
  if (field === "duration") return { type: "literal_error", msg: "Input should be 10 or 15" };

  switch (issue.code) {
    case "invalid_type":
      if (issue.expected === "string") return { type: "string_type", msg: "Input should be a valid string" };
      return { type: `${issue.expected}_type`, msg: `Input should be a valid ${issue.expected}` };
    case "too_small":
      return { type: "string_too_short", msg: `String should have at least ${plural(issue.minimum, "character")}` };
    case "too_big":
      return { type: "string_too_long", msg: `String should have at most ${plural(issue.maximum, "character")}` };
    default:
      // NOTE: Runblob does not document its URL and image errors, so this pydantic custom-validator format is a guess.
      return { type: "value_error", msg: `Value error, ${issue.message}` };
  }
}

/**
 * Validates a generate body as Runblob does, before the handler's own checks
 * (both image inputs → 400) and before any charge.
 */
export function validateGenerateBody(body: unknown): ValidationResult<GenerateRequest> {
  if (body === undefined || body === null) {
    return { ok: false, issues: [{ type: "missing", loc: ["body"], msg: "Field required", input: null }] };
  }
  if (typeof body !== "object" || Array.isArray(body)) {
    return { ok: false, issues: [{ ...NOT_AN_OBJECT_ISSUE, input: body }] };
  }

  const parsed = generateBodySchema.safeParse(body);
  if (parsed.success) return { ok: true, value: parsed.data };

  const fields = body as Record<string, unknown>;
  const issues = parsed.error.issues.map((issue): FastApiIssue => {
    const field = issue.path[0] as string | number | undefined;
    const input = field === undefined ? body : fields[field];
    const { type, msg } = pydanticError(issue, field, input);
    const entry: FastApiIssue = { type, loc: field === undefined ? ["body"] : ["body", field], msg };
    // pydantic echoes the input, but an image of megabytes is left out so the error stays small.
    if (input !== undefined && field !== "image_base64") entry.input = input;
    return entry;
  });
  return { ok: false, issues };
}

/** Parses one integer query parameter with FastAPI's errors for `Query(default, ge=min, le=max)`. */
function parseIntegerQuery(
  name: string,
  raw: unknown,
  defaultValue: number,
  min: number,
  max: number | undefined,
): ValidationResult<number> {
  // A repeated parameter arrives as an array; FastAPI reads the last value for a scalar parameter.
  const text = Array.isArray(raw) ? raw[raw.length - 1] : raw;
  if (text === undefined) return { ok: true, value: defaultValue };

  const loc = ["query", name];
  if (typeof text !== "string" || !/^\s*[+-]?\d+\s*$/.test(text)) {
    return {
      ok: false,
      issues: [{ type: "int_parsing", loc, msg: "Input should be a valid integer, unable to parse string as an integer", input: text }],
    };
  }

  const value = Number.parseInt(text, 10);
  if (value < min) {
    return { ok: false, issues: [{ type: "greater_than_equal", loc, msg: `Input should be greater than or equal to ${min}`, input: text }] };
  }
  if (max !== undefined && value > max) {
    return { ok: false, issues: [{ type: "less_than_equal", loc, msg: `Input should be less than or equal to ${max}`, input: text }] };
  }
  return { ok: true, value };
}

export interface ListQuery {
  limit: number;
  offset: number;
}

/** Parses `limit` (1 to 100, default 20) and `offset` (0 or more, default 0) of the list endpoint. */
export function parseListQuery(query: Record<string, unknown>): ValidationResult<ListQuery> {
  const limit = parseIntegerQuery("limit", query.limit, 20, 1, 100);
  const offset = parseIntegerQuery("offset", query.offset, 0, 0, undefined);

  const issues = [...(limit.ok ? [] : limit.issues), ...(offset.ok ? [] : offset.issues)];
  if (!limit.ok || !offset.ok) return { ok: false, issues };
  return { ok: true, value: { limit: limit.value, offset: offset.value } };
}

/** Translates a zod error on a control route body to a 422 `detail` array, with zod's own messages. */
export function controlIssues(error: z.ZodError): FastApiIssue[] {
  return error.issues.map((issue) => ({
    type: issue.code,
    loc: ["body", ...issue.path.map((part) => (typeof part === "symbol" ? String(part) : part))],
    msg: issue.message,
  }));
}
