/**
 * The relay's pino logger. Secrets never reach a log line: credentials in
 * headers are redacted, and request URLs are logged without their query
 * string, where stream credentials may travel.
 */
import { createRequire } from "node:module";
import { pino } from "pino";
import type { Logger, LoggerOptions } from "pino";

export const REDACTED_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  "req.headers[\"x-api-key\"]",
  "headers.authorization",
  "authorization",
  "token",
  "*.token",
  "RUNBLOB_TOKEN",
  "REDIS_URL",
  "req.headers[\"x-relay-grant\"]",
  "AUTH_JWT_SECRET",
  "AUTH_API_KEYS",
  "AUTH_TICKET_SECRET",
  "AUTH_GRANT_SECRET",
];

interface LoggableRequest {
  id?: string;
  method?: string;
  url?: string;
  ip?: string;
  socket?: { remoteAddress?: string };
}

/** A webhook URL's last segment is its secret (Runblob signs nothing), so it is never logged. */
const WEBHOOK_TOKEN_IN_PATH = /^(\/v1\/sora\/webhooks\/)[^/]+/;

function pathOnly(url: string | undefined): string | undefined {
  return url?.split("?")[0]?.replace(WEBHOOK_TOKEN_IN_PATH, "$1[redacted]");
}

export function loggerOptions(level: string, base: Record<string, unknown> = {}): LoggerOptions {
  return {
    level,
    base: { service: "runblob-relay", ...base },
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    serializers: {
      req: (request: LoggableRequest) => ({
        method: request.method,
        url: pathOnly(request.url),
        remote_address: request.ip ?? request.socket?.remoteAddress,
      }),
      res: (reply: { statusCode?: number }) => ({ status_code: reply.statusCode }),
      err: pino.stdSerializers.err,
    },
  };
}

/** JSON lines, or pino-pretty when the output is a terminal outside production and pino-pretty is installed. */
export function createLogger(options: { level: string; nodeEnv: string; destination?: pino.DestinationStream }): Logger {
  const settings = loggerOptions(options.level);
  if (options.destination !== undefined) return pino(settings, options.destination);

  if (options.nodeEnv !== "production" && process.stdout.isTTY && canLoad("pino-pretty")) {
    return pino({ ...settings, transport: { target: "pino-pretty", options: { translateTime: "SYS:HH:MM:ss.l" } } });
  }
  return pino(settings);
}

function canLoad(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
