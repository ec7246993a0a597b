/**
 * A whole training run as a library call: dataset in, run directory out. The CLI's `train`
 * command is a thin wrapper over `runTraining`; eval/recommend/export reopen runs with `openRun`.
 */
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import type { Backend } from "../backend.ts";
import { selectBackend } from "../backends/registry.ts";
import type { TrainConfig } from "../config.ts";
import { type Dataset, loadDataset } from "../data/dataset.ts";
import { UsageError } from "../errors.ts";
import { type EvalResult, evaluate, evaluateWith } from "../eval/evaluate.ts";
import type { SequenceBatch } from "../models/batch.ts";
import type { ItemSide } from "../models/item_side.ts";
import type { SequentialModel } from "../models/model.ts";
import { createModel } from "../models/registry.ts";
import { Adam } from "../optim/adam.ts";
import { type Progress, silentProgress } from "../progress.ts";
import { Rng } from "../random.ts";
import { setBackend } from "../tensor.ts";
import { VERSION } from "../version.ts";
import {
  loadModel,
  loadState,
  readRunManifest,
  type RunManifest,
  saveModel,
  saveState,
  writeRunManifest,
} from "./run_dir.ts";
import { timestampOrigin } from "../models/examples.ts";
import { type EpochRecord, initialState, train, type TrainOutcome } from "./trainer.ts";

export function itemSide(ds: Dataset): ItemSide {
  return {
    numItems: ds.numItems,
    text: ds.text,
    image: ds.image,
    itemCategory: ds.itemCategory,
    numCategories: ds.numCategories,
  };
}

export async function datasetHash(dir: string): Promise<string> {
  const bytes = await Deno.readFile(join(dir, "manifest.json"));
  return createHash("sha256").update(bytes).digest("hex");
}

/** Picks and activates a backend; returns it with notes on skipped ones. */
/** The backend the last activateBackend call made current. */
let activated: Backend | null = null;

export async function activateBackend(
  requested?: string,
): Promise<{ backend: Backend; skipped: string[] }> {
  const sel = await selectBackend(requested);
  setBackend(sel.backend);
  // Every command activates a fresh backend. Stop the threads of the one it replaces, so a
  // process that runs many commands (a library user, the test suite) does not pile up workers.
  if (activated !== null && activated !== sel.backend) activated.dispose?.();
  activated = sel.backend;
  return sel;
}

export interface TrainRunOptions {
  dataset: string;
  out: string;
  config: TrainConfig;
  /** Continue the run in `out` from its state.safetensors. */
  resume?: boolean;
  progress?: Progress;
  shouldStop?: () => boolean;
  onEpoch?: (r: EpochRecord) => void;
  backendName: string;
}

export interface TrainRunResult {
  manifest: RunManifest;
  outcome: TrainOutcome;
}

export async function runTraining(opts: TrainRunOptions): Promise<TrainRunResult> {
  const progress = opts.progress ?? silentProgress;
  const ds = await loadDataset(opts.dataset);
  const hash = await datasetHash(opts.dataset);
  let cfg = opts.config;
  let previous: RunManifest | null = null;
  if (opts.resume) {
    previous = await readRunManifest(opts.out);
    if (previous.dataset.manifestSha256 !== hash) {
      throw new UsageError(`${opts.out}: was trained on a different dataset (hash differs)`);
    }
    if (previous.status === "finished") throw new UsageError(`${opts.out}: run already finished`);
    cfg = previous.config;
  } else {
    await Deno.mkdir(opts.out, { recursive: true });
  }
  const model = createModel(cfg, itemSide(ds), new Rng(cfg.seed), (m) => progress.log(m));
  const optimizer = new Adam(model.trainableParameters?.() ?? model.parameters(), {
    lr: cfg.lr,
    weightDecay: cfg.weightDecay,
  });
  const state = opts.resume ? await loadState(opts.out, model, optimizer) : initialState(cfg.seed);
  const started = performance.now();
  const baseSeconds = previous?.seconds ?? 0;
  const manifest = (
    status: RunManifest["status"],
    stopped: string | null,
    test: Record<string, number> | null,
  ): RunManifest => ({
    format: "duaf-run",
    version: 1,
    duaf: VERSION,
    config: cfg,
    dataset: { dir: resolve(opts.dataset), manifestSha256: hash },
    backend: opts.backendName,
    status,
    stopped,
    bestEpoch: state.bestEpoch,
    bestMetric: Number.isFinite(state.bestMetric) ? state.bestMetric : null,
    history: state.history,
    test,
    seconds: baseSeconds + (performance.now() - started) / 1000,
    partialSeconds: state.partialSeconds,
  });
  const outcome = await train(model, ds, cfg, optimizer, state, {
    progress,
    shouldStop: opts.shouldStop,
    onEpoch: opts.onEpoch,
    saveBest: (s) =>
      saveModel(opts.out, model, { kind: cfg.model, epoch: String(s.bestEpoch), dataset: hash }),
    saveState: async (s, o) => {
      await saveState(opts.out, model, o, s);
      await writeRunManifest(opts.out, manifest("running", null, null));
    },
  });
  if (outcome.stopped === "interrupted") {
    const m = manifest("interrupted", "interrupted", null);
    await writeRunManifest(opts.out, m);
    return { manifest: m, outcome };
  }
  await loadModel(opts.out, model);
  const test = evaluate(model, ds, {
    split: "test",
    ks: cfg.validKs,
    maskSeen: false,
    batchSize: cfg.evalBatchSize,
    maxLen: cfg.maxLen,
    origin: timestampOrigin(ds),
    progress,
  });
  const m = manifest("finished", outcome.stopped, test.metrics);
  await writeRunManifest(opts.out, m);
  return { manifest: m, outcome };
}

export interface OpenRun {
  manifest: RunManifest;
  dataset: Dataset;
  model: SequentialModel;
  origin: number;
}

/** Reopens a trained run: its manifest, its dataset and the best model. */
export async function openRun(
  dir: string,
  progress: Progress = silentProgress,
  datasetDir?: string,
): Promise<OpenRun> {
  const manifest = await readRunManifest(dir);
  const dsDir = datasetDir ?? manifest.dataset.dir;
  const dataset = await loadDataset(dsDir);
  const hash = await datasetHash(dsDir);
  if (hash !== manifest.dataset.manifestSha256) {
    throw new UsageError(`${dir}: dataset ${dsDir} differs from the one the run was trained on`);
  }
  const model = createModel(
    manifest.config,
    itemSide(dataset),
    new Rng(manifest.config.seed),
    (m) => progress.log(m),
  );
  await loadModel(dir, model);
  model.eval();
  return { manifest, dataset, model, origin: timestampOrigin(dataset) };
}

export function evaluateRun(
  run: OpenRun,
  opts: { split: "valid" | "test"; ks: number[]; maskSeen: boolean; progress?: Progress },
): EvalResult {
  return evaluate(run.model, run.dataset, {
    ...opts,
    batchSize: run.manifest.config.evalBatchSize,
    maxLen: run.manifest.config.maxLen,
    origin: run.origin,
  });
}

/** evaluateRun with scores from another runtime (an exported graph on onnxruntime). */
export function evaluateRunWith(
  run: OpenRun,
  scorer: { scoreAll(batch: SequenceBatch): Promise<Float32Array> },
  opts: { split: "valid" | "test"; ks: number[]; maskSeen: boolean; progress?: Progress },
): Promise<EvalResult> {
  return evaluateWith(scorer, run.dataset, {
    ...opts,
    batchSize: run.manifest.config.evalBatchSize,
    maxLen: run.manifest.config.maxLen,
    origin: run.origin,
  });
}
