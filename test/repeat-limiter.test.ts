/** RepeatLimiter and UpstreamHealth with a fake clock and a recording logger. */
import { describe, expect, it } from "vitest";
import { RepeatLimiter } from "../src/logging/repeat-limiter.js";
import { CREDENTIALS_FAILURE_WINDOW_MS, UpstreamHealth } from "../src/upstream/upstream-health.js";

interface Line {
  level: string;
  fields: Record<string, unknown>;
  message: string;
}

function recordingLogger(): { lines: Line[]; logger: any } {
  const lines: Line[] = [];
  const write = (level: string) => (fields: Record<string, unknown>, message: string) => lines.push({ level, fields, message });
  return { lines, logger: { error: write("error"), warn: write("warn"), info: write("info") } };
}

describe("RepeatLimiter", () => {
  it("logs the first line per key and window", () => {
    let now = 0;
    const { lines, logger } = recordingLogger();
    const limiter = new RepeatLimiter(logger, { windowMs: 60_000, now: () => now });

    for (let i = 0; i < 5; i += 1) limiter.log(logger, "warn", "upstream:timeout", { request_id: `r${i}` }, "upstream request failed");
    limiter.log(logger, "warn", "upstream:network", { request_id: "other" }, "upstream request failed");

    expect(lines.map((line) => line.fields.request_id)).toEqual(["r0", "other"]);
    limiter.flush();
  });

  it("reports suppressed repeats with the next window", () => {
    let now = 0;
    const { lines, logger } = recordingLogger();
    const limiter = new RepeatLimiter(logger, { windowMs: 60_000, now: () => now });

    for (let i = 0; i < 4; i += 1) limiter.log(logger, "error", "generate:timeout", { request_id: `r${i}` }, "generate failed");
    now = 61_000;
    limiter.log(logger, "error", "generate:timeout", { request_id: "late" }, "generate failed");

    expect(lines).toHaveLength(3);
    expect(lines[1]!.fields).toMatchObject({ repeat_key: "generate:timeout", suppressed: 3 });
    expect(lines[1]!.level).toBe("error");
    expect(lines[1]!.message).toContain("3 more like it");
    expect(lines[2]!.fields.request_id).toBe("late");
    limiter.flush();
  });

  it("flush reports pending counts", () => {
    const { lines, logger } = recordingLogger();
    const limiter = new RepeatLimiter(logger, { now: () => 0 });
    limiter.log(logger, "warn", "key", {}, "line");
    limiter.log(logger, "warn", "key", {}, "line");
    limiter.flush();
    expect(lines.map((line) => line.fields.suppressed)).toEqual([undefined, 1]);
  });

  it("stops limiting past maxKeys", () => {
    const { lines, logger } = recordingLogger();
    const limiter = new RepeatLimiter(logger, { maxKeys: 1, now: () => 0 });
    limiter.log(logger, "warn", "a", {}, "a");
    limiter.log(logger, "warn", "b", {}, "b");
    limiter.log(logger, "warn", "b", {}, "b");
    expect(lines.map((line) => line.message)).toEqual(["a", "b", "b"]);
    limiter.flush();
  });
});

describe("UpstreamHealth", () => {
  it("fails after 401 until a 2xx", () => {
    let now = 0;
    const { logger } = recordingLogger();
    const health = new UpstreamHealth(logger, () => now);

    expect(health.describe()).toBe("ok");
    health.recordResponse(401);
    expect(health.credentialsRejected).toBe(true);
    health.recordResponse(404);
    expect(health.credentialsRejected).toBe(true);
    health.recordResponse(200);
    expect(health.credentialsRejected).toBe(false);
  });

  it("passes again after the window", () => {
    let now = 0;
    const { lines, logger } = recordingLogger();
    const health = new UpstreamHealth(logger, () => now);

    health.recordResponse(403);
    health.recordResponse(403);
    now = CREDENTIALS_FAILURE_WINDOW_MS - 1;
    expect(health.describe()).toMatch(/HTTP 403/);
    now = CREDENTIALS_FAILURE_WINDOW_MS + 1;
    expect(health.describe()).toBe("ok");
    expect(lines.filter((line) => line.level === "error")).toHaveLength(1);
  });
});
