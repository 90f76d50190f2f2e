/**
 * The benchmark runner: `npm run bench -- [--quick] [scenario ...]`.
 *
 * Builds the relay, runs the chosen scenarios one after another (all of them
 * when none is named), saves each result under bench/results/ and rewrites
 * BENCHMARKS.md from every saved result. See BENCHMARKS.md for what each
 * scenario measures.
 *
 * Options:
 *   --quick             sizes that take about a minute per scenario
 *   --relay-root DIR    relay checkout to benchmark (default: this repository); it needs node_modules
 *   --no-build          use the relay's existing dist/ instead of running npm run build
 *   --profile           run relay instances with --cpu-prof (profiles land in the run directory)
 *   --scale F           multiply connection, subscription and generation counts by F (0 < F <= 1),
 *                       to try the suite on a smaller machine; the report names the factor
 *   --output FILE       report path (default: BENCHMARKS.md in this repository)
 *   --report-only       rewrite the report from the saved results without running anything
 *
 * bench/results/previous/ may hold the result files of an earlier run,
 * copied there unchanged; the report then compares each target with it.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { machineInfo } from "./lib/machine.js";
import { killAllNow, stopAll } from "./lib/processes.js";
import { SCENARIO_ORDER, saveResult, writeReport } from "./lib/report.js";
import type { Scenario } from "./lib/scenario.js";
import { buildRelay, type RunContext } from "./lib/stack.js";
import { amplification } from "./scenarios/amplification.js";
import { capacity } from "./scenarios/capacity.js";
import { burst } from "./scenarios/burst.js";
import { idleCost } from "./scenarios/idle-cost.js";
import { pushpin } from "./scenarios/pushpin.js";

const SCENARIOS: Record<(typeof SCENARIO_ORDER)[number], Scenario> = {
  amplification,
  capacity,
  burst,
  "idle-cost": idleCost,
  pushpin,
};

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Names the relay code under test: its commit, and whether the working tree had uncommitted changes. */
function relayVersion(relayRoot: string): string {
  try {
    const commit = execFileSync("git", ["-C", relayRoot, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["-C", relayRoot, "status", "--porcelain", "--", "src"], { encoding: "utf8" }).trim() !== "";
    return `commit ${commit}${dirty ? " plus uncommitted changes in src/" : ""}`;
  } catch {
    return `${relayRoot} (not a git checkout)`;
  }
}

function usage(message: string): never {
  process.stderr.write(`bench: ${message}\nusage: npm run bench -- [--quick] [--profile] [--no-build] [--scale F] [--relay-root DIR] [--output FILE] [--report-only] [${SCENARIO_ORDER.join("|")} ...]\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        quick: { type: "boolean", default: false },
        profile: { type: "boolean", default: false },
        "no-build": { type: "boolean", default: false },
        "relay-root": { type: "string" },
        output: { type: "string" },
        scale: { type: "string", default: "1" },
        "report-only": { type: "boolean", default: false },
      },
    });
  } catch (error) {
    usage((error as Error).message);
  }
  const names = parsed.positionals.length === 0 ? [...SCENARIO_ORDER] : parsed.positionals;
  for (const name of names) {
    if (!(name in SCENARIOS)) usage(`unknown scenario "${name}": expected one of ${SCENARIO_ORDER.join(", ")}`);
  }

  if (parsed.values["report-only"]) {
    const output = resolve(parsed.values.output ?? join(repoRoot, "BENCHMARKS.md"));
    writeReport(output, join(repoRoot, "bench/results"));
    process.stdout.write(`bench: report written to ${output}\n`);
    return;
  }

  const scale = Number(parsed.values.scale);
  if (!(scale > 0 && scale <= 1)) usage(`invalid --scale ${JSON.stringify(parsed.values.scale)}: expected a number above 0 and at most 1`);

  const runDir = mkdtempSync(join(tmpdir(), "runblob-bench-"));
  mkdirSync(join(runDir, "profiles"));
  const context: RunContext = {
    relayRoot: resolve(parsed.values["relay-root"] ?? repoRoot),
    repoRoot,
    runDir,
    quick: parsed.values.quick,
    scale,
    profile: parsed.values.profile,
    commands: new Set(),
  };
  process.stdout.write(`bench: logs and profiles go to ${runDir}\n`);
  const buildWarning = parsed.values["no-build"] ? undefined : buildRelay(context);
  const relay = relayVersion(context.relayRoot);

  const resultsDir = join(repoRoot, "bench/results");
  const output = resolve(parsed.values.output ?? join(repoRoot, "BENCHMARKS.md"));
  let failed = false;

  for (const name of names as Array<keyof typeof SCENARIOS>) {
    const scenario = SCENARIOS[name];
    const machine = machineInfo();
    const startedAt = performance.now();
    context.commands = new Set();
    process.stdout.write(`bench: ${name}: started${context.quick ? " (quick)" : ""}\n`);

    const limitMs = scenario.timeLimitMs(context.quick);
    let timer: NodeJS.Timeout | undefined;
    const timeLimit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`scenario ${name} ran past its time limit of ${limitMs / 1000} s`)), limitMs);
    });
    try {
      const { result, charts } = await Promise.race([scenario.run(context), timeLimit]);
      if (buildWarning !== undefined) result.findings.push(`NOTE: ${buildWarning}.`);
      saveResult(
        resultsDir,
        {
          ...result,
          name,
          quick: context.quick,
          scale: context.scale,
          relay,
          machine,
          durationSeconds: (performance.now() - startedAt) / 1000,
          commands: [...context.commands],
        },
        charts,
      );
      writeReport(output, resultsDir);
      process.stdout.write(`bench: ${name}: done in ${Math.round((performance.now() - startedAt) / 1000)} s\n`);
    } catch (error) {
      failed = true;
      process.stderr.write(`bench: ${name} failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    } finally {
      clearTimeout(timer);
      await stopAll();
    }
  }

  process.stdout.write(`bench: report written to ${output}\n`);
  process.exit(failed ? 1 : 0);
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    process.stderr.write(`bench: ${signal} received, stopping every process this run started\n`);
    void stopAll().finally(() => process.exit(130));
  });
}
process.on("exit", killAllNow);

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  killAllNow();
  process.exit(1);
});
