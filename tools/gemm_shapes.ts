/** The sgemm shapes of docs/backends.md, taken from one SASRec/DuAF-MAT training step (d=64). */
import { type GemmArgs, gemmArgs, type Storage } from "../core/backend.ts";
export interface GemmShape {
  name: string;
  batch: number;
  m: number;
  k: number;
  n: number;
}

export const SHAPES: readonly GemmShape[] = [
  // Q/K/V and output projections over batch x length rows.
  { name: "a [12800x64]@[64x64]", batch: 1, m: 12800, k: 64, n: 64 },
  // The feed-forward expansion.
  { name: "b [12800x64]@[64x256]", batch: 1, m: 12800, k: 64, n: 256 },
  // Attention scores, one small product per (sequence, head).
  { name: "c 256x[50x64]@[64x50]", batch: 256, m: 50, k: 64, n: 50 },
  // Scoring a batch of users against every item.
  { name: "d [2048x64]@[64x12000]", batch: 1, m: 2048, k: 64, n: 12000 },
  // A square reference point.
  { name: "e 1024^3", batch: 1, m: 1024, k: 1024, n: 1024 },
];

/** The contiguous, untransposed batched GEMM of `s` on a, b, c: c = a @ b per batch element. */
export function shapeGemm(s: GemmShape, a: Storage, b: Storage, c: Storage): GemmArgs {
  return gemmArgs(a, b, c, s.m, s.n, s.k, {
    batch: s.batch,
    strideA: s.m * s.k,
    strideB: s.k * s.n,
    strideC: s.m * s.n,
  });
}
