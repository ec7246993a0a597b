/**
 * `runSweep`: trains every configuration of a grid under every seed into one sweep directory:
 *
 *   SWEEP/manifest.json    {"format": "duaf-sweep"}: grid, seeds, dataset path + hash, the
 *                          base config, the expanded configurations (swept values) and runs
 *   SWEEP/results.jsonl    one line per finished run (core/sweep/results.ts)
 *   SWEEP/runs/<id>/       ordinary duaf run directories (duaf eval/report/export work on them)
 *   SWEEP/locks/<id>.lock  claims of runs in progress (core/sweep/claims.ts)
 *
 * A sweep is resumable and can be shared: every process walks the run list, skips runs with a
 * results line, claims the next free run with an exclusive lock file, trains it (resuming from
 * its checkpoint when an earlier process was killed mid-run, recording it from its manifest when
 * it finished but has no line yet), appends its line and releases the claim. A process whose
 * remaining runs are all claimed by live processes waits for them, so each process ends with
 * the complete results. Each run is exactly what `duaf train` with the same config writes.
 */
import { join, resolve } from "node:path";
import { z } from "zod";
import { type TrainConfig, TrainConfigSchema } from "../config.ts";
import { DataError, UsageError } from "../errors.ts";
import { exists, writeFileAtomic } from "../io/atomic.ts";
import { checkOutputDir, type DirArtifact } from "../io/output_guard.ts";
import { type Progress, silentProgress } from "../progress.ts";
import {
  type DatasetIdentity,
  datasetIdentity,
  type DatasetRecord,
  datasetRecord,
  DatasetRecordSchema,
  sameDataset,
} from "../data/identity.ts";
import { runTraining } from "../train/run.ts";
import { readRunManifest, type RunManifest } from "../train/run_dir.ts";
import type { EpochRecord } from "../train/trainer.ts";
import { VERSION } from "../version.ts";
import { Claims } from "./claims.ts";
import {
  configFor,
  configId,
  expandGrid,
  type Grid,
  type PlannedConfig,
  type PlannedRun,
  planRuns,
  runId,
  sampleGrid,
} from "./grid.ts";
import { aggregate, appendResult, readResults, type ResultLine, RESULTS_FILE } from "./results.ts";
import { Rng } from "../random.ts";

export const SWEEP_FORMAT = "duaf-sweep";
export const SWEEP_VERSION = 1;

export interface SweepManifest {
  format: typeof SWEEP_FORMAT;
  version: typeof SWEEP_VERSION;
  duaf: string;
  dataset: DatasetRecord;
  /** The grid as last given (file name and its keys' value lists). */
  grid: { file: string; keys: Record<string, unknown[]> };
  /** `--random N` draws: N and the sampling seed; null for the full grid. */
  random: { n: number; seed: number } | null;
  seeds: number[];
  /** The config the grid's values apply over (defaults, --config, --set). */
  base: TrainConfig;
  /** Each configuration: its id and swept values (its config is `base` with those values). */
  configs: { configId: string; point: Record<string, unknown> }[];
  runs: PlannedRun[];
  /** `--init-from`: where every run's parameters start (absent: from scratch). */
  initFrom?: SweepInitFrom | null;
  /** `--top K`: the screening seeds run everywhere, the others on the best K only. */
  top?: SweepTop | null;
}

/**
 * Screening (`--top K --screen-seeds N`): every configuration runs under the first N seeds; the
 * K configurations with the best mean valid metric over them then run under the other seeds too.
 * Promoted runs join the manifest when the screening is complete and are never removed.
 */
export interface SweepTop {
  k: number;
  /** The screening seeds (the first N of --seeds). */
  screenSeeds: number[];
}

/**
 * `--init-from PATH`: a run directory every run starts from, or a sweep directory of one
 * configuration whose run of the same seed each run starts from (pre-training seeds paired with
 * fine-tuning seeds).
 */
export interface SweepInitFrom {
  path: string;
  kind: "run" | "sweep";
}

