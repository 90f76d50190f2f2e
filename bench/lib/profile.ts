/**
 * Reads V8 CPU profiles written by `node --cpu-prof` and lists the functions
 * with the most self time, for the report's findings.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
}

export interface HotFunction {
  name: string;
  /** Share of all samples, in percent. */
  selfPercent: number;
}

/** Profiles in `dir` written after `sinceMs` (ms since the epoch), newest last. */
export function profilesSince(dir: string, sinceMs: number): string[] {
  try {
    return readdirSync(dir)
      .filter((file) => file.endsWith(".cpuprofile"))
      .map((file) => join(dir, file))
      .filter((file) => statSync(file).mtimeMs >= sinceMs)
      .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs);
  } catch {
    return [];
  }
}

/** Sums self samples by function and source location; idle and GC are listed like functions. */
export function hotFunctions(file: string, limit = 12): HotFunction[] {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const selfSamples = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url === "" ? "" : ` (${basename(url)}:${lineNumber + 1})`;
    const key = `${functionName === "" ? "(anonymous)" : functionName}${where}`;
    selfSamples.set(key, (selfSamples.get(key) ?? 0) + hits);
    total += hits;
  }
  return [...selfSamples.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([name, hits]) => ({ name, selfPercent: (100 * hits) / Math.max(1, total) }));
}
