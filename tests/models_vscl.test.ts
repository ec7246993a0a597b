/**
 * VSCL's virtual sequences (paper Eq. 20-21): the per-step builder matches a plain reference
 * written straight from the definition (same draws from the same generator), and its outputs
 * keep the history in order, insert only similar items the user has not interacted with, and
 * never more than one per transition.
 */
import assert from "node:assert/strict";
import type { SequenceBatch } from "../core/models/batch.ts";
import {
  buildSimilarityIndex,
  type SimilarityIndex,
  type VirtualSequenceOptions,
  virtualSequences,
} from "../core/models/duaf/vscl.ts";
import { padSequences } from "../core/models/examples.ts";
import { Rng } from "../core/random.ts";
import * as op from "../core/ops/mod.ts";
import { tensor, withBackend } from "../core/tensor.ts";
import { JsBackend } from "../core/backends/js.ts";
import { batch } from "./helpers/tiny_duaf.ts";

const ITEMS = 200;

/** The definition, one insertion at a time, with sets and two cosines per candidate. */
function reference(
  batch: SequenceBatch,
  rows: number,
  idx: SimilarityIndex,
  opts: VirtualSequenceOptions,
  rng: Rng,
) {
  const cosine = (a: number, b: number) => {
    let s = 0;
    for (let c = 0; c < idx.dim; c++) s += idx.unit[a * idx.dim + c] * idx.unit[b * idx.dim + c];
    return s;
  };
  const seqs: { items: number[]; times: number[] }[] = [];
  for (let r = 0; r < rows; r++) {
    const len = batch.lengths[r];
    const items = Array.from(batch.items.subarray(r * batch.len, r * batch.len + len));
    const times = Array.from(batch.times.subarray(r * batch.len, r * batch.len + len));
    const seen = new Set(items);
    const count = Math.min(len - 1, rng.poisson(opts.rate * len));
    const points = Array.from({ length: len - 1 }, (_, i) => i);
    rng.shuffle(points);
    const chosen = new Set(points.slice(0, count));
    const outItems: number[] = [];
    const outTimes: number[] = [];
    for (let k = 0; k < len; k++) {
      outItems.push(items[k]);
      outTimes.push(times[k]);
      if (!chosen.has(k)) continue;
      const [a, b] = [items[k], items[k + 1]];
      const cands = new Set<number>();
      for (const src of [a, b]) {
        for (let j = 0; j < idx.k; j++) {
          const c = idx.neighbours[src * idx.k + j];
          if (c > 0 && !seen.has(c)) cands.add(c);
        }
      }
      if (!cands.size) continue;
      const list = [...cands];
      const scores = list.map((j) =>
        (opts.gamma * cosine(a, j) + (1 - opts.gamma) * cosine(b, j)) / opts.temperature
      );
      const max = Math.max(...scores);
      outItems.push(list[rng.categorical(scores.map((s) => Math.exp(s - max)))]);
      outTimes.push((times[k] + times[k + 1]) / 2);
    }
    const from = Math.max(0, outItems.length - opts.maxLen);
    seqs.push({ items: outItems.slice(from), times: outTimes.slice(from) });
  }
  return padSequences(seqs);
}

function fixture(seed: number) {
  const rng = new Rng(seed);
  const dim = 8;
  const data = new Float32Array((ITEMS + 1) * dim);
  const mask = new Uint8Array(ITEMS + 1);
  for (let i = 1; i <= ITEMS; i++) {
    if (rng.uniform() < 0.1) continue; // some items without features
    mask[i] = 1;
    for (let c = 0; c < dim; c++) data[i * dim + c] = rng.normal();
  }
  const idx = withBackend(new JsBackend(), () => buildSimilarityIndex({ dim, data, mask }, 6, 64));
  return { idx, batch: batch(rng, 40, 50, ITEMS) };
}

