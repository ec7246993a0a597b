// Single-precision GEMM: C = alpha * op(A) @ op(B) + beta * C, row-major, batched with strides.
//
// Blocking follows the BLIS loop order: columns in NC-wide blocks, K in KC-deep slices (B slice
// packed into 8-column panels), rows in MC-row blocks, then a 6x8 register tile. A is read in
// place: rows of plain A are 6 independent streams, columns of transposed A are 6 adjacent
// floats, so neither needs packing. Every element C[i][j] is one accumulator lane that sums
// a[i][k] * b[k][j] over k in increasing order with the same multiply-add, whatever tile,
// thread or edge path computes it; that is what makes results independent of the split.

import { madd } from "./simd";

const MR = 6;
const NR = 8;
const KC = 256;
const MC = 96;
/** Floats in one thread's packed-B buffer (KC * NC, about 256 KiB: fits the L2 cache). */
export const PACK_B_FLOATS = 65536;
/** Bytes of per-thread scratch gemm needs: packed B, a packed A edge tile, one C tile. */
export const GEMM_SCRATCH_BYTES: i32 = (PACK_B_FLOATS + KC * MR + MR * NR) * 4;

// Store modes of a finished tile.
const STORE = 0; // C = acc
const STORE_SCALED = 1; // C = alpha * acc
const ADD = 2; // C = C + acc
const ADD_SCALED = 3; // C = C + alpha * acc

function storeTile(
  c: usize,
  ldc: usize,
  mode: i32,
  alpha: f32,
  r: v128,
  s: v128,
): void {
  const va = f32x4.splat(alpha);
  if (mode == STORE_SCALED || mode == ADD_SCALED) {
    r = f32x4.mul(r, va);
    s = f32x4.mul(s, va);
  }
  if (mode >= ADD) {
    r = f32x4.add(v128.load(c), r);
    s = f32x4.add(v128.load(c, 16), s);
  }
  v128.store(c, r);
  v128.store(c, s, 16);
}

/** 6x8 tile from six A row pointers (K contiguous per row) and a packed B panel. */
function kernelRows(
  a0: usize,
  a1: usize,
  a2: usize,
  a3: usize,
  a4: usize,
  a5: usize,
  bp: usize,
  kc: i32,
  c: usize,
  ldc: usize,
  mode: i32,
  alpha: f32,
): void {
  let c00 = f32x4.splat(0);
  let c01 = c00;
  let c10 = c00;
  let c11 = c00;
  let c20 = c00;
  let c21 = c00;
  let c30 = c00;
  let c31 = c00;
  let c40 = c00;
  let c41 = c00;
  let c50 = c00;
  let c51 = c00;
  let b0: v128;
  let b1: v128;
  let x: v128;
  for (let k = 0; k < kc; k++) {
    b0 = v128.load(bp, 0);
    b1 = v128.load(bp, 16);
    x = v128.load32_splat(a0, 0);
    c00 = madd(x, b0, c00);
    c01 = madd(x, b1, c01);
    x = v128.load32_splat(a1, 0);
    c10 = madd(x, b0, c10);
    c11 = madd(x, b1, c11);
    x = v128.load32_splat(a2, 0);
    c20 = madd(x, b0, c20);
    c21 = madd(x, b1, c21);
    x = v128.load32_splat(a3, 0);
    c30 = madd(x, b0, c30);
    c31 = madd(x, b1, c31);
    x = v128.load32_splat(a4, 0);
    c40 = madd(x, b0, c40);
    c41 = madd(x, b1, c41);
    x = v128.load32_splat(a5, 0);
    c50 = madd(x, b0, c50);
    c51 = madd(x, b1, c51);
    a0 += 4;
    a1 += 4;
    a2 += 4;
    a3 += 4;
    a4 += 4;
    a5 += 4;
    bp += 32;
  }
  storeTile(c, ldc, mode, alpha, c00, c01);
  storeTile(c + ldc, ldc, mode, alpha, c10, c11);
  storeTile(c + 2 * ldc, ldc, mode, alpha, c20, c21);
  storeTile(c + 3 * ldc, ldc, mode, alpha, c30, c31);
  storeTile(c + 4 * ldc, ldc, mode, alpha, c40, c41);
  storeTile(c + 5 * ldc, ldc, mode, alpha, c50, c51);
}

