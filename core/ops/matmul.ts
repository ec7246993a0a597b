/** Differentiable (batched) matrix multiplication with either operand transposed. */
import { gemmArgs } from "../backend.ts";
import { empty, record, type Tensor } from "../tensor.ts";
import { reshape } from "./shape.ts";

interface Plan {
  batch: number;
  m: number;
  n: number;
  k: number;
  outShape: number[];
}

function plan(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Plan {
  if (a.rank < 2 || b.rank < 2) throw new Error("matmul: operands must have rank >= 2");
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const m = transA ? ac : ar;
  const k = transA ? ar : ac;
  const kb = transB ? bc : br;
  const n = transB ? br : bc;
  if (k !== kb) {
    throw new Error(
      `matmul: [${a.shape}]${transA ? "^T" : ""} @ [${b.shape}]${transB ? "^T" : ""}`,
    );
  }
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  // A 2-D a is shared by every batch element of b (a fixed left factor: a causal mean's weights).
  const batchDims = aBatch.length ? aBatch : bBatch;
  if (
    aBatch.length && bBatch.length &&
    (bBatch.length !== aBatch.length || bBatch.some((d, i) => d !== aBatch[i]))
  ) {
    throw new Error(`matmul: batch dims [${aBatch}] and [${bBatch}] differ`);
  }
  const batch = batchDims.reduce((p, d) => p * d, 1);
  return { batch, m, n, k, outShape: [...batchDims, m, n] };
}

/** Raw gemm into a new tensor; b may be unbatched (shared across a's batch). */
function gemm(
  a: Tensor,
  b: Tensor,
  transA: boolean,
  transB: boolean,
  p: Plan,
  out = empty(p.outShape),
  beta: 0 | 1 = 0,
): Tensor {
  const aShared = a.rank === 2 && p.batch > 1;
  const bShared = b.rank === 2 && p.batch > 1;
  a.backend.gemm(
    gemmArgs(a.storage, b.storage, out.storage, p.m, p.n, p.k, {
      transA,
      transB,
      batch: p.batch,
      strideA: aShared ? 0 : p.m * p.k,
      strideB: bShared ? 0 : p.k * p.n,
      strideC: p.m * p.n,
      beta,
    }),
  );
  return out;
}

/**
 * op(a) @ op(b) over the trailing two dims. a: [..., M, K] (or [..., K, M] with transA);
 * b: same batch dims as a, or 2-D (a weight shared by every batch element); or a 2-D a shared
 * by every batch element of b.
 */
export function matmul(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
  // A shared 2-D weight with an untransposed batched a is one big 2-D gemm: fold the batch.
  if (b.rank === 2 && a.rank > 2 && !transA) {
    const y = matmulBatched(reshape(a, [-1, a.shape[a.rank - 1]]), b, false, transB);
    return reshape(y, [...a.shape.slice(0, -1), y.shape[1]]);
  }
  if (b.rank === 2 && a.rank > 2 && transA) {
    throw new Error("matmul: a transposed batched operand with a shared 2-D weight is unsupported");
  }
  return matmulBatched(a, b, transA, transB);
}

function matmulBatched(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  const p = plan(a, b, transA, transB);
  const out = gemm(a, b, transA, transB, p);
  return record(out, "matmul", [a, b], (g) => {
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    if (a.requiresGrad && a.rank === 2 && p.batch > 1) {
      da = sharedGrad(g, b, transA, transB, p, a.shape);
    } else if (a.requiresGrad) {
      // C = op(A) op(B): d op(A) = dC op(B)^T; stored A is op(A) or its transpose.
      da = transA
        ? gemm(b, g, transB, true, { ...p, m: p.k, n: p.m, k: p.n, outShape: [...a.shape] })
        : gemm(g, b, false, !transB, { ...p, m: p.m, n: p.k, k: p.n, outShape: [...a.shape] });
    }
    if (b.requiresGrad) {
      db = transB
        ? gemm(g, a, true, transA, { ...p, m: p.n, n: p.k, k: p.m, outShape: [...b.shape] })
        : gemm(a, g, !transA, false, { ...p, m: p.k, n: p.n, k: p.m, outShape: [...b.shape] });
    }
    return [da, db];
  });
}

/**
 * The gradient of a 2-D left factor shared by every batch element: the sum over elements of
 * dC[i] op(B[i])^T (stored transposed with transA), one GEMM per element accumulating in order
 * (one batched call could split the elements, and their sum, across threads).
 */
function sharedGrad(
  g: Tensor,
  b: Tensor,
  transA: boolean,
  transB: boolean,
  p: Plan,
  shape: readonly number[],
): Tensor {
  const da = empty([...shape]);
  for (let i = 0; i < p.batch; i++) {
    const gOff = i * p.m * p.n, bOff = i * p.k * p.n;
    const args = transA
      ? gemmArgs(b.storage, g.storage, da.storage, p.k, p.m, p.n, {
        transA: transB,
        transB: true,
        aOffset: bOff,
        bOffset: gOff,
        beta: i > 0 ? 1 : 0,
      })
      : gemmArgs(g.storage, b.storage, da.storage, p.m, p.k, p.n, {
        transB: !transB,
        aOffset: gOff,
        bOffset: bOff,
        beta: i > 0 ? 1 : 0,
      });
    g.backend.gemm(args);
  }
  return da;
}

/**
 * One plain 2-D GEMM into `out` (row-major, no batch, no offsets): c = op(a) op(b) (+ c when
 * accumulate). The shared helper for ops that call the kernel directly.
 */
export function gemmInto(
  a: Tensor,
  b: Tensor,
  out: Tensor,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  accumulate = false,
): Tensor {
  a.backend.gemm(
    gemmArgs(a.storage, b.storage, out.storage, m, n, k, {
      transA,
      transB,
      beta: accumulate ? 1 : 0,
    }),
  );
  return out;
}

/**
 * Where one operand of attention's per-head products lives: batch item i, head j starts at
 * offset + i * stride + j * perHead, rows `ld` apart. A [B, L, h * dh] activation holds head j in
 * columns [j * dh, (j + 1) * dh) (perHead dh, ld h * dh); a [B, h, R, C] one is contiguous.
 */
interface HeadLayout {
  t: Tensor;
  stride: number;
  perHead: number;
  ld: number;
}

const inRows = (t: Tensor, heads: number): HeadLayout => {
  const [, l, d] = t.shape;
  return { t, stride: l * d, perHead: d / heads, ld: d };
};
const perHeadMatrices = (t: Tensor): HeadLayout => {
  const [, h, r, c] = t.shape;
  return { t, stride: h * r * c, perHead: r * c, ld: c };
};

/**
 * C_ij = op(A_ij) op(B_ij) for every batch item i and head j, in one GEMM call whose inner batch
 * is the heads: a sequence's heads run back to back, while its rows are in cache.
 */
function headGemm(
  a: HeadLayout,
  b: HeadLayout,
  c: HeadLayout,
  heads: number,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
): Tensor {
  a.t.backend.gemm(
    gemmArgs(a.t.storage, b.t.storage, c.t.storage, m, n, k, {
      transA,
      transB,
      batch: c.t.shape[0],
      strideA: a.stride,
      strideB: b.stride,
      strideC: c.stride,
      batch2: heads,
      strideA2: a.perHead,
      strideB2: b.perHead,
      strideC2: c.perHead,
      lda: a.ld,
      ldb: b.ld,
      ldc: c.ld,
    }),
  );
  return c.t;
}

function checkHeads(name: string, x: Tensor, memory: Tensor, heads: number): void {
  const [b, , d] = x.shape;
  if (
    x.rank !== 3 || memory.rank !== 3 || memory.shape[0] !== b || memory.shape[2] !== d ||
    d % heads !== 0
  ) {
    throw new Error(`${name}: [${x.shape}] and [${memory.shape}] with ${heads} heads`);
  }
}

/**
 * Attention scores per head: q [B, Lq, h * dh], k [B, Lk, h * dh] -> [B, h, Lq, Lk], head j's
 * q_j k_j^T. The heads are read in place (the GEMMs' row stride is h * dh), so neither the
 * inputs nor the gradients are permuted to [B, h, L, dh]; the products are those of the
 * permuted layout, element for element.
 */
export function headDots(q: Tensor, k: Tensor, heads: number): Tensor {
  checkHeads("headDots", q, k, heads);
  const [b, lq, d] = q.shape;
  const lk = k.shape[1];
  const dh = d / heads;
  const out = headGemm(
    inRows(q, heads),
    inRows(k, heads),
    perHeadMatrices(empty([b, heads, lq, lk])),
    heads,
    lq,
    lk,
    dh,
    false,
    true,
  );
  return record(out, "head_dots", [q, k], (g) => {
    const gs = perHeadMatrices(g);
    // Every column of dq and dk belongs to one head, so the GEMMs write all of them.
    const dq = q.requiresGrad
      ? headGemm(
        gs,
        inRows(k, heads),
        inRows(empty(q.shape), heads),
        heads,
        lq,
        dh,
        lk,
        false,
        false,
      )
      : null;
    const dk = k.requiresGrad
      ? headGemm(
        gs,
        inRows(q, heads),
        inRows(empty(k.shape), heads),
        heads,
        lk,
        dh,
        lq,
        true,
        false,
      )
      : null;
    return [dq, dk];
  });
}

/**
 * Attention's weighted values with the heads merged: p [B, h, Lq, Lk], v [B, Lk, h * dh] ->
 * [B, Lq, h * dh], head j's p_j v_j in columns [j * dh, (j + 1) * dh). Like headDots, the
 * values, the output and their gradients stay in the [B, L, h * dh] layout.
 */
export function headMix(p: Tensor, v: Tensor): Tensor {
  const [b, heads, lq, lk] = p.shape;
  if (p.rank !== 4) throw new Error(`headMix: probabilities [${p.shape}] are not [B, h, Lq, Lk]`);
  checkHeads("headMix", v, v, heads);
  if (v.shape[0] !== b || v.shape[1] !== lk) {
    throw new Error(`headMix: [${p.shape}] against values [${v.shape}]`);
  }
  const d = v.shape[2];
  const dh = d / heads;
  const out = headGemm(
    perHeadMatrices(p),
    inRows(v, heads),
    inRows(empty([b, lq, d]), heads),
    heads,
    lq,
    dh,
    lk,
    false,
    false,
  );
  return record(out, "head_mix", [p, v], (g) => {
    const gs = inRows(g, heads);
    const dp = p.requiresGrad
      ? headGemm(
        gs,
        inRows(v, heads),
        perHeadMatrices(empty(p.shape)),
        heads,
        lq,
        lk,
        dh,
        false,
        true,
      )
      : null;
    const dv = v.requiresGrad
      ? headGemm(
        perHeadMatrices(p),
        gs,
        inRows(empty(v.shape), heads),
        heads,
        lk,
        dh,
        lq,
        true,
        false,
      )
      : null;
    return [dp, dv];
  });
}
