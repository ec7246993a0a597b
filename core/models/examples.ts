/**
 * Leave-one-out examples and padded batches. For a user with n interactions the last is the
 * test target, the second-last the valid target, and every earlier position p >= 1 is a
 * training example whose history is the (at most maxLen) items before it (RecBole's prefix
 * augmentation for sequential models, trainMode "prefix"). Window training (trainMode "window")
 * has one example per user instead, with a target at every position (windowExamples).
 */
import type { Rng } from "../random.ts";
import { copyRow, type SequenceBatch } from "./batch.ts";

/** The slice of the dataset the example builders need (core/data/dataset.ts provides it). */
export interface SequenceSource {
  numUsers: number;
  numItems: number;
  seqOffsets: Int32Array;
  seqItems: Int32Array;
  seqTimes: Float64Array;
}

export type SplitName = "train" | "valid" | "test";

/** Examples as (user, target position within the user's sequence). */
export interface Examples {
  users: Int32Array;
  positions: Int32Array;
}

const SECONDS_PER_DAY = 86400;

export function splitExamples(src: SequenceSource, split: SplitName): Examples {
  const users: number[] = [];
  const positions: number[] = [];
  for (let u = 0; u < src.numUsers; u++) {
    const n = src.seqOffsets[u + 1] - src.seqOffsets[u];
    if (split === "test" && n >= 2) {
      users.push(u);
      positions.push(n - 1);
    } else if (split === "valid" && n >= 3) {
      users.push(u);
      positions.push(n - 2);
    } else if (split === "train") {
      for (let p = 1; p <= n - 3; p++) {
        users.push(u);
        positions.push(p);
      }
    }
  }
  return { users: Int32Array.from(users), positions: Int32Array.from(positions) };
}

/**
 * The timestamp origin (seconds): the dataset's first interaction. Time embeddings work in days
 * since it, so float32 keeps sub-hour precision.
 */
export function timestampOrigin(src: SequenceSource): number {
  let min = Infinity;
  for (let i = 0; i < src.seqTimes.length; i++) if (src.seqTimes[i] < min) min = src.seqTimes[i];
  return Number.isFinite(min) ? min : 0;
}

/**
 * Window training examples (trainMode "window", as the original SASRec trains): one per user
 * with at least one training target, at the end of the user's training history (everything
 * before the valid and test items). Its batch row holds the (at most maxLen) items before that
 * position as input and the next item at every input position as targets.
 */
export function windowExamples(src: SequenceSource): Examples {
  const users: number[] = [];
  const positions: number[] = [];
  for (let u = 0; u < src.numUsers; u++) {
    const n = src.seqOffsets[u + 1] - src.seqOffsets[u];
    if (n >= 4) {
      users.push(u);
      positions.push(n - 3);
    }
  }
  return { users: Int32Array.from(users), positions: Int32Array.from(positions) };
}

/**
 * Builds a right-padded batch from examples[start, end). With `rng`, draws one negative per
 * example uniformly from items the user never interacted with. With `everyPosition` (window
 * training) each input position also gets its next item as a target, and with `rng` a negative
 * of its own.
 */
export function makeBatch(
  src: SequenceSource,
  ex: Examples,
  order: Int32Array | null,
  start: number,
  end: number,
  maxLen: number,
  origin: number,
  negRng: Rng | null,
  everyPosition = false,
): SequenceBatch {
  const size = end - start;
  // Pad only to the longest history in the batch: attention and recurrence are causal and the
  // padding sits on the right, so the outputs at each row's last position are unchanged.
  let len = 1;
  for (let i = start; i < end; i++) {
    const e = order ? order[i] : i;
    len = Math.max(len, Math.min(maxLen, ex.positions[e]));
  }
  const days = daysSinceOrigin(src, origin);
  const items = new Int32Array(size * len);
  const times = new Float32Array(size * len);
  const lengths = new Int32Array(size);
  const users = new Int32Array(size);
  const targets = new Int32Array(size);
  const negatives = negRng && !everyPosition ? new Int32Array(size) : undefined;
  const positionTargets = everyPosition ? new Int32Array(size * len) : undefined;
  const positionNegatives = negRng && everyPosition ? new Int32Array(size * len) : undefined;
  for (let r = 0; r < size; r++) {
    const e = order ? order[start + r] : start + r;
    const u = ex.users[e];
    const off = src.seqOffsets[u];
    const p = ex.positions[e];
    const from = Math.max(0, p - maxLen);
    const l = p - from;
    copyRow(src.seqItems, days, off + from, l, items, times, r * len);
    lengths[r] = l;
    users[r] = u;
    targets[r] = src.seqItems[off + p];
    const n = src.seqOffsets[u + 1] - off;
    if (negatives && negRng) negatives[r] = unseenItem(src, off, n, negRng);
    if (positionTargets) {
      for (let j = 0; j < l; j++) positionTargets[r * len + j] = src.seqItems[off + from + j + 1];
      if (positionNegatives && negRng) {
        for (let j = 0; j < l; j++) {
          positionNegatives[r * len + j] = unseenItem(src, off, n, negRng);
        }
      }
    }
  }
  return {
    size,
    len,
    items,
    lengths,
    times,
    users,
    targets,
    negatives,
    ...(positionTargets ? { positionTargets, positionNegatives } : {}),
  };
}

