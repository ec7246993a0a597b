/**
 * How a model's modality fusion weights are spread over a sequence: mean weight of each modality
 * by position from the end (0 = the most recent item) and by the time gap Δt to the previous item
 * (log-spaced buckets in days), computed over one leave-one-out split.
 */
import type { ModalityWeights, SequentialModel } from "../models/model.ts";
import type { SequenceBatch } from "../models/batch.ts";
import type { Progress } from "../progress.ts";
import { silentProgress } from "../progress.ts";
import { Rng } from "../random.ts";
import { noGrad, tidy } from "../tensor.ts";
import { makeBatch, type SequenceSource, splitExamples } from "../models/examples.ts";

/**
 * Upper bucket edges in days, half a decade apart. Gap 0 (same day) has its own bucket: Amazon
 * timestamps have day resolution and many items share a day.
 */
export const GAP_EDGES_DAYS = [0, 1, 3, 10, 30, 100, 300, 1000] as const;

/** Bucket labels in days: "0", "≤1", "1-3", ..., "300-1k", ">1k". */
export function gapLabels(): string[] {
  const e = GAP_EDGES_DAYS;
  const days = (v: number) => v >= 1000 ? `${v / 1000}k` : String(v);
  return [
    "0",
    ...e.slice(1).map((hi, i) => `${i === 0 ? "≤" : `${days(e[i])}-`}${days(hi)}`),
    `>${days(e[e.length - 1])}`,
  ];
}

/** Bucket index of a gap in days: 0 for 0 d, then (0,1], (1,3], ..., (300,1000], >1000. */
export function gapBucket(days: number): number {
  if (!(days > 0)) return 0;
  for (let b = 1; b < GAP_EDGES_DAYS.length; b++) if (days <= GAP_EDGES_DAYS[b]) return b;
  return GAP_EDGES_DAYS.length;
}

/** The byImage buckets: the step's item has a real image, or the model generated one. */
export const IMAGE_LABELS = ["real image", "generated image"];

/** Running sums for one grouping (positions or gap buckets). */
export interface WeightTable {
  labels: string[];
  /** Steps that fell into each bucket. */
  counts: number[];
  /** [bucket][modality] mean weight (after finishWeights; sums until then). */
  mean: number[][];
  /** [bucket][modality] standard deviation (after finishWeights; sums of squares until then). */
  std: number[][];
}

export interface ModalityStats {
  split: string;
  modalities: string[];
  /** Sequences (users) and history steps seen. */
  users: number;
  steps: number;
  /** Overall mean weight per modality. */
  overall: number[];
  byPosition: WeightTable;
  byGap: WeightTable;
  /** Steps whose item's image is real vs generated (models with an image modality). */
  byImage: WeightTable | null;
}

function emptyTable(labels: string[], m: number): WeightTable {
  return {
    labels,
    counts: labels.map(() => 0),
    mean: labels.map(() => new Array(m).fill(0)),
    std: labels.map(() => new Array(m).fill(0)),
  };
}

export function newModalityStats(split: string, modalities: string[], maxLen: number) {
  const m = modalities.length;
  const positions = Array.from({ length: maxLen }, (_, p) => String(p));
  return {
    split,
    modalities,
    users: 0,
    steps: 0,
    overall: new Array(m).fill(0),
    byPosition: emptyTable(positions, m),
    byGap: emptyTable(gapLabels(), m),
    byImage: modalities.includes("image") ? emptyTable(IMAGE_LABELS, m) : null,
  } satisfies ModalityStats;
}

function add(t: WeightTable, bucket: number, w: number[]): void {
  t.counts[bucket]++;
  for (let k = 0; k < w.length; k++) {
    t.mean[bucket][k] += w[k];
    t.std[bucket][k] += w[k] * w[k];
  }
}

/**
 * Adds one batch's weights. The first visible step of a row has no previous item in the batch,
 * so it counts for positions but not for gaps.
 */
export function accumulateWeights(
  stats: ModalityStats,
  batch: SequenceBatch,
  weights: ModalityWeights,
): void {
  const mods = stats.modalities;
  for (let r = 0; r < batch.size; r++) {
    const len = batch.lengths[r];
    const rows = weights.perRow(r, len);
    stats.users++;
    for (let j = 0; j < rows.length; j++) {
      const w = mods.map((m) => rows[j][m] ?? 0);
      stats.steps++;
      for (let k = 0; k < w.length; k++) stats.overall[k] += w[k];
      const fromEnd = Math.min(len - 1 - j, stats.byPosition.labels.length - 1);
      add(stats.byPosition, fromEnd, w);
      if (stats.byImage && weights.imagePresent) {
        add(stats.byImage, weights.imagePresent[batch.items[r * batch.len + j]] ? 0 : 1, w);
      }
      if (j > 0) {
        const t = batch.times[r * batch.len + j] - batch.times[r * batch.len + j - 1];
        add(stats.byGap, gapBucket(t), w);
      }
    }
  }
}

/** Turns sums into means and standard deviations, in place. */
export function finishWeights(stats: ModalityStats): ModalityStats {
  for (const t of [stats.byPosition, stats.byGap, ...(stats.byImage ? [stats.byImage] : [])]) {
    t.counts.forEach((n, b) => {
      for (let k = 0; k < stats.modalities.length; k++) {
        const mean = n ? t.mean[b][k] / n : 0;
        const variance = n ? Math.max(0, t.std[b][k] / n - mean * mean) : 0;
        t.mean[b][k] = mean;
        t.std[b][k] = Math.sqrt(variance);
      }
    });
  }
  stats.overall = stats.overall.map((s) => (stats.steps ? s / stats.steps : 0));
  return stats;
}

export interface ModalityStatsOptions {
  split?: "valid" | "test";
  batchSize: number;
  maxLen: number;
  origin: number;
  /** Stop after this many users (0 = all). */
  maxUsers?: number;
  progress?: Progress;
}

/**
 * Runs `model.explain` over a split and aggregates the weights, or returns null when the model
 * has no modality weights.
 */
export function modalityStats(
  model: SequentialModel,
  src: SequenceSource,
  opts: ModalityStatsOptions,
): ModalityStats | null {
  if (!model.explain) return null;
  const split = opts.split ?? "valid";
  const ex = splitExamples(src, split);
  const n = opts.maxUsers ? Math.min(opts.maxUsers, ex.users.length) : ex.users.length;
  const ctx = { training: false, rng: new Rng(0) };
  const task = (opts.progress ?? silentProgress).start(`modality weights (${split})`, n, "users");
  let stats: ModalityStats | null = null;
  model.eval();
  for (let start = 0; start < n; start += opts.batchSize) {
    const end = Math.min(n, start + opts.batchSize);
    const batch = makeBatch(src, ex, null, start, end, opts.maxLen, opts.origin, null);
    noGrad(() =>
      tidy(() => {
        const w = model.explain!(batch, ctx);
        stats ??= newModalityStats(split, w.modalities, opts.maxLen);
        accumulateWeights(stats, batch, w);
      })
    );
    task.tick(end - start);
  }
  task.done();
  return stats ? finishWeights(stats) : null;
}
