/**
 * A whole training run as a library call: dataset in, run directory out. The CLI's `train`
 * command is a thin wrapper over `runTraining`; eval/recommend/export reopen runs with `openRun`.
 */
import { resolve } from "node:path";
import { type Backend, CPU_TOKEN_BUDGET } from "../backend.ts";
import { selectBackend } from "../backends/registry.ts";
import type { TrainConfig } from "../config.ts";
import { type Dataset, loadDataset } from "../data/dataset.ts";
import {
  type DatasetIdentity,
  datasetIdentity,
  datasetRecord,
  sameDataset,
} from "../data/identity.ts";
import { formatBytes, ResourceError, UsageError } from "../errors.ts";
import { checkOutputDir, clearDirArtifact, type OutputState } from "../io/output_guard.ts";
import { type EvalResult, evaluate, evaluateWith } from "../eval/evaluate.ts";
import { reconstructionMetrics } from "../eval/reconstruction.ts";
import type { SequenceBatch } from "../models/batch.ts";
import type { ItemSide } from "../models/item_side.ts";
import type { SequentialModel } from "../models/model.ts";
import { createModel } from "../models/registry.ts";
import { bf16Refusal } from "../ops/linear_ce.ts";
import { Adam } from "../optim/adam.ts";
import { type Progress, silentProgress } from "../progress.ts";
import { Rng } from "../random.ts";
import { getBackend, setBackend } from "../tensor.ts";
import { FrozenValues } from "../nn/context.ts";
import { VERSION } from "../version.ts";
import {
  hasState,
  loadModel,
  loadState,
  readRunManifest,
  RUN_ARTIFACT,
  type RunManifest,
  saveModel,
  saveState,
  writeRunManifest,
} from "./run_dir.ts";
import { timestampOrigin } from "../models/examples.ts";
import { type InitFromResult, initFromRun, textFeaturesOf } from "./init_from.ts";
import {
  checkMemory,
  estimateTrainingMemory,
  formatEstimate,
  type MemoryInputs,
  sequenceSizes,
} from "./memory.ts";
import {
  type EpochRecord,
  initialState,
  microBatchTokens,
  train,
  type TrainOutcome,
} from "./trainer.ts";

export function itemSide(ds: Dataset): ItemSide {
  return {
    numItems: ds.numItems,
    text: ds.text,
    image: ds.image,
    textLayers: ds.textLayers,
    imageLayers: ds.imageLayers,
    itemCategory: ds.itemCategory,
    numCategories: ds.numCategories,
  };
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
  /** `dataset` already loaded (loadDataset), so a caller that read it does not read it twice. */
  loaded?: Dataset;
  out: string;
  config: TrainConfig;
  /** Continue the run in `out` from its state.safetensors. */
  resume?: boolean;
  progress?: Progress;
  shouldStop?: () => boolean;
  onEpoch?: (r: EpochRecord) => void;
  backendName: string;
  /** Replace `out` even when it holds something other than a finished duaf run (--force). */
  force?: boolean;
  /**
   * Also save the resumable state mid-epoch when this many seconds have passed since the last
   * save (0: only at epoch ends and on stop), bounding the work a hard kill loses.
   */
  checkpointSeconds?: number;
  /** Start from this finished run's parameters where names and shapes match (init_from.ts). */
  initFrom?: string;
}

/**
 * Makes `out` ready for a new run: an absent path or empty directory is used as is; a finished
 * duaf run is replaced (only its own files are removed); an unfinished one needs --resume or
 * --force; anything else is refused unless forced (output_guard.ts).
 */
async function prepareRunDir(
  out: string,
  force: boolean,
  progress: Progress,
): Promise<OutputState> {
  const state = await checkOutputDir(out, RUN_ARTIFACT, { force });
  if (state === "artifact") {
    const old = await readRunManifest(out);
    if (old.status !== "finished") {
      throw new UsageError(
        `${out}: holds an unfinished run; --resume ${out} continues it, --force replaces it`,
      );
    }
    progress.log(`replacing the finished run in ${out}`);
    await clearDirArtifact(out, RUN_ARTIFACT);
  } else if (state === "forced") {
    await Deno.remove(out, { recursive: true });
  }
  await Deno.mkdir(out, { recursive: true });
  return state;
}

export interface TrainRunResult {
  manifest: RunManifest;
  outcome: TrainOutcome;
}

