/** Every configuration variable is documented in .env.example and the README, so the docs cannot drift. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { envSchema } from "../src/config/env.js";

const example = readFileSync(new URL("../.env.example", import.meta.url), "utf8");
const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const variables = Object.keys(envSchema.shape);

describe("configuration docs", () => {
  it.each(variables)("lists %s in .env.example", (name) => {
    expect(example).toMatch(new RegExp(`^#?\\s*${name}=`, "m"));
  });

  it.each(variables)("documents %s in the README", (name) => {
    expect(readme).toContain(`\`${name}\``);
  });
});
