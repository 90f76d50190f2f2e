/**
 * The video file served for completed simulated generations: a 3-second
 * 320x180 H.264 clip (Constrained Baseline, 15 fps, no audio, `faststart`),
 * 29 KB, made once with ffmpeg's testsrc2 pattern:
 *
 *   ffmpeg -f lavfi -i "testsrc2=size=320x180:rate=15:duration=3" \
 *     -vf "drawtext=text='runblob-relay simulator':x=(w-tw)/2:y=h-th-8:fontcolor=white:fontsize=14:box=1:boxcolor=black@0.6" \
 *     -c:v libx264 -profile:v baseline -level 3.0 -pix_fmt yuv420p -preset veryslow -crf 32 -movflags +faststart -an sample.mp4
 */
import { readFileSync } from "node:fs";

/** The clip sits next to this file in src/, and two folders up from dist/simulator/ after a build. */
const SAMPLE_LOCATIONS = [
  new URL("./assets/sample.mp4", import.meta.url),
  new URL("../../src/simulator/assets/sample.mp4", import.meta.url),
];

/** An MP4 `ftyp` box alone (24 bytes): the right signature and content type, but no player can play it. */
const SIGNATURE_ONLY_MP4 = Buffer.from([
  // Box size 24, type "ftyp".
  0x00, 0x00, 0x00, 0x18, 0x66, 0x74, 0x79, 0x70,
  // Major brand "isom", minor version 0x200.
  0x69, 0x73, 0x6f, 0x6d, 0x00, 0x00, 0x02, 0x00,
  // Compatible brands "isom" and "mp41".
  0x69, 0x73, 0x6f, 0x6d, 0x6d, 0x70, 0x34, 0x31,
]);

function readSample(): Buffer {
  for (const location of SAMPLE_LOCATIONS) {
    try {
      return readFileSync(location);
    } catch {
      // Try the next location.
    }
  }
  // NOTE: an install without src/ (the container image copies only dist/) serves this unplayable stub.
  return SIGNATURE_ONLY_MP4;
}

/** The video of every completed simulated generation: the sample clip, or the 24-byte stub when the clip is missing. */
export const PLACEHOLDER_MP4: Buffer = readSample();

/** Returns the path at which the simulator serves a generation's video. */
export function videoPath(generationId: string): string {
  return `/videos/${encodeURIComponent(generationId)}.mp4`;
}
