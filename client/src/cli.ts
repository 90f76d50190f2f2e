#!/usr/bin/env node
/**
 * Terminal watcher: `runblob-relay watch <generation-id>` prints a live
 * progress line for one generation, through the SDK, until it ends.
 *
 * Options: `--url <relay base URL>` (default RELAY_URL or http://127.0.0.1:3000),
 * `--ticket <stream ticket>` (default RELAY_TICKET) for relays that require one.
 */
import { createRelayClient, isFinalStatus } from "./index.js";
import type { RelayStatus } from "./index.js";
import type { WebSocketConstructor } from "./connection.js";

const USAGE = "usage: runblob-relay watch <generation-id> [--url http://127.0.0.1:3000] [--ticket <stream ticket>]";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BAR_WIDTH = 30;

function option(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index === -1 ? undefined : args[index + 1];
}

/** The progress line for one status: a bar while processing, the queue position while pending. */
function progressLine(status: RelayStatus): string {
  if (status.status === "pending") return `pending   queue position ${status.progress_pos_in_queue ?? "?"}`;
  if (status.status === "processing" || status.status === "completed") {
    const percent = status.status === "completed" ? 100 : (status.progress_pct ?? 0);
    const filled = Math.round((percent / 100) * BAR_WIDTH);
    const bar = `${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}`;
    const tail = status.status === "completed" ? `  ${status.video_url ?? ""}` : "";
    return `${status.status.padEnd(10)}[${bar}] ${String(percent).padStart(3)}%${tail}`;
  }
  if (status.status === "failed") return `failed    ${status.error_message ?? "no reason given"}`;
  return `${status.status}`;
}

/** Node 22+ and browsers have a global WebSocket; on Node 20 the `ws` package stands in. */
async function webSocketClass(): Promise<WebSocketConstructor | undefined> {
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global !== undefined) return global;
  try {
    const module = (await import("ws" as string)) as { default: WebSocketConstructor };
    return module.default;
  } catch {
    return undefined;
  }
}

async function main(args: string[]): Promise<number> {
  const [command, generationId] = args;
  if (command !== "watch" || generationId === undefined) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  if (!UUID.test(generationId)) {
    process.stderr.write(`invalid generation id ${JSON.stringify(generationId)}: expected a UUID\n${USAGE}\n`);
    return 2;
  }
  const baseUrl = option(args, "--url") ?? process.env.RELAY_URL ?? "http://127.0.0.1:3000";
  const ticket = option(args, "--ticket") ?? process.env.RELAY_TICKET;
  const WebSocket = await webSocketClass();
  if (WebSocket === undefined) {
    process.stderr.write("no WebSocket class: use Node 22 or newer, or install the ws package\n");
    return 1;
  }

  const client = createRelayClient({
    baseUrl,
    transport: "websocket",
    WebSocket,
    ...(ticket === undefined ? {} : { getTicket: async () => ticket }),
  });
  const interactive = process.stdout.isTTY === true;
  const print = (line: string) => process.stdout.write(interactive ? `\r\x1b[2K${line}` : `${line}\n`);

  return new Promise<number>((resolve) => {
    const finish = (code: number, line?: string) => {
      if (line !== undefined) print(line);
      if (interactive) process.stdout.write("\n");
      client.close();
      resolve(code);
    };
    client.watch(generationId, {
      onStatus: (status) => {
        if (!isFinalStatus(status)) print(progressLine(status));
        else finish(status.status === "completed" ? 0 : 1, progressLine(status));
      },
      onTimeout: () => finish(1, "the relay stopped watching: no final status within its poll limit"),
      onError: (error) => finish(1, `error ${error.code}: ${error.message}`),
      onUpstream: (message) => print(message),
    });
  });
}

main(process.argv.slice(2)).then((code) => process.exit(code));
