/**
 * Virtual-sequence contrastive learning (paper Eq. 20-22): a virtual sequence inserts items that
 * are similar to the neighbours of a transition point but were not interacted with. Insertions
 * per sequence ~ Poisson(rate × length); at transition (k, k+1) item j is drawn with probability
 * ∝ exp((γ sim(e_k, e_j) + (1-γ) sim(e_{k+1}, e_j)) / λ) among the two items' nearest neighbours.
 * Similarities use the frozen content features of one modality (cosine).
 */
import * as op from "../../ops/mod.ts";
import type { Rng } from "../../random.ts";
import { topK } from "../../serve/topk.ts";
import { noGrad, tensor, tidy } from "../../tensor.ts";
import { copyRow, type SequenceBatch } from "../batch.ts";
import type { ItemFeatures } from "../item_side.ts";

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
          const best = topK(sims, r, rows, k, (j) => j === 0 || j === item || !f.mask[j]);
          neighbours.set(best.items, item * k);
        }
      }
    })
  );
  return { dim: f.dim, unit, k, neighbours };
}

export interface VirtualSequenceOptions {
  rate: number;
  gamma: number;
  temperature: number;
  maxLen: number;
}

/**
 * Virtual versions of the first `rows` sequences of a batch. This runs on the host once per
 * training step, for up to `vsclRows` histories of up to 50 items, so it avoids per-insertion
 * allocations: generation stamps over item ids stand in for sets, and since the feature rows are
 * unit vectors, gamma*cos(a, j) + (1-gamma)*cos(b, j) is one dot product of u_j with the mixed
 * query gamma*u_a + (1-gamma)*u_b. The work of one row is its own function: called hundreds of
 * times per step it is optimized with stable type feedback, where one long loop would be
 * optimized on the stack and thrown away again at every call.
 */
export function virtualSequences(
  batch: SequenceBatch,
  rows: number,
  idx: SimilarityIndex,
  opts: VirtualSequenceOptions,
  rng: Rng,
): SequenceBatch {
  const ws = new RowWorkspace(idx, batch.len);
  // Each row's last maxLen items, staged at a fixed stride, then right-padded to the longest.
  const stride = Math.min(opts.maxLen, 2 * batch.len);
  const stagedItems = new Int32Array(rows * stride);
  const stagedTimes = new Float64Array(rows * stride);
  const lengths = new Int32Array(rows);
  let len = 1;
  for (let r = 0; r < rows; r++) {
    const n = virtualRow(batch, r, idx, opts, rng, ws);
    const from = Math.max(0, n - opts.maxLen);
    copyRow(ws.outItems, ws.outTimes, from, n - from, stagedItems, stagedTimes, r * stride);
    lengths[r] = n - from;
    len = Math.max(len, n - from);
  }
  const items = new Int32Array(rows * len);
  const times = new Float32Array(rows * len);
  for (let r = 0; r < rows; r++) {
    copyRow(stagedItems, stagedTimes, r * stride, lengths[r], items, times, r * len);
  }
  return {
    size: rows,
    len,
    items,
    times,
    lengths,
    users: batch.users.slice(0, rows),
    targets: batch.targets.slice(0, rows),
  };
}

/** Buffers shared by the rows of one virtualSequences call. */
class RowWorkspace {
  /** inHistory[id] === r + 1: id is in row r's history. */
  readonly inHistory: Int32Array;
  /** listed[id] === n: id is already a candidate of insertion n. */
  readonly listed: Int32Array;
  insertion = 0;
  readonly query: Float64Array;
  readonly cands: Int32Array;
  readonly weights: Float64Array;
  readonly outItems: Int32Array;
  readonly outTimes: Float64Array;
  readonly points: Int32Array;
  readonly chosen: Uint8Array;