/** A uniform draw among the items (1..numItems) absent from the n items at `off`. */
function unseenItem(src: SequenceSource, off: number, n: number, rng: Rng): number {
  for (;;) {
    const cand = 1 + rng.int(src.numItems);
    let seen = false;
    for (let j = 0; j < n && !seen; j++) seen = src.seqItems[off + j] === cand;
    if (!seen) return cand;
  }
}

const dayTimes = new WeakMap<Float64Array, { origin: number; days: Float32Array }>();

/**
 * Every interaction's time in days since `origin`, as batches store it, computed once per
 * dataset and origin: every epoch copies the same values into its batches.
 */
function daysSinceOrigin(src: SequenceSource, origin: number): Float32Array {
  const hit = dayTimes.get(src.seqTimes);
  if (hit && hit.origin === origin) return hit.days;
  const days = new Float32Array(src.seqTimes.length);
  for (let i = 0; i < days.length; i++) days[i] = (src.seqTimes[i] - origin) / SECONDS_PER_DAY;
  dayTimes.set(src.seqTimes, { origin, days });
  return days;
}

/** One user's history for serving: item indices (1..I) and unix-second timestamps. */
export interface History {
  items: number[];
  times: number[];
  user?: number;
}

/** A right-padded batch from arbitrary histories (serving); targets are unused (0). */
export function batchFromHistories(
  histories: History[],
  maxLen: number,
  origin: number,
): SequenceBatch {
  const padded = padSequences(histories.map((h) => {
    const from = Math.max(0, h.items.length - maxLen);
    return {
      items: h.items.slice(from),
      times: h.times.slice(from).map((t) => (t - origin) / SECONDS_PER_DAY),
    };
  }));
  const size = histories.length;
  return {
    ...padded,
    size,
    users: Int32Array.from(histories, (h) => h.user ?? 0),
    targets: new Int32Array(size),
  };
}

/** Right-pads sequences (times already in days) into [size, len] arrays, len = the longest. */
export function padSequences(
  seqs: readonly { items: readonly number[]; times: readonly number[] }[],
): { len: number; items: Int32Array; times: Float32Array; lengths: Int32Array } {
  const len = Math.max(1, ...seqs.map((s) => s.items.length));
  const items = new Int32Array(seqs.length * len);
  const times = new Float32Array(seqs.length * len);
  const lengths = new Int32Array(seqs.length);
  seqs.forEach((s, r) => {
    items.set(s.items, r * len);
    times.set(s.times, r * len);
    lengths[r] = s.items.length;
  });
  return { len, items, times, lengths };
}

/** Rows [from, to) of a batch, trimmed to their own longest history. */
export function sliceBatch(b: SequenceBatch, from: number, to: number): SequenceBatch {
  const size = to - from;
  let len = 1;
  for (let r = from; r < to; r++) len = Math.max(len, b.lengths[r]);
  const rows = <T extends Int32Array | Float32Array>(src: T, dst: T): T => {
    for (let r = 0; r < size; r++) {
      dst.set(src.subarray((from + r) * b.len, (from + r) * b.len + len), r * len);
    }
    return dst;
  };
  const out: SequenceBatch = {
    size,
    len,
    items: rows(b.items, new Int32Array(size * len)),
    times: rows(b.times, new Float32Array(size * len)),
    lengths: b.lengths.slice(from, to),
    users: b.users.slice(from, to),
    targets: b.targets.slice(from, to),
    negatives: b.negatives?.slice(from, to),
  };
  if (b.positionTargets) out.positionTargets = rows(b.positionTargets, new Int32Array(size * len));
  if (b.positionNegatives) {
    out.positionNegatives = rows(b.positionNegatives, new Int32Array(size * len));
  }
  return out;
}

/** Splits a batch into micro-batches of at most `budget` padded tokens (0 = no split). */
export function microBatches(b: SequenceBatch, budget: number, padsTo = 0): SequenceBatch[] {
  const len = Math.max(b.len, padsTo);
  if (budget <= 0 || b.size * len <= budget) return [b];
  const rows = Math.max(1, Math.floor(budget / len));
  const out: SequenceBatch[] = [];
  for (let from = 0; from < b.size; from += rows) {
    const part = sliceBatch(b, from, Math.min(b.size, from + rows));
    part.part = { from, of: b.size };
    out.push(part);
  }
  return out;
}
