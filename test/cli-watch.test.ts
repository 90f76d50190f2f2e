/** The terminal watcher, run as a process against a real relay and simulator. */
import { spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import { generate } from "./support/clients.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups.length = 0;
});

function runWatcher(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "client/src/cli.ts", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += String(chunk)));
    child.stderr.on("data", (chunk) => (output += String(chunk)));
    child.on("exit", (code) => resolve({ code, output }));
  });
}

describe("terminal watcher", () => {
  it("prints progress until completion", async () => {
    const sim = await startSimulator({ queueStart: 2, queueMs: 2000, processingMs: 1000 });
    cleanups.push(() => sim.close());
    const relay = await startRelay(sim);
    cleanups.push(() => relay.close());
    const id = await generate(relay.baseUrl);

    const { code, output } = await runWatcher(["watch", id, "--url", relay.baseUrl]);

    expect(code).toBe(0);
    expect(output).toContain("pending   queue position");
    expect(output).toMatch(/processing\s*\[#*-*\]/);
    expect(output).toContain("100%");
    expect(output).toContain(`/videos/${id}.mp4`);
  });

  it("exits 1 on a failed generation", async () => {
    const sim = await startSimulator({ queueStart: 1, queueMs: 100, processingMs: 200 });
    cleanups.push(() => sim.close());
    const relay = await startRelay(sim);
    cleanups.push(() => relay.close());
    const id = await generate(relay.baseUrl, { prompt: "[fail] a test" });

    const { code, output } = await runWatcher(["watch", id, "--url", relay.baseUrl]);

    expect(code).toBe(1);
    expect(output).toContain("failed");
  });

  it("rejects an invalid id with usage", async () => {
    const { code, output } = await runWatcher(["watch", "not-a-uuid"]);

    expect(code).toBe(2);
    expect(output).toContain('invalid generation id "not-a-uuid": expected a UUID');
    expect(output).toContain("usage: runblob-relay watch");
  });
});
