/**
 * A reverse proxy in front of a relay, for tests. It forwards HTTP requests
 * (streaming responses such as SSE as they arrive) and WebSocket upgrades.
 * It can reject upgrades with 403, as some corporate proxies do, and it can
 * lose its target, so a test can stop a relay and start a new one behind the
 * same URL. It listens on 127.0.0.1 only.
 */
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";

export interface RelayProxy {
  /** Base URL of the proxy, such as http://127.0.0.1:40123. */
  url: string;
  /** When true, every WebSocket upgrade is rejected with 403. */
  rejectUpgrades: boolean;
  /** Number of upgrades rejected with 403 so far. */
  rejectedUpgrades: number;
  /** Points the proxy at another relay. With undefined, every request gets 502, as if the relay were down. */
  setTarget(baseUrl: string | undefined): void;
  close(): Promise<void>;
}

export async function startRelayProxy(target: string, options: { rejectUpgrades?: boolean } = {}): Promise<RelayProxy> {
  let targetUrl: URL | undefined = new URL(target);
  const sockets = new Set<net.Socket>();

  const server = http.createServer((request, response) => {
    if (targetUrl === undefined) {
      response.writeHead(502, { "content-type": "text/plain" }).end("relay is down");
      return;
    }
    const forwarded = http.request(
      { host: targetUrl.hostname, port: targetUrl.port, method: request.method, path: request.url, headers: request.headers },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    forwarded.on("error", () => {
      if (!response.headersSent) response.writeHead(502);
      response.end();
    });
    response.on("close", () => forwarded.destroy());
    request.pipe(forwarded);
  });

  server.on("upgrade", (request: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    if (proxy.rejectUpgrades || targetUrl === undefined) {
      proxy.rejectedUpgrades += 1;
      socket.end("HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    const upstream = net.connect(Number(targetUrl.port), targetUrl.hostname, () => {
      const headerLines: string[] = [];
      for (let i = 0; i < request.rawHeaders.length; i += 2) headerLines.push(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`);
      upstream.write(`${request.method} ${request.url} HTTP/1.1\r\n${headerLines.join("\r\n")}\r\n\r\n`);
      upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    const closeBoth = () => {
      upstream.destroy();
      socket.destroy();
    };
    upstream.on("error", closeBoth);
    upstream.on("close", closeBoth);
    socket.on("error", closeBoth);
    socket.on("close", closeBoth);
  });

  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const proxy: RelayProxy = {
    url: `http://127.0.0.1:${port}`,
    rejectUpgrades: options.rejectUpgrades ?? false,
    rejectedUpgrades: 0,
    setTarget(baseUrl) {
      targetUrl = baseUrl === undefined ? undefined : new URL(baseUrl);
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
