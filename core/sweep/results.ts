/**
 * SWEEP/results.jsonl: one JSON line per finished run, and its aggregation into the sweep table
 * (mean ± sd over seeds for each configuration).
 *
 * Concurrency: each line is appended by one write() of the whole line on a file opened with
 * O_APPEND (Deno.open append). The kernel places every such write at the current end of the
 * file, so lines from two processes never interleave or overwrite each other (the lines are far
 * below the page size; on NFS, where O_APPEND is not atomic, give each machine its own sweep or
 * a local disk). A run's line is written only by the holder of its claim, after it re-read the
 * file under that claim, so no run gets two lines. The reader still skips what a crash could
 * leave: a torn last line (no newline, not JSON) and, defensively, a second line of a run id.
 */
import { join } from "node:path";
import { UsageError } from "../errors.ts";
import type { TrainConfig } from "../config.ts";
import { valueAt } from "./grid.ts";

export const RESULTS_FILE = "results.jsonl";

export interface ResultLine {
  run: string;
  configId: string;
  point: Record<string, unknown>;
  seed: number;
  config: TrainConfig;
  bestEpoch: number;
  epochs: number;
  stopped: string | null;
  /** The best epoch's valid metrics. */
  valid: Record<string, number>;
  test: Record<string, number>;
  seconds: number;
  /** The run this one's parameters started from (sweep --init-from); absent: from scratch. */
  initFrom?: string;
}

export function resultsPath(sweep: string): string {
  return join(sweep, RESULTS_FILE);
}

/** The finished runs, in file order (torn and repeated lines skipped). */
export async function readResults(sweep: string): Promise<ResultLine[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(resultsPath(sweep));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const out: ResultLine[] = [];
  const seen = new Set<string>();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    let r: ResultLine;
    try {
      r = JSON.parse(line);
    } catch {
      continue; // a line torn by a crash mid-write
    }
    if (typeof r?.run !== "string" || seen.has(r.run)) continue;
    seen.add(r.run);
    out.push(r);
  }
  return out;
}