  constructor(idx: SimilarityIndex, len: number) {
    const numIds = idx.neighbours.length / idx.k;
    this.inHistory = new Int32Array(numIds);
    this.listed = new Int32Array(numIds);
    this.query = new Float64Array(idx.dim);
    this.cands = new Int32Array(2 * idx.k);
    this.weights = new Float64Array(2 * idx.k);
    this.outItems = new Int32Array(2 * len);
    this.outTimes = new Float64Array(2 * len);
    this.points = new Int32Array(len);
    this.chosen = new Uint8Array(len);
  }
}

/**
 * weights[i] = (query . unit row cands[i]) / temperature for i < m: the hot loop of VSCL's
 * sampling. Each dot product is one sum in index order, whose every add waits for the one
 * before; four candidates' sums run side by side, so their adds overlap (same bits as one at a
 * time).
 */
function scoreCandidates(
  query: Float64Array,
  unit: Float32Array,
  dim: number,
  cands: Int32Array,
  m: number,
  temperature: number,
  weights: Float64Array,
): void {
  let i = 0;
  for (; i + 4 <= m; i += 4) {
    const a0 = cands[i] * dim, a1 = cands[i + 1] * dim;
    const a2 = cands[i + 2] * dim, a3 = cands[i + 3] * dim;
    let d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    for (let c = 0; c < dim; c++) {
      const q = query[c];
      d0 += q * unit[a0 + c];
      d1 += q * unit[a1 + c];
      d2 += q * unit[a2 + c];
      d3 += q * unit[a3 + c];
    }
    weights[i] = d0 / temperature;
    weights[i + 1] = d1 / temperature;
    weights[i + 2] = d2 / temperature;
    weights[i + 3] = d3 / temperature;
  }
  for (; i < m; i++) {
    const a = cands[i] * dim;
    let d = 0;
    for (let c = 0; c < dim; c++) d += query[c] * unit[a + c];
    weights[i] = d / temperature;
  }
}

/** Row r's virtual sequence, written to ws.outItems / ws.outTimes; returns its length. */
function virtualRow(
  batch: SequenceBatch,
  r: number,
  idx: SimilarityIndex,
  opts: VirtualSequenceOptions,
  rng: Rng,
  ws: RowWorkspace,
): number {
  const { dim, k, unit, neighbours } = idx;
  const { inHistory, listed, query, cands, weights, outItems, outTimes, chosen } = ws;
  const len = batch.lengths[r];
  const base = r * batch.len;
  for (let i = 0; i < len; i++) inHistory[batch.items[base + i]] = r + 1;
  const count = Math.min(len - 1, rng.poisson(opts.rate * len));
  const points = ws.points.subarray(0, len - 1);
  for (let i = 0; i < len - 1; i++) points[i] = i;
  rng.shuffle(points);
  chosen.fill(0, 0, len);
  for (let i = 0; i < count; i++) chosen[points[i]] = 1;
  let n = 0;
  for (let p = 0; p < len; p++) {
    outItems[n] = batch.items[base + p];
    outTimes[n++] = batch.times[base + p];
    if (!chosen[p]) continue;
    const a = batch.items[base + p];
    const b = batch.items[base + p + 1];
    const ga = opts.gamma;
    const gb = 1 - opts.gamma;
    for (let c = 0; c < dim; c++) query[c] = ga * unit[a * dim + c] + gb * unit[b * dim + c];
    const insertion = ++ws.insertion;
    let m = 0;
    for (let side = 0; side < 2; side++) {
      const src = side === 0 ? a : b;
      for (let j = 0; j < k; j++) {
        const cand = neighbours[src * k + j];
        if (cand <= 0 || inHistory[cand] === r + 1 || listed[cand] === insertion) continue;
        listed[cand] = insertion;
        cands[m++] = cand;
      }
    }
    if (m === 0) continue;
    scoreCandidates(query, unit, dim, cands, m, opts.temperature, weights);
    let max = -Infinity;
    for (let i = 0; i < m; i++) max = Math.max(max, weights[i]);
    for (let i = 0; i < m; i++) weights[i] = Math.exp(weights[i] - max);
    outItems[n] = cands[rng.categorical(weights, m)];
    outTimes[n++] = (batch.times[base + p] + batch.times[base + p + 1]) / 2;
  }
  return n;
}
