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
