/**
 * The cap on TCP connections per instance: how it is derived from the
 * open-file limit, and a relay that closes connections past it, logs them
 * and counts them, then accepts again once one closes.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FILE_RESERVE, connectionCap, openFileLimit } from "../src/http/connection-cap.js";
import { startRelay, startSimulator } from "./support/relay-harness.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function limitsFile(line: string): string {
  const dir = mkdtempSync(join(tmpdir(), "relay-limits-"));
  const file = join(dir, "limits");
  writeFileSync(file, `Limit                     Soft Limit           Hard Limit           Units\nMax processes             63806                63806                processes\n${line}\n`);
  return file;
}

describe("open-file limit", () => {
  it("reads the soft limit", () => {
    expect(openFileLimit(limitsFile("Max open files            20000                40000                files"))).toBe(20_000);
  });

  it("returns undefined when unlimited", () => {
    expect(openFileLimit(limitsFile("Max open files            unlimited            unlimited            files"))).toBeUndefined();
  });

  it("returns undefined without the file", () => {
    expect(openFileLimit(join(tmpdir(), "no-such-limits-file"))).toBeUndefined();
  });
});

describe("connection cap", () => {
  it("keeps Runblob's and a reserve free", () => {
    expect(connectionCap(undefined, 20_000, 64)).toBe(20_000 - 64 - FILE_RESERVE);
  });

  it("prefers MAX_CONNECTIONS", () => {
    expect(connectionCap(500, 20_000, 64)).toBe(500);
  });

  it("turns off with 0", () => {
    expect(connectionCap(0, 20_000, 64)).toBeUndefined();
  });

  it("is off without any limit", () => {
    expect(connectionCap(undefined, undefined, 64)).toBeUndefined();
  });
});

/** Opens a TCP connection; resolves once connected. */
async function openSocket(port: number): Promise<Socket> {
  const socket = connect(port, "127.0.0.1");
  cleanups.push(() => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  return socket;
}

/** Resolves true when the server closes the socket within `ms`, false when it stays open. */
function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

describe("relay at MAX_CONNECTIONS", () => {
  it("refuses, logs, counts, then accepts again", async () => {
    const sim = await startSimulator();
    cleanups.push(() => sim.close());
    const relay = await startRelay(sim, { MAX_CONNECTIONS: "3" });
    cleanups.push(() => relay.close());
    const port = Number(new URL(relay.baseUrl).port);

    const openSockets = [await openSocket(port), await openSocket(port), await openSocket(port)];
    const extra = await openSocket(port);
    expect(await closedWithin(extra, 2000)).toBe(true);
    expect(relay.logs.some((line) => line.includes("connection refused: this instance has MAX_CONNECTIONS open"))).toBe(true);

    openSockets[0]!.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const again = await openSocket(port);
    expect(await closedWithin(again, 500)).toBe(false);
    again.destroy();
    openSockets[1]!.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));

    const metrics = await (await fetch(`${relay.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^relay_connections_refused_total 1$/m);
  });
});
