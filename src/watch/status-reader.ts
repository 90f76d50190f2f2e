/**
 * Reads the current status of one generation for REST calls and new
 * subscribers: from the store when a poll keeps it fresh or it is final,
 * otherwise with one request to Runblob shared by all concurrent callers.
 */
import type { Logger } from "pino";
import type { ChangeBus } from "../bus/change-bus.js";
import type { StatusStore, StoredStatus } from "../store/status-store.js";
import type { RequestContext, RunblobClient } from "../upstream/runblob-client.js";
import { isFinalStatus } from "../wire/upstream.js";
import type { WatchScheduler } from "./watch-scheduler.js";

export interface StatusReaderOptions {
  store: StatusStore;
  client: Pick<RunblobClient, "getStatus">;
  bus: ChangeBus;
  scheduler: WatchScheduler;
  logger: Logger;
}

export class StatusReader {
  readonly #options: StatusReaderOptions;
  readonly #inFlight = new Map<string, Promise<StoredStatus>>();

  constructor(options: StatusReaderOptions) {
    this.#options = options;
  }

  /** The current status; throws UpstreamError when Runblob has to be asked and fails (404 included). */
  async current(generationId: string, context: RequestContext = {}): Promise<StoredStatus> {
    const { store, scheduler } = this.#options;
    const stored = await store.get(generationId);
    if (stored !== null) {
      const final = isFinalStatus(stored.status.status);
      if (final) scheduler.notePolled(generationId, stored.status.version, true);
      if (final || scheduler.isFresh(generationId)) return stored;
    }

    let pending = this.#inFlight.get(generationId);
    if (pending === undefined) {
      pending = this.#fetch(generationId, stored?.status.version ?? 0, context).finally(() =>
        this.#inFlight.delete(generationId),
      );
      this.#inFlight.set(generationId, pending);
    }
    return pending;
  }

  async #fetch(generationId: string, expectedVersion: number, context: RequestContext): Promise<StoredStatus> {
    const { store, client, bus, scheduler } = this.#options;
    const upstream = await client.getStatus(generationId, context);
    const observedAt = new Date();
    const result = await store.record(generationId, { upstream, observedAt }, expectedVersion);

    if (result.outcome === "changed") {
      await bus.publish({
        kind: "status",
        change: { generationId, status: result.status, json: result.json, observedAtMs: observedAt.getTime() },
      });
    }
    scheduler.notePolled(generationId, result.status.version, isFinalStatus(result.status.status));
    return { status: result.status, json: result.json };
  }
}
