/**
 * The video file served for completed simulated generations.
 *
 * TODO: this is only an MP4 `ftyp` box (24 bytes). It satisfies clients that
 * check the content type or the file signature, but no player can play it.
 * Serve a short real H.264 clip once one is added to the repository.
 */
export const PLACEHOLDER_MP4: Buffer = Buffer.from([
  // Box size 24, type "ftyp".
  0x00, 0x00, 0x00, 0x18, 0x66, 0x74, 0x79, 0x70,
  // Major brand "isom", minor version 0x200.
  0x69, 0x73, 0x6f, 0x6d, 0x00, 0x00, 0x02, 0x00,
  // Compatible brands "isom" and "mp41".
  0x69, 0x73, 0x6f, 0x6d, 0x6d, 0x70, 0x34, 0x31,
]);

/** Returns the path at which the simulator serves a generation's video. */
export function videoPath(generationId: string): string {
  return `/videos/${encodeURIComponent(generationId)}.mp4`;
}
