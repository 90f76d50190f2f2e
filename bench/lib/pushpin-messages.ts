/**
 * Status events for the Pushpin side of the comparison, byte for byte in the
 * relay's SSE format (src/push/frames.ts) and of the same size as the
 * relay's, so both systems carry the same payload.
 */

const PROMPT = "A simulated generation created through the control API";
const CREATED_AT = "2025-11-24T10:00:00.000000";

/** The relay's status object for a pending generation at `position` in the queue. */
export function statusJson(generationId: string, version: number, updatedAt: Date, position = 1000): string {
  return JSON.stringify({
    generation_id: generationId,
    status: "pending",
    prompt: PROMPT,
    video_url: null,
    created_at: CREATED_AT,
    completed_at: null,
    progress_pct: null,
    progress_pos_in_queue: position,
    error_message: null,
    version,
    updated_at: updatedAt.toISOString(),
  });
}

export function statusEvent(generationId: string, version: number, updatedAt: Date): string {
  return `event: status\nid: ${version}\ndata: ${statusJson(generationId, version, updatedAt)}\n\n`;
}
