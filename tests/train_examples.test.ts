/** Training examples and batches: the length-bucketed order and right-padded batches. */
import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import {
  type Examples,
  makeBatch,
  microBatches,
  type SequenceSource,
} from "../core/models/examples.ts";
import { rowShare, type SequenceBatch } from "../core/models/batch.ts";
import { bucketedOrder, shuffledOrder } from "../core/train/order.ts";
import { positionIds } from "../core/models/sasrec.ts";

function examples(n: number, maxPos: number, seed: number): Examples {
  const rng = new Rng(seed);
  return {
    users: Int32Array.from({ length: n }, (_, i) => i),
    positions: Int32Array.from({ length: n }, () => 1 + rng.int(maxPos)),
  };
}

/** The order as first written: a stable comparison sort of each window by capped length. */
function referenceOrder(ex: Examples, maxLen: number, batchSize: number, rng: Rng, window = 32) {
  const n = ex.users.length;
  const order = shuffledOrder(n, rng);
  const span = batchSize * window;
  const len = (e: number) => Math.min(maxLen, ex.positions[e]);
  for (let start = 0; start < n; start += span) {
    const part = Array.from(order.subarray(start, Math.min(n, start + span)));
    part.sort((a, b) => len(a) - len(b));
    order.set(part, start);
  }
  const batches: Int32Array[] = [];
  for (let start = 0; start < n; start += batchSize) {
    batches.push(order.slice(start, start + batchSize));
  }
  rng.shuffle(batches);
  return Int32Array.from(batches.flatMap((b) => [...b]));
}

Deno.test("bucketedOrder: the same order as a stable sort of each window by length", () => {
  for (
    const [n, maxPos, maxLen, batchSize, window] of [
      [5000, 120, 50, 64, 4],
      [1000, 10, 50, 7, 3],
      [333, 60, 20, 1000, 32],
      [1, 1, 50, 8, 32],
    ]
  ) {
    const ex = examples(n, maxPos, n);
    const got = bucketedOrder(ex, maxLen, batchSize, new Rng(5), window);
    const want = referenceOrder(ex, maxLen, batchSize, new Rng(5), window);
    assert.deepEqual(got, want, `n=${n}`);
    assert.deepEqual([...got].sort((a, b) => a - b), [...ex.users]);
  }
});

Deno.test("bucketedOrder: batches within a window share a length range", () => {
  const ex = examples(4096, 50, 3);
  const order = bucketedOrder(ex, 50, 128, new Rng(1), 32);
  // One window holds every example here: each batch's lengths are a run of the sorted lengths.
  let spread = 0;
  for (let b = 0; b < 32; b++) {
    const lens = [...order.subarray(b * 128, b * 128 + 128)].map((e) => ex.positions[e]);
    spread = Math.max(spread, Math.max(...lens) - Math.min(...lens));
  }
  assert.ok(spread <= 3, `largest length spread within a batch: ${spread}`);
});

Deno.test("makeBatch: right-padded to the longest history, times in days from the origin", () => {
  const src: SequenceSource = {
    numUsers: 2,
    numItems: 9,
    seqOffsets: Int32Array.from([0, 4, 9]),
    seqItems: Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]),
    seqTimes: Float64Array.from([0, 86400, 2 * 86400, 3 * 86400, 10, 20, 30, 40, 86400 * 5]),
  };
  const ex: Examples = { users: Int32Array.from([0, 1, 1]), positions: Int32Array.from([2, 4, 1]) };
  const b = makeBatch(src, ex, null, 0, 3, 3, 0, null);
  assert.equal(b.len, 3);
  assert.deepEqual(b.lengths, Int32Array.from([2, 3, 1]));
  assert.deepEqual(b.items, Int32Array.from([1, 2, 0, 6, 7, 8, 5, 0, 0]));
  assert.deepEqual(b.targets, Int32Array.from([3, 9, 6]));
  assert.deepEqual(b.times.subarray(0, 2), Float32Array.from([0, 1]));
  assert.deepEqual(b.times.subarray(3, 6), Float32Array.from([20, 30, 40].map((t) => t / 86400)));
});

Deno.test("positionIds: 0..len-1 on every row, for any shape", () => {
  for (const [size, len] of [[1, 1], [3, 7], [2048, 50], [5, 1], [17, 33]]) {
    const ids = positionIds({ size, len } as Parameters<typeof positionIds>[0]).toArray();
    assert.equal(ids.length, size * len);
    for (let i = 0; i < ids.length; i++) assert.equal(ids[i], i % len, `[${size}, ${len}] at ${i}`);
  }
});

Deno.test("rowShare: a per-step row cap is shared by micro-batches in proportion to their rows", () => {
  const size = 10, len = 4;
  const b: SequenceBatch = {
    size,
    len,
    items: new Int32Array(size * len).fill(1),
    times: new Float32Array(size * len),
    lengths: new Int32Array(size).fill(len),
    users: Int32Array.from({ length: size }, (_, i) => i),
    targets: new Int32Array(size).fill(2),
  };
  assert.equal(rowShare(b, 5), 5);
  assert.equal(rowShare(b, 20), 10);
  const parts = microBatches(b, 12);
  assert.deepEqual(parts.map((p) => p.size), [3, 3, 3, 1]);
  assert.deepEqual(parts.map((p) => p.part), [0, 3, 6, 9].map((from) => ({ from, of: 10 })));
  // 5 of 10 rows: 1.5, 3, 4.5 and 5 rows by the cumulative rounding.
  assert.deepEqual(parts.map((p) => rowShare(p, 5)), [2, 1, 2, 0]);
  assert.deepEqual(parts.map((p) => rowShare(p, 20)), [3, 3, 3, 1]);
  for (const cap of [1, 2, 3, 7, 9, 10]) {
    assert.equal(parts.reduce((n, p) => n + rowShare(p, cap), 0), cap);
  }
});