export async function runTraining(opts: TrainRunOptions): Promise<TrainRunResult> {
  const progress = opts.progress ?? silentProgress;
  const ds = opts.loaded ?? await loadDataset(opts.dataset);
  const identity = await datasetIdentity(opts.dataset);
  let cfg = opts.config;
  let previous: RunManifest | null = null;
  let outState: OutputState | null = null;
  if (opts.resume) {
    previous = await readRunManifest(opts.out);
    if (!sameDataset(previous.dataset, identity)) {
      throw new UsageError(`${opts.out}: was trained on a different dataset (hash differs)`);
    }
    if (previous.status === "finished") throw new UsageError(`${opts.out}: run already finished`);
    cfg = previous.config;
  }
  // The model and the memory estimate come before anything is written: a run that cannot fit
  // stops here with one line and leaves no output.
  const model = buildModel(cfg, ds, progress);
  checkCeProducts(cfg);
  let initFrom: InitFromResult | null = null;
  if (opts.initFrom && !opts.resume) {
    initFrom = await initFromRun(opts.initFrom, model, ds, identity);
    for (const line of initFrom.lines) progress.log(line);
  }
  const init = previous?.initFrom ?? initFrom;
  if (init) {
    const line = model.initialized?.(new Set(init.loaded));
    if (line && !opts.resume) progress.log(line);
  }
  const estimate = estimateTrainingMemory(cfg, memoryInputs(cfg, ds, model));
  progress.log(formatEstimate(estimate, getBackend().memoryLimit?.() ?? null));
  // DUAF_MEMORY_CHECK=0 trains anyway: the estimate bounds the epoch's worst micro-batch and
  // may stand above what a given dataset's batches reach (docs/scale.md).
  if (Deno.env.get("DUAF_MEMORY_CHECK") !== "0") checkMemory(estimate, getBackend());
  if (!opts.resume) outState = await prepareRunDir(opts.out, opts.force ?? false, progress);
  try {
    const result = await trainInto(opts, ds, identity, cfg, previous, progress, model, init);
    const stats = getBackend().memoryStats?.();
    if (stats) progress.log(`memory: measured peak ${formatBytes(stats.peak)}`);
    return result;
  } catch (e) {
    // A new run that failed before its first checkpoint leaves nothing behind (an empty folder
    // it was given stays); an older checkpoint is never touched.
    if (!opts.resume && !(await hasState(opts.out))) {
      await clearDirArtifact(opts.out, RUN_ARTIFACT);
      if (outState !== "empty") await Deno.remove(opts.out).catch(() => {});
    }
    if (e instanceof ResourceError) throw e.withAdvice(trainingAdvice(cfg, ds.numItems));
    throw e;
  }
}

/** The configured model; parameters that do not fit even alone say so. */
function buildModel(cfg: TrainConfig, ds: Dataset, progress: Progress): SequentialModel {
  try {
    return createModel(cfg, itemSide(ds), new Rng(cfg.seed), (m) => progress.log(m));
  } catch (e) {
    if (!(e instanceof ResourceError)) throw e;
    throw e.withAdvice(
      `the model's parameters alone (${ds.numItems} items x hidden ${cfg.hidden}) do not fit: ` +
        `lower hidden or use --backend cuda where a GPU is`,
    );
  }
}

/** The estimate's inputs: the model's parameter count, its feature tables, the micro-batch. */
function memoryInputs(cfg: TrainConfig, ds: Dataset, model: SequentialModel): MemoryInputs {
  const params = model.parameters().reduce((a, p) => a + p.size, 0);
  const rows = ds.numItems + 1;
  const modalities = cfg.model === "duafmat"
    ? cfg.duafmat.modalities
    : cfg.model === "fdsa" || cfg.model === "unisrec" || cfg.model === "tedrec"
    ? ["text"]
    : [];
  let features = 0;
  if (modalities.includes("text") && ds.text) features += rows * (ds.text.dim + 1);
  if (modalities.includes("image") && ds.image) features += rows * (ds.image.dim + 1);
  const memoryFactor = model.memoryFactor ?? 1;
  const microTokens = microBatchTokens(cfg, memoryFactor, ds.numItems);
  return {
    numItems: ds.numItems,
    params,
    features,
    memoryFactor,
    lastStepLoss: cfg.trainMode === "prefix" && (model.lastStepLoss ?? false),
    microTokens,
    rankPackFloats: getBackend().rankPackFloats?.(rows, cfg.hidden) ?? 0,
    wholeScoresBytes: getBackend().wholeScoresBytes,
    ...sequenceSizes(ds, cfg, microTokens, model.padsTo),
  };
}

