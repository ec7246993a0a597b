/** Full-ranking evaluation of a sequential model over one leave-one-out split. */
import type { SequenceBatch } from "../models/batch.ts";
import type { SequentialModel } from "../models/model.ts";
import type { Progress } from "../progress.ts";
import { silentProgress } from "../progress.ts";
import { Rng } from "../random.ts";
import type { Backend, RankScoresArgs, Storage } from "../backend.ts";
import { empty, getBackend, keep, noGrad, type Tensor, tensor, tidy } from "../tensor.ts";
import {
  type Examples,
  makeBatch,
  type SequenceSource,
  splitExamples,
} from "../models/examples.ts";
import { type ForwardContext, FrozenValues } from "../nn/context.ts";
import { matmul } from "../ops/matmul.ts";
import { blockRanks, DEFAULT_BLOCK_ITEMS } from "./block_rank.ts";
import { addRank, finalize, newAccumulator, rankOf } from "./metrics.ts";

export interface EvalOptions {
  split: "valid" | "test";
  ks: number[];
  /** Exclude items the user interacted with before the target from the ranking. */
  maskSeen: boolean;
  batchSize: number;
  maxLen: number;
  /** Timestamp origin in seconds (the trainer's). */
  origin: number;
  progress?: Progress;
  /**
   * Items per scoring block for models with dot-product scores, used even where the backend fuses
   * scoring and ranking (0 or absent: blocks only where it does not and a batch's whole score
   * matrix would pass BLOCK_ABOVE_BYTES). Metrics are the same either way.
   */
  blockItems?: number;
  /**
   * Rank only `n` users of the split, drawn without replacement by `rng` (validation on a fixed
   * sample at large user counts); absent, or n at least the split's users: every user.
   */
  sample?: { n: number; rng: Rng };
}

/**
 * A batch's [users x items] scores above this size are ranked in item blocks instead, on backends
 * without a wholeScoresBytes of their own.
 */
export const BLOCK_ABOVE_BYTES = 64 << 20;

/**
 * Whether evaluation ranks a batch of `users` score rows over `items` columns in item blocks on a
 * backend with this wholeScoresBytes (absent: BLOCK_ABOVE_BYTES). The memory estimate asks too.
 */
export function ranksInBlocks(users: number, items: number, wholeScoresBytes?: number): boolean {
  return users * items * 4 > (wholeScoresBytes ?? BLOCK_ABOVE_BYTES);
}

export interface EvalResult {
  split: string;
  users: number;
  metrics: Record<string, number>;
}

export function evaluate(
  model: SequentialModel,
  src: SequenceSource,
  opts: EvalOptions,
): EvalResult {
  // The parameters do not change during an evaluation: item tables are built once (frozen).
  const frozen = new FrozenValues();
  const ctx = { training: false, rng: new Rng(0), frozen };
  model.eval();
  try {
    return rankEveryBatch(model, src, opts, ctx);
  } finally {
    frozen.dispose();
  }
}

function rankEveryBatch(
  model: SequentialModel,
  src: SequenceSource,
  opts: EvalOptions,
  ctx: ForwardContext,
): EvalResult {
  const run = startEval(src, opts);
  const cols = src.numItems + 1;
  const inBlocks = ranksInBlocks(opts.batchSize, cols, getBackend().wholeScoresBytes);
  const blocks = {
    items: opts.blockItems || (inBlocks ? DEFAULT_BLOCK_ITEMS : 0),
    force: (opts.blockItems ?? 0) > 0,
  };
  const maxK = Math.max(...opts.ks);
  const pack = new RankTablePack();
  try {
    rankBatches(model, run, blocks, maxK, pack, ctx);
  } finally {
    pack.dispose();
  }
  return run.finish();
}

/**
 * The item table's packed form for the fused ranking, kept across an evaluation's batches: the
 * table is the same tensor for all of them (built once: FrozenValues), so it is packed once.
 */
class RankTablePack {
  #buffer: Tensor | null = null;
  #table: Storage | null = null;
  #off = false;

