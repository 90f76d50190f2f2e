/**
 * Scenario results: saved as JSON under bench/results/, one file per
 * scenario, and rendered together into BENCHMARKS.md. A scenario run alone
 * replaces only its own file, so the page always shows the latest run of each.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describeMachine, type MachineInfo } from "./machine.js";
import { BENCH_UPSTREAM_MAX_RPS } from "./stack.js";
import { renderBarChart, type BarChart } from "./svg.js";

export interface Table {
  title: string;
  columns: string[];
  rows: Array<Array<string | number>>;
}

export interface TargetCheck {
  what: string;
  target: string;
  measured: string;
  met: boolean;
}

export interface ScenarioResult {
  name: string;
  title: string;
  quick: boolean;
  /** The --scale factor of the run; 1 is the documented size. */
  scale: number;
  /** The relay code under test, e.g. "commit abc1234". */
  relay: string;
  machine: MachineInfo;
  durationSeconds: number;
  /** Markdown paragraphs: what is measured and how. */
  method: string[];
  tables: Table[];
  targets: TargetCheck[];
  /** Markdown paragraphs: limits hit, profiles, explanations. */
  findings: string[];
  commands: string[];
  /** Chart file names under bench/results/. */
  charts: string[];
}

export const SCENARIO_ORDER = ["amplification", "capacity", "burst", "idle-cost", "pushpin"] as const;

export function saveResult(resultsDir: string, result: ScenarioResult, charts: Record<string, BarChart>): void {
  mkdirSync(resultsDir, { recursive: true });
  for (const [file, chart] of Object.entries(charts)) writeFileSync(join(resultsDir, file), renderBarChart(chart));
  writeFileSync(join(resultsDir, `${result.name}.json`), `${JSON.stringify(result, null, 2)}\n`);
}

function loadResults(resultsDir: string): ScenarioResult[] {
  const results: ScenarioResult[] = [];
  for (const name of SCENARIO_ORDER) {
    const file = join(resultsDir, `${name}.json`);
    if (existsSync(file)) results.push(JSON.parse(readFileSync(file, "utf8")) as ScenarioResult);
  }
  return results;
}

function cell(value: string | number): string {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return "n/a";
    return Number.isInteger(value) ? value.toLocaleString("en-US") : value.toFixed(2);
  }
  return value.replace(/\|/g, "\\|");
}

function renderTable(table: Table): string {
  const lines = [`**${table.title}**`, "", `| ${table.columns.join(" | ")} |`, `| ${table.columns.map(() => "---").join(" | ")} |`];
  for (const row of table.rows) lines.push(`| ${row.map(cell).join(" | ")} |`);
  return lines.join("\n");
}

function renderScenario(result: ScenarioResult): string {
  const parts = [
    `## ${result.title}`,
    "",
    `Run: \`npm run bench -- ${result.name}${result.quick ? " --quick" : ""}\` (${result.quick ? "quick size" : "full size"}${result.scale === 1 ? "" : `, counts scaled by ${result.scale}`}, ${Math.round(result.durationSeconds)} s). Relay: ${result.relay}. Machine: ${describeMachine(result.machine)}.`,
    "",
    ...result.method.flatMap((paragraph) => [paragraph, ""]),
  ];
  for (const table of result.tables) parts.push(renderTable(table), "");
  if (result.targets.length > 0) {
    parts.push(
      renderTable({
        title: "Targets",
        columns: ["what", "target", "measured", "met"],
        rows: result.targets.map((check) => [check.what, check.target, check.measured, check.met ? "yes" : "**no**"]),
      }),
      "",
    );
  }
  for (const chart of result.charts) parts.push(`![${result.title}](bench/results/${chart})`, "");
  for (const finding of result.findings) parts.push(finding, "");
  parts.push("<details><summary>Commands of this run</summary>", "", "```sh", ...result.commands, "```", "", "</details>", "");
  return parts.join("\n");
}

/**
 * Renders the targets of this run next to those of an earlier run, whose
 * result files sit in `previousDir` (copied there unchanged from an earlier
 * bench/results/). Returns no lines when there is no earlier run.
 */
function renderComparison(results: ScenarioResult[], previousDir: string): string[] {
  const previous = new Map(loadResults(previousDir).map((result) => [result.name, result]));
  const rows: Array<Array<string | number>> = [];
  for (const result of results) {
    const before = previous.get(result.name);
    if (before === undefined) continue;
    for (const check of result.targets) {
      const earlier = before.targets.find((candidate) => candidate.what === check.what);
      rows.push([result.title, check.what, check.target, earlier?.measured ?? "n/a", check.measured, check.met ? "yes" : "**no**"]);
    }
  }
  if (rows.length === 0) return [];
  const runs = [...previous.values()].map((result) => `${result.relay}, ${result.quick ? "quick" : "full"} run`);
  return [
    "## Before and after",
    "",
    "Each target of this run next to the same target in an earlier run of this script, whose result files are kept",
    `in bench/results/previous/ (${[...new Set(runs)].join("; ")}). Quick and full runs differ in window length and`,
    "in how far the load is raised, so compare them by order of magnitude.",
    "",
    renderTable({ title: "Targets, earlier run and this run", columns: ["scenario", "what", "target", "earlier", "now", "met now"], rows }),
    "",
  ];
}

/** Writes BENCHMARKS.md from every saved scenario result. */
export function writeReport(path: string, resultsDir: string): void {
  const results = loadResults(resultsDir);
  const quick = results.some((result) => result.quick);
  const header = [
    "# Benchmarks",
    "",
    "Written by `npm run bench` (bench/run.ts) from the results in bench/results/. Every number comes from",
    "the run named in its section, on the machine described there; other work on that machine (see the",
    "load average) adds noise. The relay, the simulator, redis-server, Pushpin and the load generators",
    "each run in their own processes on 127.0.0.1.",
    "",
    "Every relay instance runs from `dist/main.js` with `NODE_ENV=production`, `LOG_LEVEL=warn`, `AUTH_MODE=none` and",
    `\`RATE_LIMIT_PER_IP=0\` (all benchmark clients share one loopback address), and with \`UPSTREAM_MAX_RPS=${BENCH_UPSTREAM_MAX_RPS}\` in`,
    "place of the default 50, which stands in for Runblob's rate limit and would let one instance poll only about 225",
    "generations every 5 s. Other settings are the defaults unless a scenario names them.",
    "",
    quick
      ? "**Quick run** (`--quick`): measurement windows are short (tens of seconds), so percentiles rest on\nfewer samples than a full run, and the load is not raised to find limits beyond one step."
      : "Full run.",
    "",
    "Run everything with `npm run bench`, one scenario with `npm run bench -- <name>` (names: " +
      SCENARIO_ORDER.join(", ") +
      "), and add `--quick` for about a minute per scenario.",
    "",
  ];
  const body = results.map(renderScenario);
  const comparison = renderComparison(results, join(resultsDir, "previous"));
  writeFileSync(path, `${[...header, ...comparison, ...body].join("\n").trimEnd()}\n`);
}