const SweepManifestSchema = z.object({
  format: z.literal(SWEEP_FORMAT),
  version: z.literal(SWEEP_VERSION),
  duaf: z.string(),
  dataset: DatasetRecordSchema,
  grid: z.object({ file: z.string(), keys: z.record(z.string(), z.array(z.any())) }),
  random: z.object({ n: z.number(), seed: z.number() }).nullable(),
  seeds: z.array(z.number()),
  base: TrainConfigSchema,
  configs: z.array(z.object({ configId: z.string(), point: z.record(z.string(), z.any()) })),
  runs: z.array(z.object({ id: z.string(), configId: z.string(), seed: z.number() })),
  initFrom: z.object({ path: z.string(), kind: z.enum(["run", "sweep"]) }).nullable().optional(),
  top: z.object({ k: z.number(), screenSeeds: z.array(z.number()) }).nullable().optional(),
});

export function sweepManifestPath(dir: string): string {
  return join(dir, "manifest.json");
}

/** Reads SWEEP/manifest.json; null when `dir` has no manifest of the sweep format. */
export async function readSweepManifest(dir: string): Promise<SweepManifest | null> {
  const path = sweepManifestPath(dir);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if ((raw as { format?: unknown })?.format !== SWEEP_FORMAT) return null;
  const parsed = SweepManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DataError(path, null, issue.path.join("."), issue.message);
  }
  return parsed.data as unknown as SweepManifest;
}

/** A sweep directory as the output guard sees it: the entries a sweep writes. */
export const SWEEP_ARTIFACT: DirArtifact = {
  format: SWEEP_FORMAT,
  label: "sweep",
  entries: ["manifest.json", RESULTS_FILE, "runs", "locks"],
};

/**
 * A sweep another process is starting: its runs/ and locks/ folders made, its manifest not yet
 * written. Joining it is what a second process started at the same moment means to do.
 */
async function beingStarted(path: string): Promise<boolean> {
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir(path)) names.push(e.name);
    return names.length > 0 && names.every((n) => n === "runs" || n === "locks");
  } catch {
    return false;
  }
}

/**
 * Whether `--out` may hold this sweep (output_guard.ts): absent, empty, or a sweep directory with
 * nothing else in it; anything else only with --force, which removes it.
 */
export async function checkSweepOut(path: string, force: boolean): Promise<void> {
  if (!force && await beingStarted(path)) return;
  const state = await checkOutputDir(path, SWEEP_ARTIFACT, { force });
  if (state === "forced") await Deno.remove(path, { recursive: true });
}

export interface SweepOptions {
  dataset: string;
  out: string;
  /** The grid file's name (for errors and the manifest) and its parsed grid. */
  gridFile: string;
  grid: Grid;
  /** Defaults + --config + --set: what the grid's values are applied over. */
  base: TrainConfig;
  seeds: number[];
  /** Sample `n` configurations with Rng(seed) instead of the whole grid. */
  random?: { n: number; seed: number } | null;
  /** Replace an --out that is not a sweep, or a sweep made with another dataset or grid. */
  force?: boolean;
  /** Mid-epoch checkpoints of each run (train's --checkpoint-every; 0: epoch ends only). */
  checkpointSeconds?: number;
  backendName: string;
  progress?: Progress;
  shouldStop?: () => boolean;
  /** A lock from another host whose mtime is older than this is stale (ms). */
  staleMs?: number;
  /** How often a process whose remaining runs are all claimed looks again (ms). */
  pollMs?: number;
  /**
   * Return once every remaining run is claimed by another live process, instead of waiting to
   * take over a run whose process dies (for queues of sweeps: the next one can start).
   */
  noWait?: boolean;
  /** Start every run from pre-trained parameters (train's --init-from); see SweepInitFrom. */
  initFrom?: string | null;
  /** Screen with the first `screenSeeds` seeds, then run the others on the best `k` (SweepTop). */
  top?: { k: number; screenSeeds: number } | null;
}

