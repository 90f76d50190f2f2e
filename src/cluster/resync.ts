/**
 * Re-reads every watched generation from the store and delivers what this
 * instance missed. Redis pub/sub delivers at most once, so changes published
 * while this instance's subscriber connection was down would otherwise only
 * reach its subscribers with the next change.
 */
import type { Logger } from "pino";
import type { StatusStore } from "../store/status-store.js";
import type { WatchScheduler } from "../watch/watch-scheduler.js";
import type { FanoutHub } from "../push/fanout-hub.js";

export async function resyncWatched(store: StatusStore, scheduler: WatchScheduler, hub: FanoutHub, logger: Logger): Promise<void> {
  const generationIds = scheduler.watchedIds();
  let found = 0;
  for (const generationId of generationIds) {
    try {
      const stored = await store.get(generationId);
      if (stored === null) continue;
      // Sinks and the hub drop versions they already sent, so only missed changes go out.
      const event = { kind: "status" as const, change: { generationId, ...stored, observedAtMs: Date.now() } };
      scheduler.observe(event);
      hub.handle(event);
      found += 1;
    } catch (error) {
      logger.warn({ err: error, generation_id: generationId }, "could not re-read a watched generation after a bus reconnect");
      return;
    }
  }
  logger.info({ generations: generationIds.length, found }, "re-read watched generations after the bus reconnected");
}
