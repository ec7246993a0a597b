/**
 * How fast a configuration trains and evaluates on this machine, per backend (`duaf bench`): the
 * first steps of a real `duaf train` run (runTraining into a temporary folder, so every cost of
 * the trainer is in), its full-ranking validation and test, the backend's sgemm rate, and memory.
 */
import { join } from "node:path";
import type { TrainConfig } from "../config.ts";
import { loadDataset } from "../data/dataset.ts";
import { getBackend } from "../tensor.ts";
import { epochPlan } from "../train/trainer.ts";
import { runTraining } from "../train/run.ts";
import { splitExamples } from "../models/examples.ts";
import { configFlops } from "./flops.ts";
import { measureGemm } from "./gemm_rate.ts";
import { peakRssMib, TimingProgress } from "./timing.ts";

export interface SpeedResult {
  backend: string;
  /** The backend's own description (BLAS library and threads, GPU). */
  description: string;
  model: string;
  trainMode: string;
  batchSize: number;
  /** sgemm GFLOP/s on [2048x64]@[64x256], a step-sized product. */
  gemmGflops: number;
  /** Steps timed; the first is left out of the step statistics (warm-up: first touch, JIT). */
  steps: number;
  stepsPerEpoch: number;
  stepSeconds: { median: number; mean: number; min: number; max: number };
  /**
   * The epoch's seconds when every step was timed; otherwise the mean step after the first times
   * the epoch's steps (batches of longer histories, later in an epoch's bucketed order, can make
   * the whole epoch slower than its first steps).
   */
  epochSecondsEstimate: number;
  /** Full ranking over every item: users per second of the validation and the test split. */
  evalUsersPerSecond: { valid: number; test: number };
  /** Most bytes the backend's own memory held (the wasm arena, the GPU pool), MiB; null if unknown. */
  backendPeakMiB: number | null;
  /** The process's peak resident set so far, MiB (every backend measured before included). */
  peakRssMiB: number;
  /**
   * The FLOP floor (core/bench/flops.ts, SASRec and DuAF-MAT only; null for other models): the
   * epoch's and the test evaluation's useful GEMM FLOPs at `gemmGflops`, and each time measured
   * here as a multiple of it.
   */
  floor:
    | { epochSeconds: number; epochRatio: number; evalSeconds: number; evalRatio: number }
    | null;
}

export interface SpeedOptions {
  dataset: string;
  /** The run's config; epochs and maxSteps are set here. */
  config: TrainConfig;
  /** Steps to time (at least 2: the first is a warm-up); 0: the whole epoch. */
  steps: number;
  /** The active backend's name (activateBackend has made it current). */
  backendName: string;
  log?: (message: string) => void;
}

export async function measureTrainingSpeed(opts: SpeedOptions): Promise<SpeedResult> {
  const be = getBackend();
  const ds = await loadDataset(opts.dataset);
  const { stepsPerEpoch } = epochPlan(ds, opts.config);
  const steps = opts.steps === 0 ? stepsPerEpoch : Math.min(Math.max(2, opts.steps), stepsPerEpoch);
  const gemm = measureGemm(be);
  be.resetPeak?.();
  const progress = new TimingProgress(opts.log);
  const tmp = await Deno.makeTempDir({ prefix: "duaf-bench-" });
  try {
    await runTraining({
      dataset: opts.dataset,
      loaded: ds,
      out: join(tmp, "run"),
      config: { ...opts.config, epochs: 1, maxSteps: steps },
      progress,
      backendName: opts.backendName,
      checkpointSeconds: 0,
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  const timed = progress.intervals("epoch 1").slice(1);
  const sorted = [...timed].sort((a, b) => a - b);
  const mean = timed.reduce((a, b) => a + b, 0) / timed.length;
  const evalSeconds = (split: "valid" | "test") => progress.durations.get(`eval ${split}`) ?? NaN;
  const perSecond = (split: "valid" | "test") =>
    splitExamples(ds, split).users.length / evalSeconds(split);
  const stats = be.memoryStats?.();
  const epochSecondsEstimate = steps === stepsPerEpoch
    ? progress.durations.get("epoch 1") ?? NaN
    : mean * stepsPerEpoch;
  const flops = configFlops(ds, opts.config);
  const atRate = (f: number) => f / (gemm.gflops * 1e9);
  const floor = flops && {
    epochSeconds: atRate(flops.epoch),
    epochRatio: epochSecondsEstimate / atRate(flops.epoch),
    evalSeconds: atRate(flops.eval),
    evalRatio: evalSeconds("test") / atRate(flops.eval),
  };
  return {
    backend: be.name,
    description: (be as { description?: string }).description ?? be.name,
    model: opts.config.model,
    trainMode: opts.config.trainMode,
    batchSize: opts.config.batchSize,
    gemmGflops: gemm.gflops,
    steps,
    stepsPerEpoch,
    stepSeconds: {
      median: sorted[Math.floor((sorted.length - 1) / 2)],
      mean,
      min: sorted[0],
      max: sorted[sorted.length - 1],
    },
    epochSecondsEstimate,
    evalUsersPerSecond: { valid: perSecond("valid"), test: perSecond("test") },
    backendPeakMiB: stats ? stats.peak / 2 ** 20 : null,
    peakRssMiB: peakRssMib(),
    floor,
  };
}
