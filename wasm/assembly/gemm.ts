// Single-precision GEMM: C = alpha * op(A) @ op(B) + beta * C, row-major, batched with strides.
//
// Blocking follows the BLIS loop order: columns in NC-wide blocks, K in KC-deep slices, the
// B slice packed into 8-column panels, rows in MC-row blocks whose A slice is packed into
// 6-row panels (k-major: the 6 values of one k are adjacent), then a 6x8 register tile that
// streams one A panel and one B panel. Edge panels are zero-padded and edge tiles go through a
// scratch tile, so every element C[i][j] is one accumulator lane summing a[i][k] * b[k][j] over
// k in increasing order with the same multiply-add, whatever tile, thread or edge path computes
// it: that is what makes results independent of how the work is split.

import { madd } from "./simd";

const MR = 6;
const NR = 8;
const KC = 256;
const MC = 96;
/** Floats in one thread's packed-B buffer (KC * NC, 256 KiB: half the L2 cache). */
const PACK_B_FLOATS = 65536;
const PACK_A_FLOATS = MC * KC;
/** Bytes of per-thread scratch gemm needs: packed B, packed A, one C tile. */
export const GEMM_SCRATCH_BYTES: i32 = (PACK_B_FLOATS + PACK_A_FLOATS + MR * NR) * 4;

// Store modes of a finished tile.
const STORE = 0; // C = acc
const STORE_SCALED = 1; // C = alpha * acc
const ADD = 2; // C = C + acc
const ADD_SCALED = 3; // C = C + alpha * acc

// @ts-ignore: decorator
@inline function storeRow(c: usize, mode: i32, alpha: f32, r: v128, s: v128, cols: i32): void {
  if (mode == STORE_SCALED || mode == ADD_SCALED) {
    const va = f32x4.splat(alpha);
    r = f32x4.mul(r, va);
    s = f32x4.mul(s, va);
  }
  if (mode >= ADD) {
    r = f32x4.add(v128.load(c), r);
    if (cols > 4) s = f32x4.add(v128.load(c, 16), s);
  }
  v128.store(c, r);
  if (cols > 4) v128.store(c, s, 16);
}

/**
 * rows x cols tile (rows 2, 4 or 6; cols 4 or 8) of C (+)= packed A panel (kc x 6) @ packed B
 * panel (kc x 8). Inlined with constant rows/cols, the unused accumulators and loads vanish;
 * the narrower tiles serve edges, so less of the zero padding is multiplied.
 */
// @ts-ignore: decorator
@inline function tile(
  ap: usize,
  bp: usize,
  kc: i32,
  c: usize,
  ldc: usize,
  mode: i32,
  alpha: f32,
  rows: i32,
  cols: i32,
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
  let b1 = c00;
  let x: v128;
  for (let k = 0; k < kc; k++) {
    const b0 = v128.load(bp);
    if (cols > 4) b1 = v128.load(bp, 16);
    x = v128.load32_splat(ap);
    c00 = madd(x, b0, c00);
    if (cols > 4) c01 = madd(x, b1, c01);
    x = v128.load32_splat(ap, 4);
    c10 = madd(x, b0, c10);
    if (cols > 4) c11 = madd(x, b1, c11);
    if (rows > 2) {
      x = v128.load32_splat(ap, 8);
      c20 = madd(x, b0, c20);
      if (cols > 4) c21 = madd(x, b1, c21);
      x = v128.load32_splat(ap, 12);
      c30 = madd(x, b0, c30);
      if (cols > 4) c31 = madd(x, b1, c31);
    }
    if (rows > 4) {
      x = v128.load32_splat(ap, 16);
      c40 = madd(x, b0, c40);
      if (cols > 4) c41 = madd(x, b1, c41);
      x = v128.load32_splat(ap, 20);
      c50 = madd(x, b0, c50);
      if (cols > 4) c51 = madd(x, b1, c51);
    }
    ap += 24;
    bp += 32;
  }
  storeRow(c, mode, alpha, c00, c01, cols);
  storeRow(c + ldc, mode, alpha, c10, c11, cols);
  if (rows > 2) {
    storeRow(c + 2 * ldc, mode, alpha, c20, c21, cols);
    storeRow(c + 3 * ldc, mode, alpha, c30, c31, cols);
  }
  if (rows > 4) {
    storeRow(c + 4 * ldc, mode, alpha, c40, c41, cols);
    storeRow(c + 5 * ldc, mode, alpha, c50, c51, cols);
  }
}

function kernel6x8(ap: usize, bp: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(ap, bp, kc, c, ldc, mode, alpha, 6, 8);
}
function kernel6x4(ap: usize, bp: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(ap, bp, kc, c, ldc, mode, alpha, 6, 4);
}
function kernel4x8(ap: usize, bp: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(ap, bp, kc, c, ldc, mode, alpha, 4, 8);
}
function kernel4x4(ap: usize, bp: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(ap, bp, kc, c, ldc, mode, alpha, 4, 4);
}
function kernel2x8(ap: usize, bp: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(ap, bp, kc, c, ldc, mode, alpha, 2, 8);
}
function kernel2x4(ap: usize, bp: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(ap, bp, kc, c, ldc, mode, alpha, 2, 4);
}

