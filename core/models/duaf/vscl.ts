/**
 * Virtual-sequence contrastive learning (paper Eq. 20-22): a virtual sequence inserts items that
 * are similar to the neighbours of a transition point but were not interacted with. Insertions
 * per sequence ~ Poisson(rate × length); at transition (k, k+1) item j is drawn with probability
 * ∝ exp((γ sim(e_k, e_j) + (1-γ) sim(e_{k+1}, e_j)) / λ) among the two items' nearest neighbours.
 * Similarities use the frozen content features of one modality (cosine).
 */
import * as op from "../../ops/mod.ts";
import type { Rng } from "../../random.ts";
import { noGrad, tensor, tidy } from "../../tensor.ts";
import type { SequenceBatch } from "../batch.ts";
import type { ItemFeatures } from "../item_side.ts";
import { padSequences } from "../../train/examples.ts";

/** L2-normalised feature rows (absent items all-zero) and each item's nearest neighbours. */
export interface SimilarityIndex {
  dim: number;
  unit: Float32Array;
  k: number;
  /** (numItems + 1) * k neighbour ids, -1 where fewer exist. */
  neighbours: Int32Array;
}

export function buildSimilarityIndex(f: ItemFeatures, k: number, chunk = 1024): SimilarityIndex {
  const rows = f.mask.length;
  const unit = new Float32Array(rows * f.dim);
  for (let i = 1; i < rows; i++) {
    if (!f.mask[i]) continue;
    let n = 0;
    for (let c = 0; c < f.dim; c++) n += f.data[i * f.dim + c] ** 2;
    const s = n > 0 ? 1 / Math.sqrt(n) : 0;
    for (let c = 0; c < f.dim; c++) unit[i * f.dim + c] = f.data[i * f.dim + c] * s;
  }
  const neighbours = new Int32Array(rows * k).fill(-1);
  noGrad(() =>
    tidy(() => {
      const all = tensor(unit, [rows, f.dim]);
      for (let start = 1; start < rows; start += chunk) {
        const n = Math.min(chunk, rows - start);
        const sims = tidy(() =>
          op.matmul(
            tensor(unit.subarray(start * f.dim, (start + n) * f.dim), [n, f.dim]),
            all,
            false,
            true,
          )
            .toFloat32()
        );
        for (let r = 0; r < n; r++) {
          const item = start + r;
          if (!f.mask[item]) continue;
          const best = new Float32Array(k).fill(-Infinity);
          const ids = new Int32Array(k).fill(-1);
          for (let j = 1; j < rows; j++) {
            if (j === item || !f.mask[j]) continue;
            const v = sims[r * rows + j];
            if (v <= best[k - 1]) continue;
            let p = k - 1;
            while (p > 0 && best[p - 1] < v) {
              best[p] = best[p - 1];
              ids[p] = ids[p - 1];
              p--;
            }
            best[p] = v;
            ids[p] = j;
          }
          neighbours.set(ids, item * k);
        }
      }
    })
  );
  return { dim: f.dim, unit, k, neighbours };
}

function cosine(idx: SimilarityIndex, a: number, b: number): number {
  let s = 0;
  const d = idx.dim;
  for (let c = 0; c < d; c++) s += idx.unit[a * d + c] * idx.unit[b * d + c];
  return s;
}

export interface VirtualSequenceOptions {
  rate: number;
  gamma: number;
  temperature: number;
  maxLen: number;
}

/** Virtual versions of the first `rows` sequences of a batch. */
export function virtualSequences(
  batch: SequenceBatch,
  rows: number,
  idx: SimilarityIndex,
  opts: VirtualSequenceOptions,
  rng: Rng,
): SequenceBatch {
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
      const a = items[k];
      const b = items[k + 1];
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
        (opts.gamma * cosine(idx, a, j) + (1 - opts.gamma) * cosine(idx, b, j)) / opts.temperature
      );
      const max = Math.max(...scores);
      const pick = list[rng.categorical(scores.map((s) => Math.exp(s - max)))];
      outItems.push(pick);
      outTimes.push((times[k] + times[k + 1]) / 2);
    }
    const from = Math.max(0, outItems.length - opts.maxLen);
    seqs.push({ items: outItems.slice(from), times: outTimes.slice(from) });
  }
  const padded = padSequences(seqs);
  return {
    ...padded,
    size: rows,
    users: batch.users.slice(0, rows),
    targets: batch.targets.slice(0, rows),
  };
}
