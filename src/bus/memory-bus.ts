/**
 * A ChangeBus inside one process, for a single relay instance and for tests.
 * publish() calls the handler synchronously, before its promise settles, so
 * events reach the handler in publish order.
 */
import type { ChangeBus, WatchEvent } from "./change-bus.js";

export class MemoryChangeBus implements ChangeBus {
  private handler: ((event: WatchEvent) => void) | null = null;

  /**
   * Calls the handler with `event`, or drops the event when no handler is registered.
   * An error thrown by the handler rejects the returned promise.
   */
  async publish(event: WatchEvent): Promise<void> {
    this.handler?.(event);
  }

  onEvent(handler: (event: WatchEvent) => void): void {
    if (this.handler) {
      throw new Error("onEvent failed: a handler is already registered, and a ChangeBus has a single consumer");
    }
    this.handler = handler;
  }

  /** Unregisters the handler, so later events are dropped. */
  async close(): Promise<void> {
    this.handler = null;
  }
}
