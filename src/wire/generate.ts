/**
 * The generate request body, validated by the relay with Runblob's documented
 * rules before anything is sent upstream.
 */
import { z } from "zod";
import { DURATIONS, IMAGE_MAX_BYTES, ORIENTATIONS, PROMPT_MAX_CHARS } from "./upstream.js";

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const BASE64_ALPHABET = /^[A-Za-z0-9+/]*={0,2}$/;
const DATA_URL_PREFIX = /^data:image\/(jpeg|png|webp);base64,/;

/** Number of bytes a padded base64 string decodes to, without decoding it. */
export function base64DecodedLength(base64: string): number {
  const padding = base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0;
  return (base64.length / 4) * 3 - padding;
}

/** Image type from the file's first bytes (magic numbers), or null for anything else. */
export function sniffImageType(head: Uint8Array): "jpeg" | "png" | "webp" | null {
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return "jpeg";
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (png.every((byte, index) => head[index] === byte)) return "png";
  const ascii = (from: number, to: number) => String.fromCharCode(...head.subarray(from, to));
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "webp";
  return null;
}

const imageBase64Schema = z.string().superRefine((value, ctx) => {
  const base64 = value.replace(DATA_URL_PREFIX, "");
  if (base64.length === 0) {
    ctx.addIssue({ code: "custom", message: "image_base64 is empty: send the image file encoded as base64" });
    return;
  }
  if (base64.length % 4 !== 0 || !BASE64_ALPHABET.test(base64)) {
    ctx.addIssue({
      code: "custom",
      message: "image_base64 is not valid base64: use the standard alphabet (A-Z a-z 0-9 + /) with = padding",
    });
    return;
  }
  const bytes = base64DecodedLength(base64);
  if (bytes > IMAGE_MAX_BYTES) {
    ctx.addIssue({
      code: "custom",
      message: `image_base64 decodes to ${bytes} bytes, more than the maximum of ${IMAGE_MAX_BYTES} (10 MB)`,
    });
    return;
  }
  if (sniffImageType(Buffer.from(base64.slice(0, 16), "base64")) === null) {
    ctx.addIssue({ code: "custom", message: "image_base64 is not a JPEG, PNG or WEBP image" });
  }
});

const httpUrl = (field: string, protocols: readonly string[]) =>
  z.string().superRefine((value, ctx) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      ctx.addIssue({ code: "custom", message: `${field} is not an absolute URL` });
      return;
    }
    if (!protocols.includes(url.protocol)) {
      ctx.addIssue({
        code: "custom",
        message: `${field} must use ${protocols.map((p) => p.replace(":", "")).join(" or ")}, got ${url.protocol.replace(":", "")}`,
      });
    }
  });

export const generateRequestSchema = z.strictObject({
  prompt: z
    .string({ error: (issue) => (issue.input === undefined ? "prompt is required" : "prompt must be a string") })
    .min(1, "prompt must have at least 1 character")
    .max(PROMPT_MAX_CHARS, `prompt must have at most ${PROMPT_MAX_CHARS} characters`)
    .refine((prompt) => prompt.length === 0 || prompt.trim().length > 0, "prompt must contain more than white space")
    // Lone UTF-16 surrogates and control characters other than tab and line breaks are not text.
    .refine((prompt) => !LONE_SURROGATE.test(prompt), "prompt contains an unpaired UTF-16 surrogate: send valid Unicode text")
    .refine(
      (prompt) => !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(prompt),
      "prompt contains a control character: only tab, line feed and carriage return are allowed",
    ),
  orientation: z
    .enum(ORIENTATIONS, { error: `orientation must be "9:16" (portrait) or "16:9" (landscape)` })
    .optional(),
  duration: z
    .union(
      DURATIONS.map((seconds) => z.literal(seconds)),
      { error: "duration must be the integer 10 or 15 (seconds)" },
    )
    .optional(),
  image_url: httpUrl("image_url", ["http:", "https:"]).max(2048).optional(),
  image_base64: imageBase64Schema.optional(),
  callback_url: httpUrl("callback_url", ["https:"]).max(2048).optional(),
});
export type GenerateRequest = z.infer<typeof generateRequestSchema>;

/** Runblob's own wording for a request that carries both image inputs (Runblob responds with 400). */
export const BOTH_IMAGES_DETAIL = "Cannot provide both image_base64 and image_url";

export function hasBothImageInputs(body: unknown): boolean {
  if (typeof body !== "object" || body === null) return false;
  const record = body as Record<string, unknown>;
  return record.image_base64 !== undefined && record.image_url !== undefined;
}
