/**
 * The batch every sequential model consumes: right-padded item sequences (RecBole layout: valid
 * items at positions 0..len-1, zeros after), their timestamps, and the next-item targets.
 */
export interface SequenceBatch {
  size: number;
  /** Padded length L. */
  len: number;
  /** [size * len] item indices (0 = padding). */
  items: Int32Array;
  /** [size] number of valid positions (>= 1). */
  lengths: Int32Array;
  /** [size * len] timestamps in days since the dataset's first interaction (0 on padding). */
  times: Float32Array;
  /** [size] user indices. */
  users: Int32Array;
  /** [size] next items (training and evaluation targets). */
  targets: Int32Array;
  /** [size] one sampled negative per example (BCE loss), when the trainer drew them. */
  negatives?: Int32Array;
  /**
   * Window training (trainMode "window"): [size * len] the next item at every position, 0 where
   * no loss applies (padding). Absent: the loss applies at each row's last position only.
   */
  positionTargets?: Int32Array;
  /** [size * len] one sampled negative per position with a target (BCE loss in window training). */
  positionNegatives?: Int32Array;
  /**
   * A micro-batch's place in its optimizer step's batch (microBatches): the index there of its
   * first row, and that batch's rows. Absent for a whole batch.
   */
  part?: { from: number; of: number };
}

/**
 * The rows of `batch` that take part in a per-step term capped at `cap` rows of the step's batch
 * (VSCL's vsclRows): all of them up to the cap for a whole batch; for a micro-batch, its share in
 * proportion to its rows, cumulative rounding keeping the step's total. So how many rows the
 * term covers per step does not depend on how the batch was split to fit in memory.
 */
export function rowShare(batch: SequenceBatch, cap: number): number {
  const { from, of } = batch.part ?? { from: 0, of: batch.size };
  const total = Math.min(cap, of);
  return Math.round((total * (from + batch.size)) / of) - Math.round((total * from) / of);
}

/**
 * Where a batch's next-item loss applies: flat indices into its [size * len] positions, with the
 * target (and sampled negative) at each. One per row at its last position, or, in window
 * training, every position that has a target.
 */
export interface LossPositions {
  index: Int32Array;
  targets: Int32Array;
  negatives?: Int32Array;
}

export function lossPositions(batch: SequenceBatch): LossPositions {
  const at = batch.positionTargets;
  if (!at) {
    const index = new Int32Array(batch.size);
    for (let b = 0; b < batch.size; b++) index[b] = b * batch.len + batch.lengths[b] - 1;
    return { index, targets: batch.targets, negatives: batch.negatives };
  }
  const index = new Int32Array(lossCount(batch));
  let n = 0;
  for (let i = 0; i < at.length; i++) if (at[i] > 0) index[n++] = i;
  const neg = batch.positionNegatives;
  return {
    index,
    targets: index.map((i) => at[i]),
    negatives: neg ? index.map((i) => neg[i]) : undefined,
  };
}

/** How many terms the batch's next-item loss averages: rows, or targets in window training. */
export function lossCount(batch: SequenceBatch): number {
  const at = batch.positionTargets;
  if (!at) return batch.size;
  let n = 0;
  for (let i = 0; i < at.length; i++) if (at[i] > 0) n++;
  return n;
}

/**
 * n items and times of one row, from `from` in the sources to `at` in the batch arrays. A plain
 * loop in a function of its own: a subarray per row costs more than the copy, and inside a long
 * row loop the copy was recompiled on the stack at every call instead of optimized once.
 */
export function copyRow(
  srcItems: Int32Array,
  srcTimes: Float32Array | Float64Array,
  from: number,
  n: number,
  items: Int32Array,
  times: Float32Array | Float64Array,
  at: number,
): void {
  for (let j = 0; j < n; j++) {
    items[at + j] = srcItems[from + j];
    times[at + j] = srcTimes[from + j];
  }
}
