/**
 * Whether Runblob accepts the relay's token, judged from the responses the
 * client already receives, so the check itself sends no request.
 */
import type { Logger } from "pino";

/**
 * How long a 401 or 403 keeps the credentials check failing when no later
 * request succeeds. A failed readiness check takes the instance out of the
 * load balancer, which may stop the traffic that would clear it. So the check
 * passes again after this window, and the next rejected request fails it again.
 */
export const CREDENTIALS_FAILURE_WINDOW_MS = 60_000;

export class UpstreamHealth {
  #rejectedAt: number | undefined;
  #rejectedStatus: number | undefined;
  readonly #logger: Logger;
  readonly #now: () => number;

  constructor(logger: Logger, now: () => number = Date.now) {
    this.#logger = logger;
    this.#now = now;
  }

  /** Records the HTTP status of one Runblob response: 401 and 403 mark the credentials rejected, and a 2xx clears that. */
  recordResponse(statusCode: number): void {
    if (statusCode === 401 || statusCode === 403) {
      if (!this.credentialsRejected) {
        this.#logger.error(
          { status_code: statusCode },
          "Runblob rejected the relay's token: set a valid RUNBLOB_TOKEN; /readyz fails until a request succeeds",
        );
      }
      this.#rejectedAt = this.#now();
      this.#rejectedStatus = statusCode;
      return;
    }
    if (statusCode >= 200 && statusCode < 300 && this.#rejectedAt !== undefined) {
      if (this.credentialsRejected) this.#logger.info("Runblob accepts the relay's token again");
      this.#rejectedAt = undefined;
      this.#rejectedStatus = undefined;
    }
  }

  /** True when Runblob responded 401 or 403 within the window and nothing succeeded since. */
  get credentialsRejected(): boolean {
    return this.#rejectedAt !== undefined && this.#now() - this.#rejectedAt < CREDENTIALS_FAILURE_WINDOW_MS;
  }

  /** The readiness check's value: "ok", or what failed and when. */
  describe(): string {
    if (!this.credentialsRejected) return "ok";
    const secondsAgo = Math.round((this.#now() - this.#rejectedAt!) / 1000);
    return `Runblob responded with HTTP ${this.#rejectedStatus} to the relay's token ${secondsAgo} s ago and no request succeeded since`;
  }
}
