/** What the HTTP layer needs from the rest of the relay; built in src/relay.ts. */
import type { RedisConnection as Redis } from "../cluster/redis-connection.js";
import type { Config } from "../config/env.js";
import type { UpstreamGateway } from "../upstream/upstream-gateway.js";
import type { WebhookTokens } from "../webhooks/webhook-tokens.js";
import type { ChangeBus } from "../bus/change-bus.js";
import type { StatusReader } from "../watch/status-reader.js";
import type { WatchScheduler } from "../watch/watch-scheduler.js";
import type { FanoutHub } from "../push/fanout-hub.js";
import type { ConnectionRegistry } from "../push/connection-registry.js";
import type { RelayMetrics } from "../metrics/relay-metrics.js";
import type { RepeatLimiter } from "../logging/repeat-limiter.js";
import type { Security } from "../auth/security.js";

export interface RelayServices {
  config: Config;
  /** Runblob behind the breaker, the request budget and retries. */
  client: UpstreamGateway;
  /** Carries poll hints from webhooks to the instance holding the poll lease. */
  bus: ChangeBus;
  /** Per-generation webhook URLs, used when PUBLIC_BASE_URL is set. */
  webhookTokens: WebhookTokens;
  reader: StatusReader;
  scheduler: WatchScheduler;
  hub: FanoutHub;
  connections: ConnectionRegistry;
  /** The command connection when Redis is configured, for readiness checks. */
  redis: Redis | undefined;
  /** True once shutdown began: readiness fails so load balancers stop sending traffic. */
  isShuttingDown(): boolean;
  /** This relay's metrics registry and instruments. */
  metrics: RelayMetrics;
  /** Rate limit for error lines that repeat once per request or subscriber during an outage. */
  logLimiter: RepeatLimiter;
  /** Authentication, generation ownership and per-user limits. */
  security: Security;
}
