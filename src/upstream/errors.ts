/** The one error type for everything that can go wrong talking to Runblob. */

export type UpstreamErrorKind =
  /** Runblob responded with a non-2xx status. */
  | "http"
  /** No complete response within the timeout. */
  | "timeout"
  /** Connection refused, reset or closed early. */
  | "network"
  /** A 2xx response whose body is not the documented JSON, or any body too large to read. */
  | "invalid_response";

export class UpstreamError extends Error {
  override readonly name = "UpstreamError";

  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    /** HTTP status when Runblob responded, else null. */
    readonly statusCode: number | null = null,
    /** Runblob's `detail` (a string, or the 422 issue array) when the error body had one. */
    readonly detail: unknown = undefined,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, options);
    this.retryAfterMs = options?.retryAfterMs;
  }

  /** How long Runblob asked the client to wait (its Retry-After header), when it did. */
  readonly retryAfterMs: number | undefined;

  /** True for responses that reject the request itself (4xx), as opposed to an outage. */
  get isClientError(): boolean {
    return this.kind === "http" && this.statusCode !== null && this.statusCode >= 400 && this.statusCode < 500;
  }
}
