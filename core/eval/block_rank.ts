/**
 * Ranking over a catalog of any size without a [users x items] score matrix: users' vectors are
 * scored against the item table in blocks of `blockItems` items (one GEMM into a reused buffer
 * each, read into one reused host buffer), and each row keeps only its best M = max K scores seen so far.
 *
 * The metrics only need a rank when it is below M (NDCG, MRR, HR and recall @K are 0 past K), so
 * the ranks agree with a full scan (metrics.ts rankOf) wherever they count: if fewer than M kept
 * scores reach the target's, every item that does is among them and the count is exact;
 * otherwise the rank is at least M and M is reported.
 */
import { gemmInto } from "../ops/matmul.ts";
import { slice } from "../ops/shape.ts";
import { empty, type Tensor } from "../tensor.ts";

/** Items per scoring block: a block of 512 users is 16 MiB, whatever the catalog. */
export const DEFAULT_BLOCK_ITEMS = 8192;

/** The best `m` scores of each row, as a min-heap per row (row r's heap at r * m). */
class RowTopScores {
  readonly heap: Float32Array;
  readonly size: Int32Array;

  constructor(rows: number, readonly m: number) {
    this.heap = new Float32Array(rows * m);
    this.size = new Int32Array(rows);
  }

  /** The smallest kept score of row r, or -Infinity while the row holds fewer than m. */
  floor(r: number): number {
    return this.size[r] < this.m ? -Infinity : this.heap[r * this.m];
  }

  push(r: number, v: number): void {
    const h = this.heap;
    const base = r * this.m;
    if (this.size[r] < this.m) {
      let i = this.size[r]++;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (h[base + p] <= v) break;
        h[base + i] = h[base + p];
        i = p;
      }
      h[base + i] = v;
      return;
    }
    // Replace the minimum and sift down.
    let i = 0;
    const n = this.m;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const c = l + 1 < n && h[base + l + 1] < h[base + l] ? l + 1 : l;
      if (h[base + c] >= v) break;
      h[base + i] = h[base + c];
      i = c;
    }
    h[base + i] = v;
  }

  /** Kept scores of row r that are >= s. */
  countAtLeast(r: number, s: number): number {
    let n = 0;
    const base = r * this.m;
    for (let i = 0; i < this.size[r]; i++) n += +(this.heap[base + i] >= s);
    return n;
  }
}

/**
 * Ranks (0 = best; `m` stands for "m or worse") of row r's `targets[r]` among the items of
 * `items` [numItems + 1, d] scored by `users` [rows, d], skipping `excluded(r)` columns (padding
 * and, with mask-seen, seen items). Only a [rows, blockItems] buffer is allocated.
 */
export function blockRanks(
  users: Tensor,
  items: Tensor,
  targets: Int32Array,
  excluded: (row: number) => ReadonlySet<number>,
  m: number,
  blockItems = DEFAULT_BLOCK_ITEMS,
): Int32Array {
  const [rows, d] = users.shape;
  const cols = items.shape[0];
  const top = new RowTopScores(rows, m);
  const targetScore = new Float32Array(rows);
  const skip = Array.from({ length: rows }, (_, r) => excluded(r));
  const block = empty([rows, Math.min(blockItems, cols)]);
  // One host buffer for every block's scores: a new array per block would leave the garbage
  // collector a block's worth of dead memory per download.
  const host = new Float32Array(block.size);
  try {
    for (let start = 0; start < cols; start += blockItems) {
      const n = Math.min(blockItems, cols - start);
      const part = slice(items, 0, start, n);
      gemmInto(users, part, block, rows, n, d, false, true);
      part.dispose();
      const scores = block.backend.download(block.storage, 0, rows * n, host);
      for (let r = 0; r < rows; r++) {
        const t = targets[r] - start;
        if (t >= 0 && t < n) targetScore[r] = scores[r * n + t];
        let floor = top.floor(r);
        const row = r * n;
        for (let j = 0; j < n; j++) {
          const v = scores[row + j];
          if (v <= floor) continue;
          const item = start + j;
          if (item === targets[r] || skip[r].has(item)) continue;
          top.push(r, v);
          floor = top.floor(r);
        }
      }
    }
  } finally {
    block.dispose();
  }
  return Int32Array.from({ length: rows }, (_, r) => top.countAtLeast(r, targetScore[r]));
}
