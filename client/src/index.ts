/**
 * @runblob-relay/client: watch Runblob Sora generations through a
 * runblob-relay over WebSocket or Server-Sent Events.
 */
export { createRelayClient, isFinalStatus, RelayError } from "./client.js";
export type { ConnectionState, RelayClient, RelayClientOptions, TransportChoice, WatchHandlers } from "./client.js";
export type { BackoffOptions } from "./backoff.js";
export type { EventSourceConstructor, EventSourceLike, WebSocketConstructor, WebSocketLike } from "./connection.js";
export type { ErrorCode, GenerateRequest, GenerateResponse, RelayStatus, ServerMessage } from "./protocol.js";
