/**
 * @runblob-relay/client/react: a React hook over a RelayClient. React is a
 * peer dependency and is never bundled with the SDK.
 */
import { useEffect, useState } from "react";
import { RelayError } from "./client.js";
import type { RelayClient } from "./client.js";
import type { RelayStatus } from "./protocol.js";

export interface GenerationState {
  /** The latest status, or undefined before the first one arrives. */
  status: RelayStatus | undefined;
  /** Percent done from 0 to 100: 0 while pending, 100 once completed, undefined when unknown. */
  progress: number | undefined;
  /** Set when the watch ended without a final status (timeout, not found). */
  error: RelayError | undefined;
}

const EMPTY: GenerationState = { status: undefined, progress: undefined, error: undefined };

export function progressOf(status: RelayStatus): number | undefined {
  if (status.status === "completed") return 100;
  if (status.status === "pending") return 0;
  return status.progress_pct ?? undefined;
}

/** Watches one generation while the component is mounted; pass an undefined id to watch nothing. */
export function useGeneration(client: RelayClient, generationId: string | undefined): GenerationState {
  const [state, setState] = useState<GenerationState>(EMPTY);

  useEffect(() => {
    setState(EMPTY);
    if (generationId === undefined) return undefined;
    return client.watch(generationId, {
      onStatus: (status) => setState({ status, progress: progressOf(status), error: undefined }),
      onTimeout: () =>
        setState((previous) => ({
          ...previous,
          error: new RelayError("timeout", `the relay stopped watching generation ${generationId} before it finished`),
        })),
      onError: (error) => setState((previous) => ({ ...previous, error })),
    });
  }, [client, generationId]);

  return state;
}
