/** METRICS_PORT and PUSH_CONFLATE_BYTES as loadConfig parses and checks them. */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config/env.js";

describe("operations configuration", () => {
  it("empty values mean unset", () => {
    const config = loadConfig({ METRICS_PORT: "", PUSH_CONFLATE_BYTES: "" });
    expect(config.METRICS_PORT).toBeUndefined();
    expect(config.PUSH_CONFLATE_BYTES).toBe(65_536);
  });

  it("conflation default follows a small MAX_BUFFERED_BYTES", () => {
    expect(loadConfig({ MAX_BUFFERED_BYTES: "32768" }).PUSH_CONFLATE_BYTES).toBe(16_384);
  });

  it("rejects PUSH_CONFLATE_BYTES at MAX_BUFFERED_BYTES", () => {
    expect(() => loadConfig({ MAX_BUFFERED_BYTES: "65536", PUSH_CONFLATE_BYTES: "65536" })).toThrow(ConfigError);
    expect(() => loadConfig({ MAX_BUFFERED_BYTES: "65536", PUSH_CONFLATE_BYTES: "65536" })).toThrow(/PUSH_CONFLATE_BYTES=65536: must be below/);
  });

  it("rejects METRICS_PORT equal to PORT", () => {
    expect(() => loadConfig({ PORT: "3000", METRICS_PORT: "3000" })).toThrow(/METRICS_PORT=3000: must differ from PORT/);
    expect(loadConfig({ PORT: "3000", METRICS_PORT: "9100" }).METRICS_PORT).toBe(9100);
  });

  it("rejects a METRICS_PORT that is not a port", () => {
    expect(() => loadConfig({ METRICS_PORT: "http" })).toThrow(/METRICS_PORT/);
  });
});
