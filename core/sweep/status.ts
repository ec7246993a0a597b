/**
 * Where a sweep stands, read from its directory alone (manifest, results.jsonl, run manifests,
 * locks), so another shell, or another machine sharing the directory, can watch the processes
 * working on it without touching them: nothing is claimed, reclaimed or written.
 */
import { join } from "node:path";
import { exists } from "../io/atomic.ts";
import { readRunManifest, type RunManifest } from "../train/run_dir.ts";
import { Claims } from "./claims.ts";
import { readResults } from "./results.ts";
import { bestValid, formatEta, type SweepManifest } from "./sweep.ts";
import { openSweep } from "./table.ts";

/**
 * - done: in results.jsonl;
 * - running: a live process holds its lock;
 * - stopped: trained part-way, with a checkpoint the next process to claim it resumes from, and
 *   no live holder (the process that held it was killed, or its lock is stale);
 * - pending: not started.
 */
export type RunState = "done" | "running" | "stopped" | "pending";

export interface RunStatus {
  run: string;
  configId: string;
  seed: number;
  point: Record<string, unknown>;
  state: RunState;
  /** Epochs finished (its result's, or the run manifest's history so far). */
  epochs: number;
  bestEpoch: number | null;
  /** The best epoch's valid value of the sweep's metric, so far for unfinished runs. */
  bestValid: number | null;
  /** Training and validation seconds spent (its result's, or the run manifest's so far). */
  seconds: number;
  /** The process holding the run's lock (running), or the one whose stale lock is left. */
  holder: { host: string; pid: number; since: string } | null;
}

export interface SweepStatus {
  sweep: string;
  metric: string;
  runs: RunStatus[];
  counts: Record<RunState, number>;
  /** Runs a screening (--top) will add once it completes; 0 without --top or once added. */
  toPromote: number;
  /** Mean seconds of the finished runs, the ETA's unit (null before the first). */
  meanRunSeconds: number | null;
  /** Distinct live processes holding runs now. */
  workers: number;
  /**
   * Seconds until every run is done, were each left run as long as the finished runs' mean and
   * the live workers (at least one) to split them: an estimate, null before a run finishes.
   */
  etaSeconds: number | null;
}

async function runManifestOf(dir: string): Promise<RunManifest | null> {
  try {
    return await readRunManifest(dir);
  } catch {
    return null; // not started, or its directory is being replaced
  }
}

/**
 * How many runs screening will still promote: its k best configurations under the other seeds,
 * until they join the manifest (promotedRuns, once every screening run has its line).
 */
function promotionsLeft(m: SweepManifest): number {
  if (!m.top) return 0;
  const screen = new Set(m.top.screenSeeds);
  if (m.runs.some((r) => !screen.has(r.seed))) return 0; // already promoted
  const k = Math.min(m.top.k, m.configs.length);
  return k * m.seeds.filter((s) => !screen.has(s)).length;
}

export async function sweepStatus(dir: string, staleMs?: number): Promise<SweepStatus> {
  const m = await openSweep(dir);
  const metric = m.base.metric;
  const results = await readResults(dir);
  const byRun = new Map(results.map((r) => [r.run, r]));
  const points = new Map(m.configs.map((c) => [c.configId, c.point]));
  const claims = new Claims(join(dir, "locks"), { staleMs });
  const runs: RunStatus[] = [];
  for (const planned of m.runs) {
    const base = {
      run: planned.id,
      configId: planned.configId,
      seed: planned.seed,
      point: points.get(planned.configId) ?? {},
    };
    const result = byRun.get(planned.id);
    if (result) {
      runs.push({
        ...base,
        state: "done",
        epochs: result.epochs,
        bestEpoch: result.bestEpoch,
        bestValid: result.valid[metric] ?? null,
        seconds: result.seconds,
        holder: null,
      });
      continue;
    }
    const lock = claims.read(planned.id);
    const live = lock !== null && !claims.isStale(planned.id, lock);
    const holder = lock !== null && lock !== "torn"
      ? { host: lock.host, pid: lock.pid, since: lock.at }
      : null;
    const runDir = join(dir, "runs", planned.id);
    const rm = await runManifestOf(runDir);
    const epochs = rm?.history.length ?? 0;
    const valid = rm ? bestValid(rm)[metric] : undefined;
    const started = rm !== null && await exists(join(runDir, "state.safetensors"));
    runs.push({
      ...base,
      state: live ? "running" : started ? "stopped" : "pending",
      epochs,
      bestEpoch: epochs ? rm!.bestEpoch : null,
      bestValid: valid ?? null,
      seconds: rm ? rm.seconds : 0,
      holder: live || started ? holder : null,
    });
  }
  const counts: Record<RunState, number> = { done: 0, running: 0, stopped: 0, pending: 0 };
  for (const r of runs) counts[r.state]++;
  const finished = runs.filter((r) => r.state === "done" && r.seconds > 0);
  const meanRunSeconds = finished.length
    ? finished.reduce((a, r) => a + r.seconds, 0) / finished.length
    : null;
  const toPromote = promotionsLeft(m);
  const workers = new Set(
    runs.filter((r) => r.state === "running" && r.holder).map((r) =>
      `${r.holder!.host}:${r.holder!.pid}`
    ),
  ).size;
  let etaSeconds: number | null = null;
  if (meanRunSeconds !== null) {
    let work = (counts.pending + toPromote) * meanRunSeconds;
    for (const r of runs) {
      if (r.state === "running" || r.state === "stopped") {
        work += Math.max(0, meanRunSeconds - r.seconds);
      }
    }
    etaSeconds = work / Math.max(1, workers);
  }
  return { sweep: dir, metric, runs, counts, toPromote, meanRunSeconds, workers, etaSeconds };
}

function cell(v: number | null, digits: number): string {
  return v === null ? "" : v.toFixed(digits);
}

/** The ETA with processes at work; with none, the work left in one process's time. */
function eta(s: SweepStatus): string {
  if (s.etaSeconds === null || s.etaSeconds === 0) return "";
  if (s.workers) return `; ETA ${formatEta(s.etaSeconds)}`;
  return `; ${formatEta(s.etaSeconds)} of one process's time left, no process working on it`;
}

/** One summary line, then a Markdown table of the runs in manifest order. */
export function statusMarkdown(s: SweepStatus): string {
  const c = s.counts;
  const total = s.runs.length + s.toPromote;
  const head = `${s.sweep}: ${c.done} of ${total} runs done, ${c.running} running` +
    ` (${s.workers} ${s.workers === 1 ? "process" : "processes"}), ${c.stopped} stopped` +
    ` part-way, ${c.pending} not started` +
    (s.toPromote
      ? `, ${s.toPromote} more once screening completes (${s.runs.length - c.done} screening ` +
        `${s.runs.length - c.done === 1 ? "run" : "runs"} to go)`
      : "") +
    eta(s) +
    (s.meanRunSeconds !== null ? ` (a run takes ${formatEta(s.meanRunSeconds)} on average)` : "");
  const lines = [
    head,
    "",
    `| run | state | epochs | best epoch | valid ${s.metric} | seconds | process |`,
    "|---|---|---|---|---|---|---|",
  ];
  for (const r of s.runs) {
    const who = r.holder ? `${r.holder.pid}@${r.holder.host} since ${r.holder.since}` : "";
    lines.push(
      `| ${r.run} | ${r.state} | ${r.epochs} | ${r.bestEpoch ?? ""} | ${cell(r.bestValid, 4)} | ` +
        `${r.state === "pending" ? "" : cell(r.seconds, 0)} | ${who} |`,
    );
  }
  return lines.join("\n");
}