Deno.test("vscl: virtual sequences match the reference definition draw for draw", () => {
  for (const seed of [1, 2, 3]) {
    const { idx, batch } = fixture(seed);
    for (
      const opts of [
        { rate: 0.1, gamma: 0.5, temperature: 0.1, maxLen: 50 },
        { rate: 0.6, gamma: 0.2, temperature: 1, maxLen: 30 },
      ]
    ) {
      const got = virtualSequences(batch, 32, idx, opts, new Rng(seed + 10));
      const want = reference(batch, 32, idx, opts, new Rng(seed + 10));
      assert.equal(got.len, want.len);
      assert.deepEqual(got.lengths, want.lengths);
      assert.deepEqual(got.items, want.items);
      assert.deepEqual(got.times, want.times);
      assert.ok(got.lengths.some((l, r) => l > batch.lengths[r]), "some insertions happened");
    }
  }
});

Deno.test("vscl: history kept in order; inserted items are unseen neighbours of their transition", () => {
  const { idx, batch } = fixture(4);
  const opts = { rate: 0.5, gamma: 0.5, temperature: 0.1, maxLen: 200 };
  const v = virtualSequences(batch, batch.size, idx, opts, new Rng(5));
  for (let r = 0; r < batch.size; r++) {
    const hist = Array.from(batch.items.subarray(r * batch.len, r * batch.len + batch.lengths[r]));
    const out = Array.from(v.items.subarray(r * v.len, r * v.len + v.lengths[r]));
    let h = 0;
    for (let i = 0; i < out.length; i++) {
      if (h < hist.length && out[i] === hist[h]) {
        h++;
        continue;
      }
      // An insertion sits between hist[h-1] and hist[h], right after a history item.
      assert.ok(h > 0 && h < hist.length && out[i - 1] === hist[h - 1], `row ${r} pos ${i}`);
      assert.ok(!hist.includes(out[i]), `row ${r}: inserted ${out[i]} is in the history`);
      const near = [hist[h - 1], hist[h]].flatMap((s) =>
        Array.from(idx.neighbours.subarray(s * idx.k, (s + 1) * idx.k))
      );
      assert.ok(near.includes(out[i]), `row ${r}: inserted ${out[i]} is no neighbour`);
    }
    assert.equal(h, hist.length, `row ${r}: history not kept`);
  }
});

Deno.test("vscl: each item's neighbours are its k most similar present items, ties to the lower id", () => {
  const rng = new Rng(12);
  const dim = 4;
  const rows = 300;
  // Few distinct directions, so many similarities tie exactly.
  const dirs = Array.from({ length: 5 }, () => Array.from({ length: dim }, () => rng.normal()));
  const data = new Float32Array(rows * dim);
  const mask = new Uint8Array(rows);
  for (let i = 1; i < rows; i++) {
    if (rng.uniform() < 0.15) continue;
    mask[i] = 1;
    const d = dirs[rng.int(dirs.length)];
    for (let c = 0; c < dim; c++) data[i * dim + c] = d[c] * (1 + rng.int(3));
  }
  const k = 7;
  const idx = withBackend(new JsBackend(), () => buildSimilarityIndex({ dim, data, mask }, k, 50));
  // The similarities as the index saw them: the same backend's product of the unit rows.
  const sims = withBackend(new JsBackend(), () => {
    const u = tensor(idx.unit, [rows, dim]);
    return op.matmul(u, u, false, true).toFloat32();
  });
  for (let i = 1; i < rows; i++) {
    const got = [...idx.neighbours.subarray(i * k, i * k + k)];
    if (!mask[i]) {
      assert.deepEqual(got, new Array(k).fill(-1));
      continue;
    }
    const others = [];
    for (let j = 1; j < rows; j++) if (j !== i && mask[j]) others.push(j);
    others.sort((a, b) => sims[i * rows + b] - sims[i * rows + a] || a - b);
    assert.deepEqual(got, others.slice(0, k), `item ${i}`);
    assert.equal(new Set(got).size, k, `item ${i}: distinct neighbours`);
    assert.ok(!got.includes(i), `item ${i} is not its own neighbour`);
  }
});
