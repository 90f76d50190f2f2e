/** zod schemas for environment values shared by the configuration modules of several parts. */
import { z } from "zod";

export const emptyAsUndefined = (value: unknown) => (value === "" ? undefined : value);

export const integerValue = (name: string, min: number, max: number) =>
  z.coerce
    .number({ error: `${name} must be an integer from ${min} to ${max}` })
    .int(`${name} must be an integer from ${min} to ${max}`)
    .min(min, `${name} must be an integer from ${min} to ${max}`)
    .max(max, `${name} must be an integer from ${min} to ${max}`);

/** An optional secret of at least `minLength` characters; its value never appears in a message. */
export const secretValue = (name: string, minLength: number) =>
  z.preprocess(
    emptyAsUndefined,
    z.string().min(minLength, `${name} is too short: use at least ${minLength} random characters (for example: openssl rand -base64 48)`).optional(),
  );

/** An optional free-text value; empty counts as unset. */
export const optionalText = (name: string, pattern: RegExp, rule: string) =>
  z.preprocess(emptyAsUndefined, z.string().regex(pattern, `${name} ${rule}`).optional());
