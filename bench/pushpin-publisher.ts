/**
 * The publisher of the Pushpin side: publishes a new status to each channel
 * `gen-<id>` once per interval through Pushpin's HTTP publish API, spreading
 * the channels evenly over the interval as the relay's scheduler spreads its
 * polls. Each status carries `updated_at` = the time it was published, so
 * latency is measured from the same point as the relay's (a new status in
 * hand) to the client's receipt.
 *
 * Stops by itself after DURATION_MS and prints one JSON line with its counts.
 *
 *   PUBLISH_PORT  Pushpin's push_in_http_port on 127.0.0.1
 *   IDS_FILE      file with one generation id per line
 *   INTERVAL_MS   time between two statuses of one channel
 *   DURATION_MS   how long to publish
 */
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { statusEvent } from "./lib/pushpin-messages.js";

const port = Number(process.env.PUBLISH_PORT);
const intervalMs = Number(process.env.INTERVAL_MS);
const durationMs = Number(process.env.DURATION_MS);
const idsFile = process.env.IDS_FILE;
if (!Number.isInteger(port) || !(intervalMs > 0) || !(durationMs > 0) || idsFile === undefined) {
  process.stderr.write("pushpin publisher: set PUBLISH_PORT, IDS_FILE, INTERVAL_MS and DURATION_MS\n");
  process.exit(1);
}

const ids = readFileSync(idsFile, "utf8").split("\n").filter(Boolean);
const agent = new Agent({ keepAlive: true, maxSockets: 8 });
const TICK_MS = 5;

let published = 0;
let failedRequests = 0;
let version = 1;
const startedAt = Date.now();
const nextDue = ids.map((_, i) => startedAt + (i * intervalMs) / ids.length);

function publish(due: string[]): void {
  const now = new Date();
  version += 1;
  const items = due.map((id) => ({
    channel: `gen-${id}`,
    formats: { "http-stream": { content: statusEvent(id, version, now) } },
  }));
  const body = JSON.stringify({ items });
  const req = request(
    { host: "127.0.0.1", port, method: "POST", path: "/publish/", agent, headers: { "content-type": "application/json" } },
    (res) => {
      res.resume();
      if (res.statusCode === 200) published += items.length;
      else failedRequests += 1;
    },
  );
  req.on("error", () => {
    failedRequests += 1;
  });
  req.end(body);
}

const timer = setInterval(() => {
  const now = Date.now();
  if (now - startedAt >= durationMs) {
    clearInterval(timer);
    setTimeout(() => {
      process.stdout.write(`${JSON.stringify({ published, failedRequests })}\n`);
      agent.destroy();
      process.exit(0);
    }, 500);
    return;
  }
  const due: string[] = [];
  for (let i = 0; i < ids.length; i += 1) {
    if (nextDue[i]! <= now) {
      due.push(ids[i]!);
      nextDue[i] = nextDue[i]! + intervalMs;
    }
  }
  if (due.length > 0) publish(due);
}, TICK_MS);
process.on("SIGTERM", () => process.exit(0));