/** ceProducts=bf16 where it cannot run: one line before anything is written. */
function checkCeProducts(cfg: TrainConfig): void {
  if (cfg.ceProducts !== "bf16") return;
  if (cfg.loss !== "ce") {
    throw new UsageError(`ceProducts=bf16 applies to loss=ce (now loss=${cfg.loss})`);
  }
  const refused = bf16Refusal(getBackend());
  if (refused) throw new UsageError(`${refused}; use ceProducts=fp32`);
}

/** What to change when a training run runs out of memory, with the values in force. */
function trainingAdvice(cfg: TrainConfig, numItems: number): string {
  const budget = cfg.tokenBudget === "auto"
    ? `auto = ${getBackend().microBatchTokens ?? CPU_TOKEN_BUDGET}`
    : cfg.tokenBudget;
  const parts = [
    `lower tokenBudget (now ${budget}) or batchSize (now ${cfg.batchSize}) for ` +
    `training steps, evalBatchSize (now ${cfg.evalBatchSize}) for validation`,
  ];
  if (cfg.loss === "ce") {
    parts.push(
      `ceChunkItems=4096 (now ${cfg.ceChunkItems}; CE in item blocks) or loss=gbce (loss=ce ` +
        `scores all ${numItems} items for every training position)`,
    );
  }
  if (getBackend().name !== "cuda") parts.push("or --backend cuda where a GPU is");
  return parts.join("; ");
}

async function trainInto(
  opts: TrainRunOptions,
  ds: Dataset,
  identity: DatasetIdentity,
  cfg: TrainConfig,
  previous: RunManifest | null,
  progress: Progress,
  model: SequentialModel,
  init: RunManifest["initFrom"] | null,
): Promise<TrainRunResult> {
  const optimizer = new Adam(model.trainableParameters?.() ?? model.parameters(), {
    lr: cfg.lr,
    weightDecay: cfg.weightDecay,
  });
  // A run stopped before its first checkpoint starts over: training is deterministic, so that
  // ends exactly where an uninterrupted run does.
  const state = opts.resume && await hasState(opts.out)
    ? await loadState(opts.out, model, optimizer)
    : initialState(cfg.seed);
  const started = performance.now();
  const baseSeconds = previous?.seconds ?? 0;
  let checkpoint: { epoch: number; step: number } | null = previous?.checkpoint ?? null;
  const manifest = (
    status: RunManifest["status"],
    stopped: string | null,
    test: Record<string, number> | null,
  ): RunManifest => ({
    format: "duaf-run",
    version: 1,
    duaf: VERSION,
    config: cfg,
    dataset: datasetRecord(resolve(opts.dataset), identity),
    backend: opts.backendName,
    status,
    stopped,
    bestEpoch: state.bestEpoch,
    bestMetric: Number.isFinite(state.bestMetric) ? state.bestMetric : null,
    history: state.history,
    test,
    seconds: baseSeconds + (performance.now() - started) / 1000,
    partialSeconds: state.partialSeconds,
    checkpoint,
    textFeatures: textFeaturesOf(ds),
    ...(init ? { initFrom: { run: init.run, loaded: init.loaded, fresh: init.fresh } } : {}),
  });
  // The directory says what it is from the start, so a run killed before its first checkpoint
  // is still recognised (and resumable) as a duaf run.
  if (!opts.resume) await writeRunManifest(opts.out, manifest("running", null, null));
  const outcome = await train(model, ds, cfg, optimizer, state, {
    progress,
    shouldStop: opts.shouldStop,
    onEpoch: opts.onEpoch,
    saveBest: (s) =>
      saveModel(opts.out, model, {
        kind: cfg.model,
        epoch: String(s.bestEpoch),
        dataset: identity.manifestSha256,
      }),
    saveState: async (s, o) => {
      await saveState(opts.out, model, o, s);
      checkpoint = { epoch: s.epoch, step: s.step };
      await writeRunManifest(opts.out, manifest("running", null, null));
    },
    checkpointSeconds: opts.checkpointSeconds,
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
  const recon = model.reconstruction?.();
  const m = manifest("finished", outcome.stopped, {
    ...test.metrics,
    ...(recon ? reconstructionMetrics(recon) : {}),
  });
  await writeRunManifest(opts.out, m);
  return { manifest: m, outcome };
}

export interface OpenRun {
  manifest: RunManifest;
  dataset: Dataset;
  model: SequentialModel;
  origin: number;
  /** The model's parameter-only values (item tables), built once for the run's inference. */
  frozen: FrozenValues;
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
  if (!sameDataset(manifest.dataset, await datasetIdentity(dsDir))) {
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
  return { manifest, dataset, model, origin: timestampOrigin(dataset), frozen: new FrozenValues() };
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
