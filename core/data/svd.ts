/**
 * Truncated SVD of a sparse matrix by randomized subspace iteration (Halko, Martinsson & Tropp
 * 2011, Alg. 4.4), in float64. Dense n x l blocks are stored column-major (one Float64Array per
 * column) so Gram-Schmidt and the sparse products both walk memory in order.
 */
import type { Rng } from "../random.ts";

/** Compressed sparse rows: row r holds cols[ptr[r]..ptr[r+1]) with values vals[...]. */
export interface Csr {
  rows: number;
  cols: number;
  ptr: Int32Array;
  idx: Int32Array;
  vals: Float64Array;
}

type Block = Float64Array[];

/** Y = A Z (A: rows x cols sparse, Z: cols x l). */
function mulA(a: Csr, z: Block): Block {
  return z.map((zj) => {
    const y = new Float64Array(a.rows);
    for (let r = 0; r < a.rows; r++) {
      let s = 0;
      for (let p = a.ptr[r]; p < a.ptr[r + 1]; p++) s += a.vals[p] * zj[a.idx[p]];
      y[r] = s;
    }
    return y;
  });
}

/** Z = A^T Q (Q: rows x l). */
function mulAt(a: Csr, q: Block): Block {
  return q.map((qj) => {
    const z = new Float64Array(a.cols);
    for (let r = 0; r < a.rows; r++) {
      const v = qj[r];
      if (v === 0) continue;
      for (let p = a.ptr[r]; p < a.ptr[r + 1]; p++) z[a.idx[p]] += a.vals[p] * v;
    }
    return z;
  });
}

function dot(x: Float64Array, y: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * y[i];
  return s;
}

/**
 * Orthonormalises columns in place (modified Gram-Schmidt, two passes for stability). Columns
 * that are numerically dependent become zero.
 */
function orthonormalize(q: Block): Block {
  for (let j = 0; j < q.length; j++) {
    const c = q[j];
    const before = Math.sqrt(dot(c, c));
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < j; i++) {
        const d = dot(q[i], c);
        if (d === 0) continue;
        const qi = q[i];
        for (let r = 0; r < c.length; r++) c[r] -= d * qi[r];
      }
    }
    const norm = Math.sqrt(dot(c, c));
    if (norm <= 1e-10 * Math.max(before, 1e-300)) c.fill(0);
    else for (let r = 0; r < c.length; r++) c[r] /= norm;
  }
  return q;
}

/**
 * Eigen-decomposition of a symmetric matrix (row-major n x n) by cyclic Jacobi rotations.
 * Returns eigenvalues in descending order and eigenvectors as columns of a row-major matrix.
 */
export function symmetricEigen(
  m: Float64Array,
  n: number,
): { values: Float64Array; vectors: Float64Array } {
  const a = m.slice();
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i] ** 2;
      for (let j = i + 1; j < n; j++) off += a[i * n + j] ** 2;
    }
    if (off <= 1e-30 * Math.max(diag, 1e-300)) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) =>
    a[y * n + y] - a[x * n + x] || x - y
  );
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = a[src * n + src];
    for (let k = 0; k < n; k++) vectors[k * n + dst] = v[k * n + src];
  });
  return { values, vectors };
}

export interface TruncatedSvd {
  /** Row embeddings U * Sigma, row-major rows x k (columns past the matrix rank are zero). */
  embedding: Float64Array;
  singularValues: Float64Array;
}

/**
 * Top-k truncated SVD of A. Signs are fixed so the largest-magnitude entry of each left
 * singular vector is positive, which makes the result a function of (A, rng seed) only.
 */
export function randomizedSvd(
  a: Csr,
  k: number,
  rng: Rng,
  opts: { oversample?: number; powerIterations?: number; onStep?: () => void } = {},
): TruncatedSvd {
  const l = Math.min(k + (opts.oversample ?? 10), a.rows, a.cols);
  const iters = opts.powerIterations ?? 5;
  const embedding = new Float64Array(a.rows * k);
  const singularValues = new Float64Array(k);
  if (l === 0) return { embedding, singularValues };
  const omega: Block = Array.from({ length: l }, () => {
    const c = new Float64Array(a.cols);
    for (let i = 0; i < c.length; i++) c[i] = rng.normal();
    return c;
  });
  let q = orthonormalize(mulA(a, omega));
  opts.onStep?.();
  for (let it = 0; it < iters; it++) {
    q = orthonormalize(mulA(a, orthonormalize(mulAt(a, q))));
    opts.onStep?.();
  }
  // B = Q^T A (l x cols); its left singular vectors are the eigenvectors of B B^T.
  const bt = mulAt(a, q);
  const gram = new Float64Array(l * l);
  for (let i = 0; i < l; i++) {
    for (let j = i; j < l; j++) gram[i * l + j] = gram[j * l + i] = dot(bt[i], bt[j]);
  }
  const { values, vectors } = symmetricEigen(gram, l);
  const kk = Math.min(k, l);
  for (let c = 0; c < kk; c++) {
    const sigma = Math.sqrt(Math.max(values[c], 0));
    singularValues[c] = sigma;
    // u = Q ub; keep the sign whose largest |entry| is positive.
    const u = new Float64Array(a.rows);
    for (let j = 0; j < l; j++) {
      const w = vectors[j * l + c];
      if (w === 0) continue;
      const qj = q[j];
      for (let r = 0; r < a.rows; r++) u[r] += qj[r] * w;
    }
    let big = 0;
    for (let r = 0; r < a.rows; r++) if (Math.abs(u[r]) > Math.abs(big)) big = u[r];
    const sign = big < 0 ? -sigma : sigma;
    for (let r = 0; r < a.rows; r++) embedding[r * k + c] = u[r] * sign;
  }
  opts.onStep?.();
  return { embedding, singularValues };
}
