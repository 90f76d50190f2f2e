/**
 * The Server-Sent Events transport: every watch of a client on one stream
 * (GET /v1/sora/events?ids=...&after=...), reopened with the current
 * positions whenever the set of watches changes.
 */
import type { Connection, ConnectionContext, EventSourceConstructor, EventSourceLike } from "./connection.js";

const EVENT_TYPES = ["status", "timeout", "error", "end"] as const;

export function connectEventStream(
  streamUrl: string,
  Source: EventSourceConstructor,
  context: ConnectionContext,
  ticketParameter: string,
): Connection {
  let source: EventSourceLike | undefined;
  let opened = false;
  let reopenTimer: ReturnType<typeof setTimeout> | undefined;

  const end = () => {
    clearTimeout(reopenTimer);
    source?.close();
    source = undefined;
  };

  const open = () => {
    end();
    const watches = [...context.watches()];
    const ids = watches.map((watch) => watch.id).join(",");
    const after = watches
      .filter((watch) => watch.version > 0)
      .map((watch) => `${watch.id}:${watch.version}`)
      .join(",");
    for (const watch of watches) watch.rebase = true;

    const current = new Source(`${streamUrl}?ids=${ids}${after && `&after=${after}`}${ticketParameter && `&${ticketParameter}`}`);
    source = current;
    current.onopen = () => {
      opened = true;
      context.opened();
    };
    for (const type of EVENT_TYPES) {
      current.addEventListener(type, (event: { data?: string }) => {
        if (current !== source) return;
        // EventSource reports its own connection failures as data-less "error" events.
        if (type === "error" && !event.data) {
          end();
          context.lost(opened);
        } else if (type === "end") {
          // Every generation of this stream is done; watches added since then need a new stream.
          end();
          reopenSoon();
        } else {
          const data = JSON.parse(event.data!);
          context.message(type === "status" ? { type, generation: data } : { type, ...data });
        }
      });
    }
  };

  // Watches added or removed in one go (twenty in a loop, say) lead to one new stream.
  const reopenSoon = () => {
    clearTimeout(reopenTimer);
    reopenTimer = setTimeout(() => {
      const empty = [...context.watches()].length === 0;
      if (empty) end();
      else open();
    }, 0);
  };

  open();
  return { add: reopenSoon, remove: reopenSoon, close: end };
}
