/**
 * The demo page end to end in headless Chromium (Debian's /usr/bin/chromium,
 * driven by playwright-core): start a generation, watch the queue position
 * and the progress bar, and see the video load. Repeated with WebSocket
 * upgrades rejected (the SDK falls back to SSE) and with a relay restart in
 * the middle of a generation (the page recovers by itself).
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { promisify } from "node:util";
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { startRelayProxy } from "./support/relay-proxy.js";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const SCREENSHOT = "test-artifacts/demo-finished.png";

/**
 * The page functions below run in Chromium. The test project has no DOM types,
 * so this module declares the little of the DOM that those functions use.
 */
interface PageElement {
  textContent: string | null;
  hidden: boolean;
  getAttribute(name: string): string | null;
  readyState: number;
  videoWidth: number;
  videoHeight: number;
  currentSrc: string;
}
declare const document: { querySelector(selector: string): PageElement | null };
const run = promisify(execFile);

let browser: Browser;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's Chromium with 'apt-get install -y chromium' (the browser tests never download one)`);
  }
  // The relay serves the SDK from client/dist, so the page needs a fresh build.
  await run("npx", ["tsc", "-p", "client/tsconfig.json"], { timeout: 120_000 });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}, 180_000);

afterAll(async () => {
  await browser?.close();
});

afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups.length = 0;
});

async function startSimulatorForDemo(): Promise<SimulatorHandle> {
  const sim = await startSimulator({ queueStart: 3, queueMs: 1500, processingMs: 3000 });
  cleanups.push(() => sim.close());
  return sim;
}

async function startDemoRelay(sim: SimulatorHandle): Promise<RelayHandle> {
  return startRelay(sim, { DEMO_ENABLED: "true" });
}

async function openPage(url: string): Promise<{ page: Page; pageErrors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  cleanups.push(() => context.close());
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  await page.goto(url);
  return { page, pageErrors };
}

async function startGeneration(page: Page, prompt: string): Promise<void> {
  await page.fill("#prompt", prompt);
  await page.selectOption("#orientation", "16:9");
  await page.selectOption("#duration", "15");
  await page.click("#start");
  await page.waitForSelector(".generation", { timeout: 10_000 });
}

/** Waits until the page shows a queue position, then a rising progress bar; returns the values seen. */
async function expectQueueThenProgress(page: Page): Promise<{ queueText: string; progress: number[] }> {
  await page.waitForFunction(() => /^Position \d+ in queue$/.test(document.querySelector(".generation .queue")?.textContent ?? ""), undefined, {
    timeout: 10_000,
  });
  const queueText = (await page.textContent(".generation .queue")) ?? "";

  const progressNow = () =>
    page.evaluate(() => {
      const bar = document.querySelector(".generation [role=progressbar]");
      return bar === null || bar.hidden ? -1 : Number(bar.getAttribute("aria-valuenow"));
    });
  await page.waitForFunction(
    () => {
      const bar = document.querySelector(".generation [role=progressbar]");
      return bar !== null && !bar.hidden && Number(bar.getAttribute("aria-valuenow")) > 0;
    },
    undefined,
    { timeout: 10_000 },
  );
  const first = await progressNow();
  await page.waitForFunction(
    (previous) => Number(document.querySelector(".generation [role=progressbar]")?.getAttribute("aria-valuenow")) > previous,
    first,
    { timeout: 10_000 },
  );
  const second = await progressNow();
  return { queueText, progress: [first, second] };
}

/** Waits for the completed state and for the video element to have decoded its first frame. */
async function expectPlayableVideo(page: Page): Promise<{ width: number; height: number; src: string }> {
  await page.waitForSelector('.generation[data-state="completed"]', { timeout: 20_000 });
  await page.waitForFunction(
    () => {
      const video = document.querySelector(".generation video");
      return video !== null && !video.hidden && video.readyState >= 2;
    },
    undefined,
    { timeout: 10_000 },
  );
  return page.evaluate(() => {
    const video = document.querySelector(".generation video")!;
    return { width: video.videoWidth, height: video.videoHeight, src: video.currentSrc };
  });
}

describe("demo page in Chromium", () => {
  it("shows queue, progress and a playable video", async () => {
    const sim = await startSimulatorForDemo();
    const relay = await startDemoRelay(sim);
    cleanups.push(() => relay.close());
    const { page, pageErrors } = await openPage(`${relay.baseUrl}/`);

    await startGeneration(page, "A lighthouse on a cliff at dusk, waves below");
    const { queueText, progress } = await expectQueueThenProgress(page);
    expect(queueText).toMatch(/^Position [1-3] in queue$/);
    expect(progress[1]).toBeGreaterThan(progress[0]!);
    expect(await page.getAttribute("#connection", "data-transport")).toBe("websocket");

    const video = await expectPlayableVideo(page);
    expect(video.src).toMatch(new RegExp(`^${sim.url}/videos/[0-9a-f-]{36}\\.mp4$`));
    expect(video.width).toBe(320);
    expect(video.height).toBe(180);
    expect(await page.textContent(".generation .elapsed")).toMatch(/^Elapsed \d+:\d{2}$/);
    expect(pageErrors).toEqual([]);

    await mkdir("test-artifacts", { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  }, 60_000);

  it("falls back to SSE when WebSocket upgrades are rejected", async () => {
    const sim = await startSimulatorForDemo();
    const relay = await startDemoRelay(sim);
    cleanups.push(() => relay.close());
    const proxy = await startRelayProxy(relay.baseUrl, { rejectUpgrades: true });
    cleanups.push(() => proxy.close());
    const { page, pageErrors } = await openPage(`${proxy.url}/`);

    await startGeneration(page, "A paper boat drifting down a rainy street");
    const { progress } = await expectQueueThenProgress(page);
    expect(progress[1]).toBeGreaterThan(progress[0]!);
    expect(await page.getAttribute("#connection", "data-transport")).toBe("sse");
    await expectPlayableVideo(page);

    expect(proxy.rejectedUpgrades).toBeGreaterThanOrEqual(1);
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it("recovers by itself when the relay restarts mid-generation", async () => {
    const sim = await startSimulatorForDemo();
    let relay = await startDemoRelay(sim);
    cleanups.push(() => relay.close());
    const proxy = await startRelayProxy(relay.baseUrl);
    cleanups.push(() => proxy.close());
    const { page, pageErrors } = await openPage(`${proxy.url}/`);

    await startGeneration(page, "A hot-air balloon over snowy mountains");
    await page.waitForSelector('.generation[data-state="processing"]', { timeout: 10_000 });

    // The relay goes away (the proxy returns 502 meanwhile) and a new one, with an empty store, takes over.
    proxy.setTarget(undefined);
    await relay.close();
    await page.waitForSelector('#connection[data-status="reconnecting"]', { timeout: 10_000 });
    relay = await startDemoRelay(sim);
    proxy.setTarget(relay.baseUrl);

    await page.waitForSelector('#connection[data-status="open"]', { timeout: 15_000 });
    await expectPlayableVideo(page);
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
