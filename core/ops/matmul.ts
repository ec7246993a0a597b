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
  if (
    bBatch.length && (bBatch.length !== aBatch.length || bBatch.some((d, i) => d !== aBatch[i]))
  ) {
    throw new Error(`matmul: batch dims [${aBatch}] and [${bBatch}] differ`);
  }
  const batch = aBatch.reduce((p, d) => p * d, 1);
  return { batch, m, n, k, outShape: [...aBatch, m, n] };
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
  const bShared = b.rank === 2 && p.batch > 1;
  a.backend.gemm(
    gemmArgs(a.storage, b.storage, out.storage, p.m, p.n, p.k, {
      transA,
      transB,
      batch: p.batch,
      strideA: p.m * p.k,
      strideB: bShared ? 0 : p.k * p.n,
      strideC: p.m * p.n,
      beta,
    }),
  );
  return out;
}

/**
 * op(a) @ op(b) over the trailing two dims. a: [..., M, K] (or [..., K, M] with transA);
 * b: same batch dims as a, or 2-D (a weight shared by every batch element).
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
    if (a.requiresGrad) {
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