/** Appends one result as a single write of the whole line (see the module comment). */
export async function appendResult(sweep: string, r: ResultLine): Promise<void> {
  const path = resultsPath(sweep);
  let line = JSON.stringify(r) + "\n";
  // A crash mid-write could leave a last line without its newline: start on a fresh line.
  try {
    const st = await Deno.stat(path);
    if (st.size > 0) {
      const f = await Deno.open(path, { read: true });
      try {
        const last = new Uint8Array(1);
        await f.seek(st.size - 1, Deno.SeekMode.Start);
        await f.read(last);
        if (last[0] !== 10) line = "\n" + line;
      } finally {
        f.close();
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const bytes = new TextEncoder().encode(line);
  const f = await Deno.open(path, { append: true, create: true });
  try {
    const n = await f.write(bytes);
    if (n !== bytes.length) throw new Error(`${path}: short append (${n} of ${bytes.length})`);
  } finally {
    f.close();
  }
}

export interface Stat {
  n: number;
  mean: number;
  /** Sample standard deviation (n - 1); NaN for one value. */
  sd: number;
}

export function meanSd(values: number[]): Stat {
  const n = values.length;
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1)) : NaN;
  return { n, mean, sd };
}

export interface TableRow {
  configId: string;
  /** Swept key -> the configuration's value. */
  values: Record<string, unknown>;
  seeds: number[];
  valid: Stat;
  /** Every test metric, mean ± sd over seeds (shown for the best configuration only). */
  test: Record<string, Stat>;
  best: boolean;
}

export interface SweepTable {
  metric: string;
  keys: string[];
  rows: TableRow[];
  best: TableRow | null;
}

/**
 * Groups results by configuration (in `order`, then any others in file order), with the valid
 * `metric` and every test metric as mean ± sd over seeds; the configuration with the highest
 * valid mean is the best one. With `minSeeds`, only configurations with that many seeds contend
 * (a screened sweep: one lucky screening seed does not outrank a three-seed mean), unless none has.
 */
export function aggregate(
  results: ResultLine[],
  keys: string[],
  metric: string,
  order: string[] = [],
  minSeeds = 0,
): SweepTable {
  const groups = new Map<string, ResultLine[]>();
  for (const id of order) groups.set(id, []);
  for (const r of results) {
    if (!groups.has(r.configId)) groups.set(r.configId, []);
    groups.get(r.configId)!.push(r);
  }
  const rows: TableRow[] = [];
  for (const [configId, rs] of groups) {
    if (!rs.length) continue;
    const valid = rs.map((r) => {
      const v = r.valid[metric];
      if (typeof v !== "number") {
        throw new UsageError(
          `run ${r.run} has no valid ${metric} (it has ${Object.keys(r.valid).join(", ")})`,
        );
      }
      return v;
    });
    const testNames = [...new Set(rs.flatMap((r) => Object.keys(r.test)))];
    rows.push({
      configId,
      values: Object.fromEntries(keys.map((k) => [k, valueAt(rs[0].config, k)])),
      seeds: rs.map((r) => r.seed),
      valid: meanSd(valid),
      test: Object.fromEntries(testNames.map((m) => [
        m,
        meanSd(rs.map((r) => r.test[m]).filter((v) => typeof v === "number")),
      ])),
      best: false,
    });
  }
  let best: TableRow | null = null;
  const full = rows.filter((r) => r.valid.n >= minSeeds);
  for (const row of full.length ? full : rows) {
    if (!best || row.valid.mean > best.valid.mean) best = row;
  }
  if (best) best.best = true;
  return { metric, keys, rows, best };
}

function fmt(v: number): string {
  return Number.isFinite(v) ? v.toFixed(4) : "";
}

function show(v: unknown): string {
  return Array.isArray(v) ? v.join("+") : String(v);
}

function pm(s: Stat | undefined): string {
  if (!s || !s.n) return "";
  return Number.isFinite(s.sd) ? `${fmt(s.mean)} ± ${fmt(s.sd)}` : fmt(s.mean);
}

/**
 * Test metric columns of the best row: every metric family at the ranking metric's K
 * (ndcg@10 -> ndcg@10, hit@10, mrr@10, recall@10), the ranking metric first.
 */
function testColumns(t: SweepTable): string[] {
  if (!t.best) return [];
  const k = t.metric.split("@")[1];
  const names = Object.keys(t.best.test).filter((n) => n.split("@")[1] === k).sort();
  return [t.metric, ...names.filter((n) => n !== t.metric)].filter((n) => t.best!.test[n]);
}

/** The table as Markdown: one row per configuration, the best one marked with `*`. */
/**
 * Test columns are filled for the best row only (tuning: the test set judges the configuration
 * the valid metric chose) or, with `allTest`, for every row (ablations, each fixed in advance).
 */
export interface TableOptions {
  allTest?: boolean;
}

export function tableMarkdown(t: SweepTable, opts: TableOptions = {}): string {
  const tests = testColumns(t);
  const head = ["best", ...t.keys, "n", `valid ${t.metric}`, ...tests.map((m) => `test ${m}`)];
  const lines = [
    `| ${head.join(" | ")} |`,
    `| ${head.map((_, i) => i < 1 + t.keys.length ? "---" : "---:").join(" | ")} |`,
  ];
  for (const r of t.rows) {
    const cells = [
      r.best ? "*" : "",
      ...t.keys.map((k) => show(r.values[k])),
      String(r.valid.n),
      pm(r.valid),
      ...tests.map((m) => r.best || opts.allTest ? pm(r.test[m]) : ""),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n") + "\n";
}

function csvCell(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The table as CSV: mean and sd in separate columns; test columns as in tableMarkdown. */
export function tableCsv(t: SweepTable, opts: TableOptions = {}): string {
  const tests = testColumns(t);
  const head = [
    "best",
    ...t.keys,
    "n",
    `valid_${t.metric}_mean`,
    `valid_${t.metric}_sd`,
    ...tests.flatMap((m) => [`test_${m}_mean`, `test_${m}_sd`]),
  ];
  const lines = [head.map(csvCell).join(",")];
  for (const r of t.rows) {
    const cells = [
      r.best ? "1" : "",
      ...t.keys.map((k) => show(r.values[k])),
      String(r.valid.n),
      String(r.valid.mean),
      Number.isFinite(r.valid.sd) ? String(r.valid.sd) : "",
      ...tests.flatMap((m) => {
        const s = r.best || opts.allTest ? r.test[m] : undefined;
        return s ? [String(s.mean), Number.isFinite(s.sd) ? String(s.sd) : ""] : ["", ""];
      }),
    ];
    lines.push(cells.map(csvCell).join(","));
  }
  return lines.join("\n") + "\n";
}
