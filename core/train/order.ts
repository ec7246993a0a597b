/**
 * Training-only example orders: a seeded shuffle per epoch, or length-bucketed batches. The
 * examples and batches themselves are built in core/models/examples.ts.
 */
import type { Rng } from "../random.ts";
import type { Examples } from "../models/examples.ts";

/** A seeded permutation of [0, n). */
export function shuffledOrder(n: number, rng: Rng): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  return rng.shuffle(order);
}

/**
 * A seeded order that batches examples of similar history length together: shuffle, sort each
 * window of `window` batches by length (stable, so ties keep the shuffled order), cut into
 * batches, shuffle the batches.
 */
export function bucketedOrder(
  ex: Examples,
  maxLen: number,
  batchSize: number,
  rng: Rng,
  window = 32,
): Int32Array {
  const n = ex.users.length;
  const order = shuffledOrder(n, rng);
  const span = batchSize * window;
  // Lengths are small integers, so each window is sorted by counting (stable, like the sort).
  const count = new Int32Array(maxLen + 2);
  const sorted = new Int32Array(Math.min(n, span));
  for (let start = 0; start < n; start += span) {
    const part = order.subarray(start, Math.min(n, start + span));
    count.fill(0);
    for (const e of part) count[Math.min(maxLen, ex.positions[e]) + 1]++;
    for (let l = 1; l < count.length; l++) count[l] += count[l - 1];
    for (const e of part) sorted[count[Math.min(maxLen, ex.positions[e])]++] = e;
    part.set(sorted.subarray(0, part.length));
  }
  const batches: Int32Array[] = [];
  for (let start = 0; start < n; start += batchSize) {
    batches.push(order.slice(start, start + batchSize));
  }
  rng.shuffle(batches);
  const out = new Int32Array(n);
  let at = 0;
  for (const b of batches) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}