/** Edge tile: the smallest kernel covering mr x nr, written raw into the 6x8 scratch tile. */
function edgeTile(ap: usize, bp: usize, kc: i32, t: usize, mr: i32, nr: i32): void {
  const ld: usize = NR << 2;
  if (nr > 4) {
    if (mr > 4) kernel6x8(ap, bp, kc, t, ld, STORE, 1);
    else if (mr > 2) kernel4x8(ap, bp, kc, t, ld, STORE, 1);
    else kernel2x8(ap, bp, kc, t, ld, STORE, 1);
  } else {
    if (mr > 4) kernel6x4(ap, bp, kc, t, ld, STORE, 1);
    else if (mr > 2) kernel4x4(ap, bp, kc, t, ld, STORE, 1);
    else kernel2x4(ap, bp, kc, t, ld, STORE, 1);
  }
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
        transpose4(r0 + o, rs, bp, 32);
        transpose4(r0 + 4 * rs + o, rs, bp + 16, 32);
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

/**
 * Reads 4 floats from each of 4 rows (rs bytes apart) and writes the 4 columns, ds bytes
 * apart: dst + j * ds receives (row0[j], row1[j], row2[j], row3[j]).
 */
// @ts-ignore: decorator
@inline function transpose4(src: usize, rs: usize, dst: usize, ds: usize): void {
  const r0 = v128.load(src);
  const r1 = v128.load(src + rs);
  const r2 = v128.load(src + 2 * rs);
  const r3 = v128.load(src + 3 * rs);
  const t0 = v128.shuffle<f32>(r0, r1, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(r0, r1, 2, 6, 3, 7);
  const t2 = v128.shuffle<f32>(r2, r3, 0, 4, 1, 5);
  const t3 = v128.shuffle<f32>(r2, r3, 2, 6, 3, 7);
  v128.store(dst, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
  v128.store(dst + ds, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7));
  v128.store(dst + 2 * ds, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5));
  v128.store(dst + 3 * ds, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7));
}

/**
 * Packs rows [i0, i0+mc) x k in [k0, k0+kc) of op(A) into 6-row panels, each kc x 6 floats
 * (k-major), the last one zero-padded. A is M x K (lda = K) or, transposed, K x M (lda = M).
 */
function packA(
  a: usize,
  lda: i32,
  transA: bool,
  k0: i32,
  kc: i32,
  i0: i32,
  mc: i32,
  ap: usize,
): void {
  const ldaB = <usize>lda << 2;
  for (let ir = 0; ir < mc; ir += MR) {
    const mr = min(MR, mc - ir);
    const i = i0 + ir;
    if (transA) {
      // the 6 values of one k are adjacent in memory
      let src = a + ((<usize>k0 * lda + i) << 2);
      if (mr == MR) {
        for (let kk = 0; kk < kc; kk++) {
          v128.store(ap, v128.load(src));
          store<i64>(ap, load<i64>(src, 16), 16);
          src += ldaB;
          ap += MR << 2;
        }
      } else {
        for (let kk = 0; kk < kc; kk++) {
          for (let r = 0; r < MR; r++) store<f32>(ap + (r << 2), r < mr ? load<f32>(src + (r << 2)) : 0);
          src += ldaB;
          ap += MR << 2;
        }
      }
    } else if (mr == MR) {
      // six rows, four k at a time: rows 0-3 by a 4x4 transpose, rows 4-5 by pairing lanes
      const r0 = a + ((<usize>i * lda + k0) << 2);
      const r4 = r0 + 4 * ldaB;
      let kk = 0;
      for (; kk + 4 <= kc; kk += 4) {
        const o = <usize>kk << 2;
        transpose4(r0 + o, ldaB, ap, MR << 2);
        const v4 = v128.load(r4 + o);
        const v5 = v128.load(r4 + ldaB + o);
        const lo = v128.shuffle<f32>(v4, v5, 0, 4, 1, 5);
        const hi = v128.shuffle<f32>(v4, v5, 2, 6, 3, 7);
        v128.store_lane<i64>(ap, lo, 0, 16);
        v128.store_lane<i64>(ap, lo, 1, 40);
        v128.store_lane<i64>(ap, hi, 0, 64);
        v128.store_lane<i64>(ap, hi, 1, 88);
        ap += 4 * MR << 2;
      }
      for (; kk < kc; kk++) {
        const o = <usize>kk << 2;
        for (let r = 0; r < MR; r++) store<f32>(ap + (r << 2), load<f32>(r0 + <usize>r * ldaB + o));
        ap += MR << 2;
      }
    } else {
      const r0 = a + ((<usize>i * lda + k0) << 2);
      for (let kk = 0; kk < kc; kk++) {
        const o = <usize>kk << 2;
        for (let r = 0; r < MR; r++) {
          store<f32>(ap + (r << 2), r < mr ? load<f32>(r0 + <usize>r * ldaB + o) : 0);
        }
        ap += MR << 2;
      }
    }
  }
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
  const apBase = bp + (PACK_B_FLOATS << 2);
  const scratchTile = apBase + (PACK_A_FLOATS << 2);
  const scaled = alpha != 1;
  const lda = transA ? m : k;
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
      const panelBytes = <usize>kc * MR << 2;
      for (let ic = r0; ic < r1; ic += MC) {
        const mcur = min(MC, r1 - ic);
        packA(a, lda, transA, pc, kc, ic, mcur, apBase);
        for (let jr = 0; jr < ncur; jr += NR) {
          const nr = min(NR, ncur - jr);
          const bPanel = bp + (<usize>jr * kc << 2);
          const col = jc + jr;
          let aPanel = apBase;
          for (let ir = 0; ir < mcur; ir += MR) {
            const mr = min(MR, mcur - ir);
            const dst = c + <usize>(ic + ir) * ldc + (<usize>col << 2);
            if (mr == MR && nr == NR) {
              kernel6x8(aPanel, bPanel, kc, dst, ldc, mode, alpha);
            } else {
              edgeTile(aPanel, bPanel, kc, scratchTile, mr, nr);
              mergeTile(scratchTile, dst, ldc, mr, nr, mode, alpha);
            }
            aPanel += panelBytes;
          }
        }
      }
    }
  }
}

/** Writes the valid mr x nr corner of a raw 6x8 tile into C with the same arithmetic as storeRow. */
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
