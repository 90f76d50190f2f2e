/**
 * Small helpers for the operations tests: an HTTP call that returns status,
 * headers and body whatever the status, a wait on a condition, and a stack of
 * cleanups run after each test.
 */
import { request } from "undici";

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** Parsed JSON body, or undefined when the body is not JSON. Tests read many shapes, so it stays untyped. */
  json: any;
}

/** Sends one HTTP request, with `json` as the body and `content-type: application/json` when given. */
export async function httpRequest(url: string, options: { headers?: Record<string, string>; json?: unknown } = {}): Promise<HttpResult> {
  const headers: Record<string, string> = { ...options.headers };
  let body: string | undefined;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers["content-type"] = "application/json";
  }
  const response = await request(url, { method: body === undefined ? "GET" : "POST", headers, body });
  const text = await response.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.statusCode, headers: response.headers, text, json };
}

/** Polls `condition` every 20 ms until it holds, for state that emits no event. */
export async function waitUntil(condition: () => boolean, description: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${description}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Runs registered cleanups in reverse order; call `run` from afterEach. */
export class CleanupStack {
  #steps: Array<() => unknown> = [];

  add(step: () => unknown): void {
    this.#steps.push(step);
  }

  async run(): Promise<void> {
    const steps = this.#steps.reverse();
    this.#steps = [];
    for (const step of steps) {
      try {
        await step();
      } catch {
        // A failed cleanup (a socket already closed, say) must not skip the rest.
      }
    }
  }
}
