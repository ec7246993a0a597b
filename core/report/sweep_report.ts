/**
 * The sweep report: one self-contained HTML page with the sweep's table (mean ± sd over seeds
 * for each configuration, the best by the valid metric marked, its test metrics) and one chart
 * per swept key: the valid metric against the key's values, averaged over the other keys'
 * configurations and for the best of them.
 */
import { basename, resolve } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import { readResults } from "../sweep/results.ts";
import { aggregate, type Stat, type SweepTable, type TableRow } from "../sweep/results.ts";
import { bestNeedsSeeds, type SweepManifest } from "../sweep/sweep.ts";
import { openSweep, sweptKeys } from "../sweep/table.ts";
import { type Cell, escapeHtml, formatNumber, page, table } from "./html.ts";
import { lineChart } from "./svg.ts";

export interface SweepReportInput {
  sweep: string;
  manifest: SweepManifest;
  table: SweepTable;
}

function show(v: unknown): string {
  return Array.isArray(v) ? v.join("+") : String(v);
}

function pm(s: Stat | undefined): string | null {
  if (!s || !s.n) return null;
  return Number.isFinite(s.sd)
    ? `${formatNumber(s.mean)} ± ${formatNumber(s.sd)}`
    : formatNumber(s.mean);
}

function resultsTable(t: SweepTable): string {
  const head = ["", ...t.keys, "n", `valid ${t.metric} (mean ± sd)`];
  const rows = t.rows.map((r): Cell[] => [
    r.best ? "best" : "",
    ...t.keys.map((k) => show(r.values[k])),
    r.valid.n,
    pm(r.valid),
  ]);
  return table(head, rows);
}

function bestTable(best: TableRow): string {
  const names = Object.keys(best.test).sort();
  return table(["test metric", "mean ± sd"], names.map((n) => [n, pm(best.test[n])]));
}

/** One chart per swept key: the valid metric over the key's values. */
function keyCharts(t: SweepTable): string[] {
  return t.keys.map((key) => {
    const labels = [...new Set(t.rows.map((r) => show(r.values[key])))];
    const at = (label: string) => t.rows.filter((r) => show(r.values[key]) === label);
    const mean = labels.map((l, i): [number, number] => {
      const rs = at(l);
      return [i, rs.reduce((s, r) => s + r.valid.mean, 0) / rs.length];
    });
    const best = labels.map((l, i): [number, number] => [
      i,
      Math.max(...at(l).map((r) => r.valid.mean)),
    ]);
    return lineChart({
      title: `valid ${t.metric} by ${key}`,
      xLabel: key,
      yLabel: t.metric,
      xLabels: labels,
      series: [
        { name: "mean over configurations", points: mean },
        { name: "best configuration", points: best },
      ],
    });
  });
}

export function renderSweepReport(input: SweepReportInput): string {
  const { manifest: m, table: t } = input;
  const done = t.rows.reduce((s, r) => s + r.valid.n, 0);
  const body: string[] = [
    `<h1>duaf sweep report: ${escapeHtml(input.sweep)}</h1>`,
    `<p class="sub">${m.configs.length} configurations x ${m.seeds.length} seeds ` +
    `(${escapeHtml(m.seeds.join(", "))}) on ${escapeHtml(m.dataset.dir)}; ` +
    `${done} of ${m.runs.length} runs finished${
      m.random ? `; ${m.random.n} configurations drawn with seed ${m.random.seed}` : ""
    }</p>`,
    `<h2>Configurations</h2>`,
    resultsTable(t),
    `<p class="note">Valid ${escapeHtml(t.metric)} at each run's best epoch, mean ± sample sd ` +
    `over seeds; the best configuration by that mean is marked.</p>`,
  ];
  if (t.best) {
    body.push(
      `<h2>Best configuration: test metrics</h2>`,
      `<p class="sub">${
        escapeHtml(t.keys.map((k) => `${k}=${show(t.best!.values[k])}`).join(", "))
      }, n = ${t.best.valid.n}</p>`,
      bestTable(t.best),
    );
  }
  const charts = t.rows.length ? keyCharts(t) : [];
  body.push(
    `<h2>Swept keys</h2>`,
    charts.length
      ? `<div class="charts">\n${charts.join("\n")}\n</div>`
      : `<p class="note">No finished runs yet.</p>`,
  );
  const data = JSON.stringify({ sweep: input.sweep, grid: m.grid, seeds: m.seeds, table: t });
  return page(`duaf sweep report: ${input.sweep}`, body, data);
}

/** Writes the report of sweep `dir` to `out` (atomically); returns what went into it. */
export async function writeSweepReport(dir: string, out: string): Promise<SweepReportInput> {
  const manifest = await openSweep(dir);
  const metric = manifest.base.metric;
  const t = aggregate(
    await readResults(dir),
    sweptKeys(manifest),
    metric,
    manifest.configs.map((c) => c.configId),
    bestNeedsSeeds(manifest),
  );
  const input = { sweep: basename(resolve(dir)), manifest, table: t };
  await writeFileAtomic(out, renderSweepReport(input));
  return input;
}
