/**
 * Training-only per-epoch draws: the example order (a seeded shuffle, or length-bucketed
 * batches), in window training with windowEnd "random" where each user's window ends, and in
 * prefix training with prefixPerUser which prefixes train. The
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

/**
 * Window examples (windowExamples) with each window's end drawn uniformly among those that give
 * a full window of maxLen inputs: histories longer than maxLen + 1 items then train on every
 * target over the epochs instead of only their most recent maxLen. Shorter histories keep their
 * one window.
 */
export function randomWindowEnds(ex: Examples, maxLen: number, rng: Rng): Examples {
  const positions = new Int32Array(ex.positions.length);
  for (let e = 0; e < positions.length; e++) {
    const last = ex.positions[e];
    const first = Math.min(maxLen, last);
    positions[e] = last > first ? first + rng.int(last - first + 1) : last;
  }
  return { users: ex.users, positions };
}

/** [start, end) of each user's examples, which splitExamples lists contiguously. */
function* userRuns(users: Int32Array): Generator<[number, number]> {
  for (let start = 0; start < users.length;) {
    let end = start + 1;
    while (end < users.length && users[end] === users[start]) end++;
    yield [start, end];
    start = end;
  }
}

/** How many examples sampledPrefixes keeps: min(perUser, the user's prefixes), summed over users. */
export function sampledPrefixCount(ex: Examples, perUser: number): number {
  let kept = 0;
  for (const [start, end] of userRuns(ex.users)) kept += Math.min(perUser, end - start);
  return kept;
}

/**
 * `perUser` prefix examples per user, drawn without replacement (all of a user's when it has no
 * more), in the order splitExamples lists them. The count is the same every epoch, so an epoch's
 * steps are too. Examples must list each user's prefixes contiguously, as splitExamples does.
 */
export function sampledPrefixes(ex: Examples, perUser: number, rng: Rng): Examples {
  const keep: number[] = [];
  for (const [start, end] of userRuns(ex.users)) {
    const count = end - start;
    if (count <= perUser) { for (let e = start; e < end; e++) keep.push(e); }
    else {
      // A partial Fisher-Yates shuffle draws perUser of the user's prefixes; sorted back into order.
      const idx = Int32Array.from({ length: count }, (_, i) => start + i);
      for (let i = 0; i < perUser; i++) {
        const j = i + rng.int(count - i);
        const t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
      }
      keep.push(...idx.subarray(0, perUser).sort());
    }
  }
  return {
    users: Int32Array.from(keep, (e) => ex.users[e]),
    positions: Int32Array.from(keep, (e) => ex.positions[e]),
  };
}