export interface SweepSummary {
  sweep: string;
  configs: number;
  runs: number;
  done: number;
  left: number;
  /** Runs this process trained from the start, resumed from a checkpoint, or only recorded. */
  trained: number;
  resumed: number;
  recorded: number;
  interrupted: boolean;
  seconds: number;
  /** The best configuration so far by the mean valid metric over its finished seeds. */
  best: {
    configId: string;
    values: Record<string, unknown>;
    n: number;
    metric: string;
    valid: number;
  } | null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Builds this invocation's plan: validated configurations and runs. */
export function sweepPlan(opts: SweepOptions): { configs: PlannedConfig[]; runs: PlannedRun[] } {
  if (!opts.seeds.length) throw new UsageError("--seeds: at least one seed");
  const points = opts.random
    ? sampleGrid(opts.grid, opts.random.n, new Rng(opts.random.seed))
    : expandGrid(opts.grid);
  return planRuns(opts.base, points, screeningSeeds(opts), opts.gridFile);
}

/**
 * How many seeds a configuration needs to be the sweep's best: every seed in a screened sweep
 * (aggregate's minSeeds), none otherwise.
 */
export function bestNeedsSeeds(m: SweepManifest): number {
  return m.top ? m.seeds.length : 0;
}

/** The seeds every configuration runs under: all of them, or the screening ones with --top. */
function screeningSeeds(opts: SweepOptions): number[] {
  if (!opts.top) return opts.seeds;
  const { k, screenSeeds } = opts.top;
  if (!(k >= 1)) throw new UsageError("--top: expected at least 1 configuration");
  if (!(screenSeeds >= 1 && screenSeeds < opts.seeds.length)) {
    throw new UsageError(
      `--screen-seeds: expected 1 to ${opts.seeds.length - 1} (fewer than --seeds' ` +
        `${opts.seeds.length}, which the best --top configurations run under)`,
    );
  }
  return opts.seeds.slice(0, screenSeeds);
}

/**
 * The runs screening promotes: once every configuration has a result for every screening seed,
 * the `k` best by mean valid metric (ties: manifest order) under each other seed, less the runs
 * the manifest already has. Empty while the screening is incomplete.
 */
export function promotedRuns(m: SweepManifest, results: ResultLine[]): PlannedRun[] {
  if (!m.top) return [];
  const screen = new Set(m.top.screenSeeds);
  const metric = m.base.metric;
  const scores = new Map<string, number[]>();
  for (const r of results) {
    if (!screen.has(r.seed)) continue;
    const v = r.valid[metric];
    if (typeof v === "number") scores.set(r.configId, [...scores.get(r.configId) ?? [], v]);
  }
  if (m.configs.some((c) => (scores.get(c.configId)?.length ?? 0) < screen.size)) return [];
  const mean = (id: string) => scores.get(id)!.reduce((a, b) => a + b, 0) / screen.size;
  const ranked = m.configs.map((c, i) => ({ c, i, v: mean(c.configId) }))
    .sort((a, b) => b.v - a.v || a.i - b.i)
    .slice(0, m.top.k);
  const configs = plannedConfigs(m, "manifest.json");
  const have = new Set(m.runs.map((r) => r.id));
  const out: PlannedRun[] = [];
  for (const { c } of ranked) {
    const planned = configs.get(c.configId)!;
    for (const seed of m.seeds) {
      if (screen.has(seed)) continue;
      const id = runId(planned.config, c.point, seed);
      if (!have.has(id)) out.push({ id, configId: c.configId, seed });
    }
  }
  return out;
}

/**
 * Merges this plan into an existing sweep's manifest. The dataset must be the same artifact and
 * the plan must contain every run the sweep already has (a grid may only add values, keys whose
 * default stays in the grid, or seeds); else the sweep is refused, or replaced with `force`.
 */
function mergeManifest(
  old: SweepManifest | null,
  next: SweepManifest,
  out: string,
): SweepManifest | string {
  if (!old) return next;
  const was = old.initFrom?.path ?? null, now = next.initFrom?.path ?? null;
  if (was !== now) {
    return `${out}: sweep was made ${was ? `with --init-from ${was}` : "without --init-from"}; ` +
      `use another --out, or --force to replace it`;
  }
  if (!sameDataset(old.dataset, next.dataset)) {
    return `${out}: sweep was made on another dataset (${old.dataset.dir}); ` +
      `use another --out, or --force to replace it`;
  }
  const screen = (m: SweepManifest) => m.top ? m.top.screenSeeds.join(",") : null;
  if (screen(old) !== screen(next)) {
    return `${out}: sweep was made ${
      old.top ? `with --top, screening seeds ${screen(old)}` : "without --top"
    }; use another --out, or --force to replace it`;
  }
  const ids = new Set(next.runs.map((r) => r.id));
  // Runs a screening promoted are the sweep's own, not the plan's.
  const planned = (r: PlannedRun) => !old.top || old.top.screenSeeds.includes(r.seed);
  const missing = old.runs.filter((r) => planned(r) && !ids.has(r.id)).length;
  if (missing) {
    return `${out}: ${missing} of the sweep's ${old.runs.length} runs are not in this grid ` +
      `(a rerun may only add configurations or seeds); use another --out, or --force to replace it`;
  }
  const oldIds = new Set(old.runs.map((r) => r.id));
  const oldConfigs = new Set(old.configs.map((c) => c.configId));
  return {
    ...next,
    seeds: [...new Set([...old.seeds, ...next.seeds])],
    configs: [...old.configs, ...next.configs.filter((c) => !oldConfigs.has(c.configId))],
    runs: [...old.runs, ...next.runs.filter((r) => !oldIds.has(r.id))],
  };
}

/** The manifest's configurations with their full configs, checked against their ids. */
export function plannedConfigs(m: SweepManifest, path: string): Map<string, PlannedConfig> {
  const out = new Map<string, PlannedConfig>();
  m.configs.forEach((c, i) => {
    const config = configFor(m.base, c.point, path);
    if (configId(config) !== c.configId) {
      throw new DataError(
        path,
        null,
        `configs.${i}`,
        `base + point do not give config ${c.configId} (written by another duaf version?)`,
      );
    }
    out.set(c.configId, { ...c, config });
  });
  return out;
}

/** The best epoch's valid metrics (the last epoch's when the best one is not in the history). */
export function bestValid(m: RunManifest): Record<string, number> {
  const h = m.history as EpochRecord[];
  return (h.find((r) => r.epoch === m.bestEpoch) ?? h[h.length - 1])?.valid ?? {};
}

function resultLine(run: PlannedRun, point: Record<string, unknown>, m: RunManifest): ResultLine {
  return {
    ...(m.initFrom ? { initFrom: m.initFrom.run } : {}),
    run: run.id,
    configId: run.configId,
    point,
    seed: run.seed,
    config: m.config,
    bestEpoch: m.bestEpoch,
    epochs: m.history.length,
    stopped: m.stopped,
    valid: bestValid(m),
    test: m.test ?? {},
    seconds: Number(m.seconds.toFixed(3)),
  };
}

export function formatEta(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** A checked sweep: the manifest this invocation's plan would write. */
export interface PreparedSweep {
  next: SweepManifest;
}

async function identityAt(dataset: string): Promise<DatasetIdentity> {
  try {
    return await datasetIdentity(dataset);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      throw new UsageError(`${dataset}: not a duaf dataset (no manifest.json)`);
    }
    throw e;
  }
}

/**
 * What `--init-from PATH` names: a run with a best checkpoint, or a sweep of one configuration
 * with a finished run for every seed of this sweep.
 */
async function checkInitFrom(path: string, seeds: number[]): Promise<SweepInitFrom> {
  const sweep = await readSweepManifest(path);
  if (!sweep) {
    if (!await exists(join(path, "model.safetensors"))) {
      throw new UsageError(
        `--init-from ${path}: neither a sweep nor a run with a best checkpoint (model.safetensors)`,
      );
    }
    return { path, kind: "run" };
  }
  if (sweep.configs.length !== 1) {
    throw new UsageError(
      `--init-from ${path}: the sweep has ${sweep.configs.length} configurations; give one of its ` +
        `runs, or a sweep of one configuration (its run of each seed starts that seed's run)`,
    );
  }
  const results = await readResults(path);
  const missing = seeds.filter((seed) => !results.some((r) => r.seed === seed));
  if (missing.length) {
    throw new UsageError(
      `--init-from ${path}: no finished run of seed ${missing.join(", ")} in that sweep`,
    );
  }
  return { path, kind: "sweep" };
}

/** The run directory a run of `seed` starts from under `--init-from`. */
async function initRunFor(init: SweepInitFrom, seed: number): Promise<string> {
  if (init.kind === "run") return init.path;
  const line = (await readResults(init.path)).find((r) => r.seed === seed);
  if (!line) throw new UsageError(`--init-from ${init.path}: no finished run of seed ${seed}`);
  return join(init.path, "runs", line.run);
}

/**
 * Everything that can refuse a sweep, before any training starts: every configuration is
 * validated, --out is checked (checkSweepOut), and an existing sweep must have the same dataset
 * and no run missing from this plan (or, with `force`, is removed).
 */
export async function prepareSweep(opts: SweepOptions): Promise<PreparedSweep> {
  const plan = sweepPlan(opts);
  const identity = await identityAt(opts.dataset);
  const initFrom = opts.initFrom ? await checkInitFrom(resolve(opts.initFrom), opts.seeds) : null;
  await checkSweepOut(opts.out, opts.force ?? false);
  const next: SweepManifest = {
    format: SWEEP_FORMAT,
    version: SWEEP_VERSION,
    duaf: VERSION,
    dataset: datasetRecord(resolve(opts.dataset), identity),
    grid: { file: opts.gridFile, keys: Object.fromEntries(opts.grid) },
    random: opts.random ?? null,
    seeds: opts.seeds,
    base: opts.base,
    configs: plan.configs.map((c) => ({ configId: c.configId, point: c.point })),
    runs: plan.runs,
    ...(initFrom ? { initFrom } : {}),
    ...(opts.top ? { top: { k: opts.top.k, screenSeeds: screeningSeeds(opts) } } : {}),
  };
  const existing = await readSweepManifest(opts.out);
  if (existing) {
    const merged = mergeManifest(existing, next, opts.out);
    if (typeof merged === "string") {
      if (!opts.force) throw new UsageError(merged);
      await Deno.remove(opts.out, { recursive: true });
    }
  }
  return { next };
}

/**
 * Runs (or resumes, or joins) a sweep. See the module comment. `prepared` is prepareSweep's
 * result when the caller already checked the sweep (the CLI does, before starting a backend).
 */
export async function runSweep(
  opts: SweepOptions,
  prepared?: PreparedSweep,
): Promise<SweepSummary> {
  const progress = opts.progress ?? silentProgress;
  const out = opts.out;
  const started = performance.now();
  const { next } = prepared ?? await prepareSweep(opts);
  await Deno.mkdir(join(out, "runs"), { recursive: true });
  await Deno.mkdir(join(out, "locks"), { recursive: true });
  const claims = new Claims(join(out, "locks"), {
    staleMs: opts.staleMs,
    onReclaim: (name, info) =>
      progress.log(
        `sweep: reclaimed the stale lock of ${name}` +
          (info ? ` (pid ${info.pid} on ${info.host}, since ${info.at})` : ""),
      ),
  });
  // The manifest is read and rewritten under a lock of its own, so two processes starting
  // together merge their plans instead of one overwriting the other's.
  const updateManifest = async (plan: SweepManifest): Promise<SweepManifest> => {
    for (let waited = 0;; waited += 50) {
      if (claims.tryClaim("manifest")) break;
      if (waited > 60_000) throw new UsageError(`${out}: manifest lock held for over a minute`);
      await sleep(50);
    }
    try {
      const merged = mergeManifest(await readSweepManifest(out), plan, out);
      if (typeof merged === "string") throw new UsageError(merged);
      await writeFileAtomic(sweepManifestPath(out), JSON.stringify(merged, null, 2) + "\n");
      return merged;
    } finally {
      claims.release("manifest");
    }
  };
  let manifest = await updateManifest(next);

  const configs = plannedConfigs(manifest, sweepManifestPath(out));
  let total = manifest.runs.length;
  const summary: SweepSummary = {
    sweep: out,
    configs: manifest.configs.length,
    runs: total,
    done: 0,
    left: total,
    trained: 0,
    resumed: 0,
    recorded: 0,
    interrupted: false,
    seconds: 0,
    best: null,
  };
  const ranSeconds: number[] = [];
  let waitingLogged = false;
  progress.log(
    `sweep: ${manifest.configs.length} configurations x ${manifest.seeds.length} seeds = ` +
      `${total} runs in ${out}`,
  );

  /** Trains, resumes or records one claimed run; null when interrupted. */
  const execute = async (run: PlannedRun): Promise<ResultLine | null> => {
    const planned = configs.get(run.configId)!;
    const dir = join(out, "runs", run.id);
    let prior: RunManifest | null = null;
    try {
      prior = await readRunManifest(dir);
    } catch {
      prior = null;
    }
    if (prior?.status === "finished") {
      summary.recorded++;
      return resultLine(run, planned.point, prior);
    }
    const resume = prior !== null && await exists(join(dir, "state.safetensors"));
    if (!resume) await Deno.remove(dir, { recursive: true }).catch(() => {});
    progress.log(`sweep: ${resume ? "resuming" : "training"} ${run.id}`);
    const { manifest: m, outcome } = await runTraining({
      dataset: opts.dataset,
      out: dir,
      config: { ...planned.config, seed: run.seed },
      resume,
      initFrom: manifest.initFrom ? await initRunFor(manifest.initFrom, run.seed) : undefined,
      backendName: opts.backendName,
      shouldStop: opts.shouldStop,
      checkpointSeconds: opts.checkpointSeconds,
    });
    if (outcome.stopped === "interrupted") return null;
    if (resume) summary.resumed++;
    else summary.trained++;
    return resultLine(run, planned.point, m);
  };

  try {
    for (;;) {
      const done = new Set((await readResults(out)).map((r) => r.run));
      const pending = manifest.runs.filter((r) => !done.has(r.id));
      summary.done = total - pending.length;
      summary.left = pending.length;
      if (!pending.length) {
        // A complete screening promotes its best configurations to the other seeds.
        const promoted = promotedRuns(manifest, await readResults(out));
        if (!promoted.length) break;
        manifest = await updateManifest({ ...next, runs: [...next.runs, ...promoted] });
        total = summary.runs = manifest.runs.length;
        progress.log(
          `sweep: screening done; ${promoted.length} runs of the best ${manifest.top!.k} ` +
            `configurations added`,
        );
        continue;
      }
      if (opts.shouldStop?.()) {
        summary.interrupted = true;
        break;
      }
      let claimed: PlannedRun | null = null;
      for (const run of pending) {
        if (claims.tryClaim(run.id)) {
          claimed = run;
          break;
        }
      }
      if (!claimed) {
        if (opts.noWait) {
          progress.log(
            `sweep: ${pending.length} runs left, all claimed by other processes; not waiting`,
          );
          break;
        }
        // Every remaining run is claimed by a live process: wait for them.
        if (!waitingLogged) {
          progress.log(`sweep: ${pending.length} runs left, all claimed by other processes`);
          waitingLogged = true;
        }
        await sleep(opts.pollMs ?? 1000);
        continue;
      }
      waitingLogged = false;
      const run = claimed;
      try {
        // Another process may have finished it between our read of the results and our claim.
        if ((await readResults(out)).some((r) => r.run === run.id)) continue;
        const t0 = performance.now();
        const line = await execute(run);
        if (!line) {
          summary.interrupted = true;
          progress.log(`sweep: interrupted; ${run.id} saved a checkpoint and resumes next time`);
          break;
        }
        // A claim lost to a reclaimer (a stalled heartbeat) means that process records the run.
        if (!claims.stillHeld(run.id)) continue;
        await appendResult(out, line);
        const secs = (performance.now() - t0) / 1000;
        if (line.seconds > 0 && secs > 0.5 * line.seconds) ranSeconds.push(secs);
        summary.done++;
        summary.left--;
        const per = ranSeconds.length
          ? ranSeconds.reduce((a, b) => a + b, 0) / ranSeconds.length
          : NaN;
        const metric = configs.get(run.configId)!.config.metric;
        const v = line.valid[metric];
        progress.log(
          `sweep: ${summary.done}/${total} done, ${summary.left} left, ETA ${
            summary.left ? formatEta(per * summary.left) : "0 s"
          } (${run.id}: ${secs.toFixed(1)} s, valid ${metric} ${
            typeof v === "number" ? v.toFixed(4) : "?"
          })`,
        );
      } finally {
        claims.release(run.id);
      }
    }
  } finally {
    claims.releaseAll();
  }
  const keys = [...new Set(manifest.configs.flatMap((c) => Object.keys(c.point)))];
  const metric = manifest.base.metric;
  const results = await readResults(out);
  const best = results.length
    ? aggregate(
      results,
      keys,
      metric,
      manifest.configs.map((c) => c.configId),
      bestNeedsSeeds(manifest),
    ).best
    : null;
  if (best) {
    summary.best = {
      configId: best.configId,
      values: best.values,
      n: best.valid.n,
      metric,
      valid: best.valid.mean,
    };
  }
  summary.seconds = Number(((performance.now() - started) / 1000).toFixed(2));
  return summary;
}
