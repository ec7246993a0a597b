/**
 * Window training (trainMode "window"): one example per user whose batch row carries the next
 * item at every position. Batches built by hand, the loss at every position against per-position
 * losses computed by hand and through prefix batches, micro-batch weights, and seeded windows.
 */
import assert from "node:assert/strict";
import { Fdsa } from "../core/models/fdsa.ts";
import { Gru4rec } from "../core/models/gru4rec.ts";
import { lossCount, lossPositions, type SequenceBatch } from "../core/models/batch.ts";
import {
  makeBatch,
  microBatches,
  type SequenceSource,
  splitExamples,
  windowExamples,
} from "../core/models/examples.ts";
import type { SequentialModel } from "../core/models/model.ts";
import { Sasrec } from "../core/models/sasrec.ts";
import { Rng } from "../core/random.ts";
import { tidy, withBackend } from "../core/tensor.ts";
import { randomWindowEnds } from "../core/train/order.ts";
import { f64 } from "./helpers/gradcheck.ts";
import { ITEMS, itemSide, model as tinyDuafmat } from "./helpers/tiny_duaf.ts";

/** Sequences of the given items (times one day apart) as a dataset slice. */
function source(seqs: number[][], numItems: number): SequenceSource {
  const offsets = [0];
  for (const s of seqs) offsets.push(offsets[offsets.length - 1] + s.length);
  const all = seqs.flat();
  return {
    numUsers: seqs.length,
    numItems,
    seqOffsets: Int32Array.from(offsets),
    seqItems: Int32Array.from(all),
    seqTimes: Float64Array.from(all, (_, i) => 86400 * i),
  };
}

Deno.test("window batches: inputs, targets shifted by one, no loss on padding, a negative per position", () => {
  // User 0: 7 items, so items 6 and 7 are valid and test and its training history is 1..5.
  // User 1: 4 items, a training history of 8 and 9. User 2: 3 items, nothing to train on.
  const src = source([[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14]], 20);
  const ex = windowExamples(src);
  assert.deepEqual(ex.users, Int32Array.from([0, 1]));
  assert.deepEqual(ex.positions, Int32Array.from([4, 1]));

  const b = makeBatch(src, ex, null, 0, 2, 3, 0, new Rng(1), true);
  assert.equal(b.len, 3);
  assert.deepEqual(b.lengths, Int32Array.from([3, 1]));
  // maxLen 3: the last maxLen + 1 = 4 training items of user 0 are 2..5.
  assert.deepEqual(b.items, Int32Array.from([2, 3, 4, 8, 0, 0]));
  assert.deepEqual(b.positionTargets, Int32Array.from([3, 4, 5, 9, 0, 0]));
  assert.deepEqual(b.targets, Int32Array.from([5, 9]), "the last position's target as in prefix");
  assert.equal(b.negatives, undefined);
  const neg = b.positionNegatives!;
  const seen = [new Set([1, 2, 3, 4, 5, 6, 7]), new Set([8, 9, 10, 11])];
  for (let i = 0; i < neg.length; i++) {
    if (b.positionTargets![i] === 0) assert.equal(neg[i], 0, `padding ${i} has no negative`);
    else {
      assert.ok(neg[i] >= 1 && neg[i] <= 20 && !seen[Math.floor(i / 3)].has(neg[i]), `${i}`);
    }
  }

  const at = lossPositions(b);
  assert.deepEqual(at.index, Int32Array.from([0, 1, 2, 3]));
  assert.deepEqual(at.targets, Int32Array.from([3, 4, 5, 9]));
  assert.deepEqual(at.negatives, neg.slice(0, 4));
  assert.equal(lossCount(b), 4);

  // The same rows in prefix training: the loss only at each row's last position.
  const prefix = makeBatch(src, ex, null, 0, 2, 3, 0, null);
  assert.equal(prefix.positionTargets, undefined);
  assert.deepEqual(lossPositions(prefix).index, Int32Array.from([2, 3]));
  assert.deepEqual(lossPositions(prefix).targets, Int32Array.from([5, 9]));
  assert.equal(lossCount(prefix), 2);
  // Window examples are the prefix examples that end each training history.
  const all = splitExamples(src, "train");
  assert.deepEqual([...all.positions].filter((_, e) => all.users[e] === 0).at(-1), 4);

  // Micro-batches keep each row's targets and negatives, trimmed to their own length.
  const [m0, m1] = microBatches(b, 3);
  assert.deepEqual([m0.len, m1.len], [3, 1]);
  assert.deepEqual(m0.positionTargets, Int32Array.from([3, 4, 5]));
  assert.deepEqual(m1.positionTargets, Int32Array.from([9]));
  assert.deepEqual(m1.positionNegatives, neg.slice(3, 4));
  assert.equal(lossCount(m0) + lossCount(m1), lossCount(b));
});

Deno.test("randomWindowEnds: full windows drawn from the whole history, short histories kept, seeded", () => {
  const src = source([Array.from({ length: 40 }, (_, i) => i + 1), [1, 2, 3, 4, 5, 6]], 50);
  const ex = windowExamples(src);
  assert.deepEqual(ex.positions, Int32Array.from([37, 3]));
  const rng = new Rng(4);
  const ends = new Set<number>();
  for (let epoch = 0; epoch < 400; epoch++) {
    const drawn = randomWindowEnds(ex, 10, rng);
    assert.equal(drawn.positions[1], 3, "a history shorter than maxLen + 1 keeps its window");
    ends.add(drawn.positions[0]);
  }
  // Every full window of 10 inputs ends somewhere in 10..37: all 28 ends come up.
  assert.deepEqual([...ends].sort((a, b) => a - b), Array.from({ length: 28 }, (_, i) => 10 + i));
  assert.deepEqual(
    randomWindowEnds(ex, 10, new Rng(9)).positions,
    randomWindowEnds(ex, 10, new Rng(9)).positions,
  );
});