  /** RankScoresArgs.pack for `items` on `be`, or nothing where the backend packs per call. */
  for(be: Backend, items: Tensor): RankScoresArgs["pack"] {
    if (this.#off || !be.rankPackFloats) return undefined;
    const [cols, d] = items.shape;
    const floats = be.rankPackFloats(cols, d);
    if (this.#buffer && this.#buffer.size !== floats) this.dispose();
    this.#buffer ??= keep(empty([floats]));
    const ready = this.#table === items.storage;
    this.#table = items.storage;
    return { buffer: this.#buffer.storage, ready };
  }

  /** The backend did not take the call: it will not later either. */
  refused(): void {
    this.#off = true;
    this.dispose();
  }

  dispose(): void {
    this.#buffer?.dispose();
    this.#buffer = null;
    this.#table = null;
  }
}

/**
 * Each batch's ranks: through the backend's fused product and ranking where it has one (any
 * catalog size: its memory is a packed copy of the item table), else in blocks of `blocks.items`
 * items with a running top-K when that is set (`blocks.force`: even where the backend fuses),
 * else from the whole score matrix. The metrics are the same on every path.
 */
function rankBatches(
  model: SequentialModel,
  run: ReturnType<typeof startEval>,
  blocks: { items: number; force: boolean },
  maxK: number,
  pack: RankTablePack,
  ctx: ForwardContext,
): void {
  for (const batch of run.batches()) {
    const ranks = noGrad(() =>
      tidy(() => {
        const excluded = (r: number) => run.excluded(batch, r);
        const parts = model.scoreParts?.(batch, ctx);
        const fused = parts && !blocks.force && fusedRanks(parts, batch.targets, excluded, pack);
        if (fused) return fused;
        if (parts && blocks.items > 0) {
          return blockRanks(parts.users, parts.items, batch.targets, excluded, maxK, blocks.items);
        }
        // scoreAll is the product of scoreParts where a model has both: not run twice.
        const scores = parts
          ? matmul(parts.users, parts.items, false, true)
          : model.scoreAll(batch, ctx);
        if (!scores.backend.rankRows) return scores.toFloat32();
        return ranksOnBackend(scores, batch.targets, excluded);
      })
    );
    if (ranks instanceof Int32Array) run.addRanks(batch, ranks);
    else run.rank(batch, ranks);
  }
}

/** The rows' excluded columns as rankRows takes them: offsets [rows + 1] and the columns. */
function excludedColumns(rows: number, excluded: (row: number) => ReadonlySet<number>) {
  const offsets = new Int32Array(rows + 1);
  const columns: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (const c of excluded(r)) columns.push(c);
    offsets[r + 1] = columns.length;
  }
  return {
    offsets: tensor(offsets, [rows + 1], "i32"),
    columns: tensor(columns.length ? columns : [0], [Math.max(1, columns.length)], "i32"),
  };
}

/**
 * The ranks of ranksOnBackend over the scores users items^T without those scores, where the
 * backend fuses the product with the ranking (Backend.rankScores); null where it does not.
 */
function fusedRanks(
  { users, items }: { users: Tensor; items: Tensor },
  targets: Int32Array,
  excluded: (row: number) => ReadonlySet<number>,
  pack: RankTablePack,
): Int32Array | null {
  const [rows, d] = users.shape;
  const be = users.backend;
  if (!be.rankScores) return null;
  const ex = excludedColumns(rows, excluded);
  const out = empty([rows], "i32");
  const args = {
    users: users.storage,
    items: items.storage,
    targets: tensor(targets, [rows], "i32").storage,
    exOffsets: ex.offsets.storage,
    exCols: ex.columns.storage,
    out: out.storage,
    rows,
    cols: items.shape[0],
    d,
    pack: pack.for(be, items),
  };
  if (be.rankScores(args)) return out.toArray() as Int32Array;
  pack.refused();
  return null;
}

/**
 * Each row's rank (metrics.ts rankOf) computed where the scores [rows, cols] are: only the
 * excluded columns go up and the ranks come down, not the scores.
 */
function ranksOnBackend(
  scores: Tensor,
  targets: Int32Array,
  excluded: (row: number) => ReadonlySet<number>,
): Int32Array {
  const [rows, cols] = scores.shape;
  const ex = excludedColumns(rows, excluded);
  const out = empty([rows], "i32");
  scores.backend.rankRows!(
    scores.storage,
    tensor(targets, [rows], "i32").storage,
    ex.offsets.storage,
    ex.columns.storage,
    out.storage,
    rows,
    cols,
  );
  return out.toArray() as Int32Array;
}

/**
 * The same evaluation through any scorer (an exported graph on onnxruntime, `--runtime ort`):
 * identical batches, ranking and metrics, only the scores come from elsewhere.
 */
export async function evaluateWith(
  scorer: { scoreAll(batch: SequenceBatch): Promise<Float32Array> },
  src: SequenceSource,
  opts: EvalOptions,
): Promise<EvalResult> {
  const run = startEval(src, opts);
  for (const batch of run.batches()) run.rank(batch, await scorer.scoreAll(batch));
  return run.finish();
}

/** `n` of the examples drawn by `rng` without replacement, in their split order. */
function sampleExamples(ex: Examples, sample?: { n: number; rng: Rng }): Examples {
  const total = ex.users.length;
  if (!sample || sample.n >= total) return ex;
  const picked = Int32Array.from({ length: total }, (_, i) => i);
  // A partial Fisher-Yates shuffle: the first n slots are a uniform sample.
  for (let i = 0; i < sample.n; i++) {
    const j = i + sample.rng.int(total - i);
    [picked[i], picked[j]] = [picked[j], picked[i]];
  }
  const keep = picked.subarray(0, sample.n).sort();
  return {
    users: Int32Array.from(keep, (i) => ex.users[i]),
    positions: Int32Array.from(keep, (i) => ex.positions[i]),
  };
}

/** Batches of one split, and the ranking of each batch's scores into the metrics. */
function startEval(src: SequenceSource, opts: EvalOptions) {
  const ex = sampleExamples(splitExamples(src, opts.split), opts.sample);
  const acc = newAccumulator(opts.ks);
  const n = ex.users.length;
  const cols = src.numItems + 1;
  const task = (opts.progress ?? silentProgress).start(`eval ${opts.split}`, n, "users");
  // Users sorted by history length (stable): batches pad only to their own longest history,
  // which cuts the encoder's work several-fold on short-sequence data. Metrics are averages, so
  // the order does not change them.
  const histLen = (e: number) => Math.min(opts.maxLen, ex.positions[e]);
  const order = Int32Array.from(
    Array.from({ length: n }, (_, i) => i).sort((a, b) => histLen(a) - histLen(b)),
  );
  // The current batch's first example: batches() is paused at its yield while rank() runs.
  let start = 0;
  return {
    *batches(): Generator<SequenceBatch> {
      for (start = 0; start < n; start += opts.batchSize) {
        const end = Math.min(n, start + opts.batchSize);
        yield makeBatch(src, ex, order, start, end, opts.maxLen, opts.origin, null);
      }
    },
    /** Columns row r of the current batch never ranks against: padding, seen items. */
    excluded(batch: SequenceBatch, r: number): Set<number> {
      const seen = new Set<number>();
      if (opts.maskSeen) {
        const u = batch.users[r];
        const off = src.seqOffsets[u];
        const p = ex.positions[order[start + r]];
        for (let j = 0; j < p; j++) seen.add(src.seqItems[off + j]);
        seen.delete(batch.targets[r]);
      }
      seen.add(0); // padding is never a candidate
      return seen;
    },
    rank(batch: SequenceBatch, scores: Float32Array): void {
      for (let r = 0; r < batch.size; r++) {
        addRank(acc, rankOf(scores, r * cols, cols, batch.targets[r], this.excluded(batch, r)));
      }
      task.tick(batch.size);
    },
    addRanks(batch: SequenceBatch, ranks: Int32Array): void {
      for (let r = 0; r < batch.size; r++) addRank(acc, ranks[r]);
      task.tick(batch.size);
    },
    finish(): EvalResult {
      task.done();
      return { split: opts.split, users: n, metrics: finalize(acc) };
    },
  };
}
