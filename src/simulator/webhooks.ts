/**
 * Webhook deliveries, as Runblob sends them to a generation's `callback_url`
 * once it completes or fails: one JSON POST with the final status fields.
 *
 * The simulator only delivers to loopback addresses (127.0.0.0/8, ::1,
 * localhost), so a test can receive them and nothing leaves the machine;
 * other URLs are accepted and never called. For the same reason plain http
 * is accepted for loopback URLs, where Runblob requires https.
 * NOTE: Runblob retries a failed delivery up to 5 times (30 s to 480 s apart); the simulator tries once.
 */
import type { SimulatedStatus } from "./lifecycle.js";

const DELIVERY_TIMEOUT_MS = 30_000;

export function isLoopbackUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The body Runblob posts: the final status without progress fields. */
export function webhookBody(status: SimulatedStatus): Record<string, unknown> {
  const body: Record<string, unknown> = {
    generation_id: status.generation_id,
    status: status.status,
    prompt: status.prompt,
    video_url: status.video_url,
    created_at: status.created_at,
    completed_at: status.completed_at,
  };
  if (status.status === "failed") body.error_message = status.error_message;
  return body;
}

export class WebhookSender {
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #sentTo = new Set<string>();
  /** Deliveries attempted, for tests. */
  sent = 0;

  /** Posts the final status once per generation; does nothing for URLs off this machine. */
  deliver(callbackUrl: string, status: SimulatedStatus): void {
    if (!isLoopbackUrl(callbackUrl) || this.#sentTo.has(status.generation_id)) return;
    this.#sentTo.add(status.generation_id);
    this.sent += 1;
    fetch(callbackUrl, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "runblob-simulator-webhook" },
      body: JSON.stringify(webhookBody(status)),
      signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
    })
      .then((response) => response.body?.cancel())
      .catch(() => {
        // A receiver that is gone is the receiver's problem, as with Runblob.
      });
  }

  /** Calls `deliver` with the status computed at `atMs` from now, once the generation should be final. */
  schedule(delayMs: number, send: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      send();
    }, Math.max(0, delayMs));
    timer.unref();
    this.#timers.add(timer);
  }

  close(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}
