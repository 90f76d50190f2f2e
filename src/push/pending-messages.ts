/**
 * Messages held back for one congested connection, conflated per generation.
 *
 * While a client reads slower than statuses change, the relay does not queue
 * every status: it keeps the latest one per generation and writes it when the
 * socket drains. Per generation at most three messages are held (the latest
 * status, the latest upstream error and the message that ends the
 * subscription), so the memory a slow client costs is bounded by its
 * subscriptions, not by the number of changes. A final status ends the
 * subscription, so no later status can replace it while it is held.
 */
import type { PushMessageType } from "../metrics/relay-metrics.js";

export interface PendingMessage {
  type: PushMessageType;
  frame: Buffer | string;
}

interface GenerationMessages {
  /** Latest status frame: each one replaces the one before. */
  status: Buffer | undefined;
  /** Latest `upstream_error`; a later status supersedes it, since statuses flow again. */
  error: PendingMessage | undefined;
  /** `timeout`, `not_found` or another message after which nothing follows for this generation. */
  end: PendingMessage | undefined;
}

export class PendingMessages {
  readonly #byGeneration = new Map<string, GenerationMessages>();
  #count = 0;

  /** Messages held, over all generations. */
  get size(): number {
    return this.#count;
  }

  get isEmpty(): boolean {
    return this.#count === 0;
  }

  /** Holds a status frame; returns the number of held messages it replaced (conflated). */
  holdStatus(generationId: string, frame: Buffer): number {
    const held = this.#entry(generationId);
    let replaced = 0;
    if (held.status !== undefined) replaced += 1;
    else this.#count += 1;
    if (held.error !== undefined) {
      held.error = undefined;
      this.#count -= 1;
      replaced += 1;
    }
    held.status = frame;
    return replaced;
  }

  /** Holds an upstream error; returns the number of held messages it replaced. */
  holdError(generationId: string, message: PendingMessage): number {
    const held = this.#entry(generationId);
    const replaced = held.error === undefined ? 0 : 1;
    if (replaced === 0) this.#count += 1;
    held.error = message;
    return replaced;
  }

  /** Holds the message that ends a generation's subscription. */
  holdEnd(generationId: string, message: PendingMessage): void {
    const held = this.#entry(generationId);
    if (held.end === undefined) this.#count += 1;
    held.end = message;
  }

  /** Removes and returns the held messages of the generation held longest, in the order they must be written. */
  shift(): PendingMessage[] {
    const first = this.#byGeneration.entries().next();
    if (first.done === true) return [];
    const [generationId, held] = first.value;
    this.#byGeneration.delete(generationId);

    const messages: PendingMessage[] = [];
    if (held.status !== undefined) messages.push({ type: "status", frame: held.status });
    if (held.error !== undefined) messages.push(held.error);
    if (held.end !== undefined) messages.push(held.end);
    this.#count -= messages.length;
    return messages;
  }

  /** Drops everything; returns the number of messages dropped. */
  clear(): number {
    const dropped = this.#count;
    this.#byGeneration.clear();
    this.#count = 0;
    return dropped;
  }

  #entry(generationId: string): GenerationMessages {
    let held = this.#byGeneration.get(generationId);
    if (held === undefined) {
      held = { status: undefined, error: undefined, end: undefined };
      this.#byGeneration.set(generationId, held);
    }
    return held;
  }
}