/** 6x8 tile from A stored K x M (the 6 rows' values for one k are adjacent, lda bytes apart). */
function kernelCols(
  a: usize,
  lda: usize,
  bp: usize,
  kc: i32,
  c: usize,
  ldc: usize,
  mode: i32,
  alpha: f32,
): void {
  let c00 = f32x4.splat(0);
  let c01 = c00;
  let c10 = c00;
  let c11 = c00;
  let c20 = c00;
  let c21 = c00;
  let c30 = c00;
  let c31 = c00;
  let c40 = c00;
  let c41 = c00;
  let c50 = c00;
  let c51 = c00;
  let b0: v128;
  let b1: v128;
  let x: v128;
  for (let k = 0; k < kc; k++) {
    b0 = v128.load(bp);
    b1 = v128.load(bp, 16);
    x = v128.load32_splat(a, 0);
    c00 = madd(x, b0, c00);
    c01 = madd(x, b1, c01);
    x = v128.load32_splat(a, 4);
    c10 = madd(x, b0, c10);
    c11 = madd(x, b1, c11);
    x = v128.load32_splat(a, 8);
    c20 = madd(x, b0, c20);
    c21 = madd(x, b1, c21);
    x = v128.load32_splat(a, 12);
    c30 = madd(x, b0, c30);
    c31 = madd(x, b1, c31);
    x = v128.load32_splat(a, 16);
    c40 = madd(x, b0, c40);
    c41 = madd(x, b1, c41);
    x = v128.load32_splat(a, 20);
    c50 = madd(x, b0, c50);
    c51 = madd(x, b1, c51);
    a += lda;
    bp += 32;
  }
  storeTile(c, ldc, mode, alpha, c00, c01);
  storeTile(c + ldc, ldc, mode, alpha, c10, c11);
  storeTile(c + 2 * ldc, ldc, mode, alpha, c20, c21);
  storeTile(c + 3 * ldc, ldc, mode, alpha, c30, c31);
  storeTile(c + 4 * ldc, ldc, mode, alpha, c40, c41);
  storeTile(c + 5 * ldc, ldc, mode, alpha, c50, c51);
}

/**
 * Packs B[k0 : k0+kc, j0 : j0+nc] into 8-column panels (panel p holds kc rows of 8 floats), the
 * last panel zero-padded. B is K x N (ldb = N) or, transposed, N x K (ldb = K).
 */
function packB(
  b: usize,
  ldb: i32,
  transB: bool,
  k0: i32,
  kc: i32,
  j0: i32,
  nc: i32,
  bp: usize,
): void {
  for (let jr = 0; jr < nc; jr += NR) {
    const nr = min(NR, nc - jr);
    const j = j0 + jr;
    if (!transB) {
      let src = b + ((<usize>k0 * ldb + j) << 2);
      const step = <usize>ldb << 2;
      if (nr == NR) {
        for (let kk = 0; kk < kc; kk++) {
          v128.store(bp, v128.load(src));
          v128.store(bp, v128.load(src, 16), 16);
          src += step;
          bp += 32;
        }
      } else {
        for (let kk = 0; kk < kc; kk++) {
          for (let jj = 0; jj < NR; jj++) {
            store<f32>(bp + (jj << 2), jj < nr ? load<f32>(src + (jj << 2)) : 0);
          }
          src += step;
          bp += 32;
        }
      }
    } else if (nr == NR) {
      // Eight B rows (one per output column), four k at a time, transposed 4x4 by shuffles.
      const rs = <usize>ldb << 2;
      const r0 = b + ((<usize>j * ldb + k0) << 2);
      let kk = 0;
      for (; kk + 4 <= kc; kk += 4) {
        const o = <usize>kk << 2;
        transpose4(r0 + o, rs, bp);
        transpose4(r0 + 4 * rs + o, rs, bp + 16);
        bp += 128;
      }
      for (; kk < kc; kk++) {
        const o = <usize>kk << 2;
        for (let jj = 0; jj < NR; jj++) store<f32>(bp + (jj << 2), load<f32>(r0 + <usize>jj * rs + o));
        bp += 32;
      }
    } else {
      for (let kk = 0; kk < kc; kk++) {
        for (let jj = 0; jj < NR; jj++) {
          const v: f32 = jj < nr ? load<f32>(b + ((<usize>(j + jj) * ldb + k0 + kk) << 2)) : 0;
          store<f32>(bp + (jj << 2), v);
        }
        bp += 32;
      }
    }
  }
}

/** Reads 4 floats from each of 4 rows (rs bytes apart); writes them column by column 32 bytes apart. */
function transpose4(src: usize, rs: usize, dst: usize): void {
  const r0 = v128.load(src);
  const r1 = v128.load(src + rs);
  const r2 = v128.load(src + 2 * rs);
  const r3 = v128.load(src + 3 * rs);
  const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7);
  const t2 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
  const t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
  v128.store(dst, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
  v128.store(dst, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7), 32);
  v128.store(dst, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5), 64);
  v128.store(dst, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7), 96);
}

/**
 * Computes rows [rowBegin, rowEnd) x columns [colBegin, colEnd) of C for `batch` consecutive
 * batch items (a, b, c point at the first item; strides in elements). Pointers are byte
 * addresses; scratch holds GEMM_SCRATCH_BYTES private to the calling thread.
 */
