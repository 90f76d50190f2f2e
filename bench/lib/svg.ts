/**
 * Horizontal grouped bar charts as standalone SVG, written by hand so the
 * benchmark needs no plotting dependency.
 */

export interface BarGroup {
  label: string;
  bars: Array<{ series: string; value: number }>;
}

export interface BarChart {
  title: string;
  /** Axis caption, with the unit, e.g. "ms". */
  axis: string;
  groups: BarGroup[];
  /** Logarithmic axis for values that span several orders of magnitude; values must be positive. */
  log?: boolean;
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
const LABEL_WIDTH = 330;
const PLOT_WIDTH = 460;
const BAR_HEIGHT = 14;
const GROUP_GAP = 10;

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function formatValue(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  if (Number.isInteger(value) || Math.abs(value) >= 100) return String(Math.round(value));
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** Renders the chart; series colours follow the order in which series names first appear. */
export function renderBarChart(chart: BarChart): string {
  const series = [...new Set(chart.groups.flatMap((group) => group.bars.map((bar) => bar.series)))];
  const values = chart.groups.flatMap((group) => group.bars.map((bar) => bar.value)).filter(Number.isFinite);
  const maxValue = Math.max(...values, chart.log ? 10 : 1);
  const minLog = 0.1;
  const scale = (value: number) => {
    if (!Number.isFinite(value) || value <= 0) return 0;
    if (!chart.log) return (value / maxValue) * PLOT_WIDTH;
    const top = Math.log10(maxValue) - Math.log10(minLog);
    return (Math.max(0, Math.log10(value) - Math.log10(minLog)) / top) * PLOT_WIDTH;
  };

  /** Axis ticks: powers of ten on a log axis, quarters of the maximum on a linear one. */
  const ticks: number[] = [];
  if (chart.log) {
    for (let tick = 1; tick <= maxValue * 1.0001; tick *= 10) ticks.push(tick);
  } else {
    for (let i = 0; i <= 4; i += 1) ticks.push((maxValue * i) / 4);
  }

  const legendHeight = 20;
  let y = 40 + legendHeight;
  const parts: string[] = [];
  for (const group of chart.groups) {
    const groupHeight = group.bars.length * BAR_HEIGHT;
    parts.push(
      `<text x="${LABEL_WIDTH - 8}" y="${y + groupHeight / 2 + 4}" text-anchor="end" font-size="12">${escapeXml(group.label)}</text>`,
    );
    for (const bar of group.bars) {
      const width = scale(bar.value);
      const color = PALETTE[series.indexOf(bar.series) % PALETTE.length];
      parts.push(`<rect x="${LABEL_WIDTH}" y="${y}" width="${width.toFixed(1)}" height="${BAR_HEIGHT - 2}" fill="${color}"/>`);
      parts.push(
        `<text x="${LABEL_WIDTH + width + 4}" y="${y + BAR_HEIGHT - 4}" font-size="10">${escapeXml(formatValue(bar.value))}</text>`,
      );
      y += BAR_HEIGHT;
    }
    y += GROUP_GAP;
  }

  const legend = series
    .map((name, i) => {
      const x = LABEL_WIDTH + i * 150;
      return (
        `<rect x="${x}" y="32" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/>` +
        `<text x="${x + 14}" y="41" font-size="11">${escapeXml(name)}</text>`
      );
    })
    .join("");
  const tickMarks = ticks
    .map((tick) => {
      const x = LABEL_WIDTH + scale(tick);
      return (
        `<line x1="${x.toFixed(1)}" y1="${40 + legendHeight - 4}" x2="${x.toFixed(1)}" y2="${y}" stroke="#ddd"/>` +
        `<text x="${x.toFixed(1)}" y="${y + 12}" text-anchor="middle" font-size="10">${escapeXml(formatValue(tick))}</text>`
      );
    })
    .join("");
  const height = y + 42;
  const width = LABEL_WIDTH + PLOT_WIDTH + 80;
  const axisCaption = `${chart.axis}${chart.log ? " (log scale)" : ""}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${escapeXml(chart.title)}</text>`,
    legend,
    tickMarks,
    `<line x1="${LABEL_WIDTH}" y1="${40 + legendHeight - 4}" x2="${LABEL_WIDTH}" y2="${y}" stroke="#444"/>`,
    ...parts,
    `<text x="${LABEL_WIDTH + PLOT_WIDTH / 2}" y="${y + 30}" text-anchor="middle" font-size="11">${escapeXml(axisCaption)}</text>`,
    `</svg>`,
    "",
  ].join("\n");
}