/** A window batch over `numItems` items with a negative per position, in days from 0. */
function windowBatch(seqs: number[][], numItems: number, maxLen: number): SequenceBatch {
  const src = source(seqs.map((s) => [...s, numItems, numItems]), numItems);
  return makeBatch(src, windowExamples(src), null, 0, seqs.length, maxLen, 0, new Rng(3), true);
}

/** Row r's prefix ending at position j, with that position's target: a prefix-training batch. */
function prefixBatch(b: SequenceBatch, r: number, j: number): SequenceBatch {
  const row = (a: Int32Array | Float32Array) => a.slice(r * b.len, r * b.len + j + 1);
  return {
    size: 1,
    len: j + 1,
    items: row(b.items) as Int32Array,
    times: row(b.times) as Float32Array,
    lengths: Int32Array.from([j + 1]),
    users: Int32Array.from([b.users[r]]),
    targets: Int32Array.from([b.positionTargets![r * b.len + j]]),
    negatives: Int32Array.from([b.positionNegatives![r * b.len + j]]),
  };
}

const SEQS = [[1, 2, 3, 4, 5], [6, 1], [2, 4, 6, 3]];

/** Equal up to float32 read-back rounding (the computation itself is float64). */
function near(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));
}

Deno.test("SASRec window loss: the mean over positions of CE and BCE computed by hand", () => {
  withBackend(f64, () => {
    for (const kind of ["ce", "bce"] as const) {
      const model = new Sasrec({
        numItems: 7,
        maxLen: 4,
        layers: 1,
        heads: 2,
        hidden: 4,
        inner: 8,
        hiddenDropout: 0.5,
        attnDropout: 0.5,
        layerNormEps: 1e-12,
        initStd: 0.5,
        loss: kind,
      }, new Rng(2));
      const b = windowBatch(SEQS, 7, 4);
      const ctx = { training: false, rng: new Rng(0) };
      const { got, h, table } = tidy(() => ({
        got: model.loss(b, ctx).total.toArray()[0],
        h: model.encode(b, ctx).toArray(),
        table: model.itemEmbedding.weight.toArray(),
      }));
      const d = 4;
      const dot = (at: number, item: number) => {
        let s = 0;
        for (let c = 0; c < d; c++) s += h[at * d + c] * table[item * d + c];
        return s;
      };
      const softplus = (x: number) => Math.log1p(Math.exp(x));
      let sum = 0;
      let n = 0;
      for (let i = 0; i < b.size * b.len; i++) {
        const t = b.positionTargets![i];
        if (t === 0) continue;
        if (kind === "ce") {
          const logits = Array.from({ length: 8 }, (_, item) => dot(i, item));
          const max = Math.max(...logits);
          const lse = max + Math.log(logits.reduce((s, x) => s + Math.exp(x - max), 0));
          sum += lse - logits[t];
        } else sum += softplus(-dot(i, t)) + softplus(dot(i, b.positionNegatives![i]));
        n++;
      }
      assert.equal(n, 4 + 1 + 3);
      assert.ok(near(got, sum / n), `${kind}: ${got} vs ${sum / n}`);
    }
  });
});

Deno.test("every model's window loss is the mean of its prefix losses, and micro-batches add up to it", () => {
  withBackend(f64, () => {
    const text = itemSide(new Rng(5), false).text!;
    const enc = {
      layers: 1,
      heads: 2,
      hidden: 4,
      inner: 8,
      hiddenDropout: 0.5,
      attnDropout: 0.5,
      layerNormEps: 1e-12,
      initStd: 0.5,
      maxLen: 4,
    };
    for (const kind of ["ce", "bce"] as const) {
      const models: SequentialModel[] = [
        new Sasrec({ ...enc, numItems: ITEMS, loss: kind }, new Rng(1)),
        new Fdsa({ ...enc, numItems: ITEMS, loss: kind }, new Rng(1), text),
        new Gru4rec({
          numItems: ITEMS,
          embeddingSize: 4,
          hiddenSize: 5,
          numLayers: 1,
          dropout: 0.3,
          loss: kind,
        }, new Rng(1)),
        tinyDuafmat({ vscl: false }, itemSide(new Rng(5), false), kind),
      ];
      for (const model of models) {
        const b = windowBatch(SEQS, ITEMS, 4);
        const ctx = { training: false, rng: new Rng(0) };
        const loss = (x: SequenceBatch) => tidy(() => model.loss(x, ctx).total.toArray()[0]);
        let sum = 0;
        for (let r = 0; r < b.size; r++) {
          for (let j = 0; j < b.lengths[r]; j++) sum += loss(prefixBatch(b, r, j));
        }
        const name = `${model.kind} ${kind}`;
        const whole = loss(b);
        assert.ok(near(whole, sum / lossCount(b)), `${name}: ${whole} vs ${sum / lossCount(b)}`);
        // The trainer weights each micro-batch's mean by its share of the batch's targets.
        let acc = 0;
        for (const m of microBatches(b, 4)) acc += (lossCount(m) / lossCount(b)) * loss(m);
        assert.ok(near(acc, whole), `${name}: micro-batches ${acc} vs ${whole}`);
      }
    }
  });
});