export function gemm(
  a: usize,
  b: usize,
  c: usize,
  m: i32,
  n: i32,
  k: i32,
  transA: bool,
  transB: bool,
  batch: i32,
  strideA: i32,
  strideB: i32,
  strideC: i32,
  alpha: f32,
  beta: i32,
  rowBegin: i32,
  rowEnd: i32,
  colBegin: i32,
  colEnd: i32,
  scratch: usize,
): void {
  for (let bi = 0; bi < batch; bi++) {
    gemmOne(
      a + (<usize>bi * strideA << 2),
      b + (<usize>bi * strideB << 2),
      c + (<usize>bi * strideC << 2),
      m,
      n,
      k,
      transA,
      transB,
      alpha,
      beta,
      rowBegin,
      rowEnd,
      colBegin,
      colEnd,
      scratch,
    );
  }
}

function gemmOne(
  a: usize,
  b: usize,
  c: usize,
  m: i32,
  n: i32,
  k: i32,
  transA: bool,
  transB: bool,
  alpha: f32,
  beta: i32,
  r0: i32,
  r1: i32,
  c0: i32,
  c1: i32,
  scratch: usize,
): void {
  if (r0 >= r1 || c0 >= c1) return;
  const ldc = <usize>n << 2;
  if (k == 0) {
    if (beta == 0) {
      for (let i = <usize>r0; i < <usize>r1; i++) memory.fill(c + i * ldc + (<usize>c0 << 2), 0, (c1 - c0) << 2);
    }
    return;
  }
  const bp = scratch;
  const edgeA = scratch + (PACK_B_FLOATS << 2);
  const tile = edgeA + (KC * MR << 2);
  const scaled = alpha != 1;
  const ldb = transB ? k : n;
  const kcMax = min(KC, k);
  const nc = max(NR, (PACK_B_FLOATS / kcMax) & ~(NR - 1));
  for (let jc = c0; jc < c1; jc += nc) {
    const ncur = min(nc, c1 - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      packB(b, ldb, transB, pc, kc, jc, ncur, bp);
      const accumulate = pc > 0 || beta != 0;
      const mode = (accumulate ? ADD : STORE) + (scaled ? 1 : 0);
      for (let ic = r0; ic < r1; ic += MC) {
        const mcur = min(MC, r1 - ic);
        const mFull = mcur - mcur % MR;
        if (transA && mFull < mcur) packEdgeA(a, m, pc, kc, ic + mFull, mcur - mFull, edgeA);
        for (let jr = 0; jr < ncur; jr += NR) {
          const nr = min(NR, ncur - jr);
          const panel = bp + (<usize>jr * kc << 2);
          const col = jc + jr;
          for (let ir = 0; ir < mcur; ir += MR) {
            const mr = min(MR, mcur - ir);
            const row = ic + ir;
            const full = mr == MR && nr == NR;
            const dst = full ? c + <usize>row * ldc + (<usize>col << 2) : tile;
            const dstLd: usize = full ? ldc : NR << 2;
            const dstMode = full ? mode : STORE;
            if (!transA) {
              const lda = <usize>k << 2;
              const base = a + ((<usize>row * k + pc) << 2);
              const last = <usize>(mr - 1);
              kernelRows(
                base,
                base + min<usize>(1, last) * lda,
                base + min<usize>(2, last) * lda,
                base + min<usize>(3, last) * lda,
                base + min<usize>(4, last) * lda,
                base + min<usize>(5, last) * lda,
                panel,
                kc,
                dst,
                dstLd,
                dstMode,
                alpha,
              );
            } else if (mr == MR) {
              kernelCols(
                a + ((<usize>pc * m + row) << 2),
                <usize>m << 2,
                panel,
                kc,
                dst,
                dstLd,
                dstMode,
                alpha,
              );
            } else {
              kernelCols(edgeA, MR << 2, panel, kc, dst, dstLd, dstMode, alpha);
            }
            if (!full) mergeTile(tile, c + <usize>row * ldc + (<usize>col << 2), ldc, mr, nr, mode, alpha);
          }
        }
      }
    }
  }
}

/** Copies rows [row, row+mr) of transposed A (K x M) for k in [k0, k0+kc) into a 6-wide panel. */
function packEdgeA(a: usize, m: i32, k0: i32, kc: i32, row: i32, mr: i32, dst: usize): void {
  for (let kk = 0; kk < kc; kk++) {
    const src = a + ((<usize>(k0 + kk) * m + row) << 2);
    for (let r = 0; r < MR; r++) {
      store<f32>(dst + (r << 2), r < mr ? load<f32>(src + (r << 2)) : 0);
    }
    dst += MR << 2;
  }
}

/** Writes the valid mr x nr corner of a raw 6x8 tile into C with the same arithmetic as storeTile. */
function mergeTile(
  tile: usize,
  c: usize,
  ldc: usize,
  mr: i32,
  nr: i32,
  mode: i32,
  alpha: f32,
): void {
  for (let r = 0; r < mr; r++) {
    for (let j = 0; j < nr; j++) {
      let v = load<f32>(tile + ((r * NR + j) << 2));
      if (mode == STORE_SCALED || mode == ADD_SCALED) v = v * alpha;
      const p = c + <usize>r * ldc + (j << 2);
      if (mode >= ADD) v = load<f32>(p) + v;
      store<f32>(p, v);
    }
  }
}
