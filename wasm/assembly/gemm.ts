// Single-precision GEMM: C = alpha * op(A) @ op(B) + beta * C, row-major, batched with strides.
//
// Blocking follows the BLIS loop order: columns in NC-wide blocks, K in KC-deep slices, the
// B slice in 8-column panels, rows in MC-row blocks, then a 6x8 register tile that streams six
// rows of op(A) and one B panel (8 floats per k). A is never packed: the tile reads element
// (r, k) at a + r * rs + k * ks, so untransposed A (ks = 4, rs = row) and transposed A (rs = 4,
// ks = row) are both read in place; only a partial last row panel is copied, zero-padded. B
// panels are packed (k-major, zero-padded at the edge) unless B is untransposed, the panel is
// full and the rows are too few to repay the copy: then the tile reads B's rows in place. Edge
// tiles go through a scratch tile, so every element C[i][j] is one accumulator lane summing
// a[i][k] * b[k][j] over k in increasing order with the same multiply-add, whatever tile,
// thread or edge path computes it: that is what makes results independent of how the work is
// split, and of packing.
//
// The A rows are addressed as p, p + rs, p + 2rs, ... with both strides runtime values:
// without a trap handler (Deno) V8 bounds-checks every access, and a load at a computed address
// checks more cheaply than one with a constant memarg offset (measured: about 10% on the tile).

import { madd } from "./simd";

const MR = 6;
const NR = 8;
const KC = 256;
const MC = 96;
/** Floats in one thread's packed-B buffer (KC * NC, 256 KiB: half the L2 cache). */
const PACK_B_FLOATS = 65536;
/** Floats of one zero-padded copy of a partial A row panel. */
const EDGE_A_FLOATS = MR * KC;
/** Bytes of per-thread scratch gemm needs: packed B, an edge A panel, one C tile. */
export const GEMM_SCRATCH_BYTES: i32 = (PACK_B_FLOATS + EDGE_A_FLOATS + MR * NR) * 4;
/** Row blocks up to this many rows read untransposed B in place instead of packing it. */
const DIRECT_B_MAX_ROWS = 2 * MC;

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
 * rows x cols tile (rows 2, 4 or 6; cols 4 or 8) of C (+)= A (element (r, k) of the tile at
 * a + r * rs + k * ks) @ B panel (kc steps of bs bytes, 8 floats each). Inlined with constant
 * rows/cols, the unused accumulators and loads vanish; the narrower tiles serve edges.
 */
// @ts-ignore: decorator
@inline function tile(
  a: usize,
  rs: usize,
  ks: usize,
  b: usize,
  bs: usize,
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
  // Rows 0-2 from p, rows 3-5 from q = p + 3 rs: fewer live addresses than six row pointers.
  const rs2 = rs + rs;
  const end = a + <usize>kc * ks;
  let p = a;
  let q = a + rs2 + rs;
  while (p < end) {
    const b0 = v128.load(b);
    if (cols > 4) b1 = v128.load(b, 16);
    x = v128.load32_splat(p);
    c00 = madd(x, b0, c00);
    if (cols > 4) c01 = madd(x, b1, c01);
    x = v128.load32_splat(p + rs);
    c10 = madd(x, b0, c10);
    if (cols > 4) c11 = madd(x, b1, c11);
    if (rows > 2) {
      x = v128.load32_splat(p + rs2);
      c20 = madd(x, b0, c20);
      if (cols > 4) c21 = madd(x, b1, c21);
      x = v128.load32_splat(q);
      c30 = madd(x, b0, c30);
      if (cols > 4) c31 = madd(x, b1, c31);
    }
    if (rows > 4) {
      x = v128.load32_splat(q + rs);
      c40 = madd(x, b0, c40);
      if (cols > 4) c41 = madd(x, b1, c41);
      x = v128.load32_splat(q + rs2);
      c50 = madd(x, b0, c50);
      if (cols > 4) c51 = madd(x, b1, c51);
    }
    p += ks;
    q += ks;
    b += bs;
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

function kernel6x8(a: usize, rs: usize, ks: usize, b: usize, bs: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(a, rs, ks, b, bs, kc, c, ldc, mode, alpha, 6, 8);
}
function kernel6x4(a: usize, rs: usize, ks: usize, b: usize, bs: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(a, rs, ks, b, bs, kc, c, ldc, mode, alpha, 6, 4);
}
function kernel4x8(a: usize, rs: usize, ks: usize, b: usize, bs: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(a, rs, ks, b, bs, kc, c, ldc, mode, alpha, 4, 8);
}
function kernel4x4(a: usize, rs: usize, ks: usize, b: usize, bs: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(a, rs, ks, b, bs, kc, c, ldc, mode, alpha, 4, 4);
}
function kernel2x8(a: usize, rs: usize, ks: usize, b: usize, bs: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(a, rs, ks, b, bs, kc, c, ldc, mode, alpha, 2, 8);
}
function kernel2x4(a: usize, rs: usize, ks: usize, b: usize, bs: usize, kc: i32, c: usize, ldc: usize, mode: i32, alpha: f32): void {
  tile(a, rs, ks, b, bs, kc, c, ldc, mode, alpha, 2, 4);
}

/** Edge tile: the smallest kernel covering mr x nr, written raw into the 6x8 scratch tile. */
function edgeTile(a: usize, rs: usize, ks: usize, b: usize, bs: usize, kc: i32, t: usize, mr: i32, nr: i32): void {
  const ld: usize = NR << 2;
  if (nr > 4) {
    if (mr > 4) kernel6x8(a, rs, ks, b, bs, kc, t, ld, STORE, 1);
    else if (mr > 2) kernel4x8(a, rs, ks, b, bs, kc, t, ld, STORE, 1);
    else kernel2x8(a, rs, ks, b, bs, kc, t, ld, STORE, 1);
  } else {
    if (mr > 4) kernel6x4(a, rs, ks, b, bs, kc, t, ld, STORE, 1);
    else if (mr > 2) kernel4x4(a, rs, ks, b, bs, kc, t, ld, STORE, 1);
    else kernel2x4(a, rs, ks, b, bs, kc, t, ld, STORE, 1);
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
        // The edge panel: zero it, then copy the nr real columns of each k.
        memory.fill(bp, 0, <usize>kc << 5);
        for (let kk = 0; kk < kc; kk++) {
          for (let jj = 0; jj < nr; jj++) store<f32>(bp + (jj << 2), load<f32>(src + (jj << 2)));
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
      // The edge panel: zero it, then copy each of the nr B rows (one per column) along k.
      memory.fill(bp, 0, <usize>kc << 5);
      for (let jj = 0; jj < nr; jj++) {
        const src = b + ((<usize>(j + jj) * ldb + k0) << 2);
        const dst = bp + (<usize>jj << 2);
        for (let kk = 0; kk < kc; kk++) store<f32>(dst + (<usize>kk << 5), load<f32>(src + (<usize>kk << 2)));
      }
      bp += <usize>kc << 5;
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
 * Copies the mr (< 6) rows of a partial A row panel (element (r, k) at src + r * rs + k * ks)
 * into a row-major 6-row panel of kc floats per row, the missing rows zero.
 */
function copyEdgeRows(src: usize, rs: usize, ks: usize, mr: i32, kc: i32, dst: usize): void {
  const kcB = <usize>kc << 2;
  for (let r = 0; r < mr; r++) {
    const from = src + <usize>r * rs;
    const to = dst + <usize>r * kcB;
    if (ks == 4) memory.copy(to, from, kcB);
    else for (let kk = 0; kk < kc; kk++) store<f32>(to + (<usize>kk << 2), load<f32>(from + <usize>kk * ks));
  }
  memory.fill(dst + <usize>mr * kcB, 0, <usize>(MR - mr) * kcB);
}

/**
 * Computes rows [rowBegin, rowEnd) x columns [colBegin, colEnd) of C for `batch` consecutive
 * batch items, each with `batch2` inner items (a, b, c point at the first item; item (i, j) at
 * i * stride + j * stride2, strides in elements). lda, ldb, ldc are the stored matrices' row
 * strides in elements. Pointers are byte addresses; scratch holds GEMM_SCRATCH_BYTES private to
 * the calling thread.
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
  batch2: i32,
  strideA2: i32,
  strideB2: i32,
  strideC2: i32,
  lda: i32,
  ldb: i32,
  ldc: i32,
  alpha: f32,
  beta: i32,
  rowBegin: i32,
  rowEnd: i32,
  colBegin: i32,
  colEnd: i32,
  scratch: usize,
): void {
  for (let item = 0; item < batch * batch2; item++) {
    const bi = item / batch2;
    const bj = item - bi * batch2;
    gemmOne(
      a + ((<usize>bi * strideA + <usize>bj * strideA2) << 2),
      b + ((<usize>bi * strideB + <usize>bj * strideB2) << 2),
      c + ((<usize>bi * strideC + <usize>bj * strideC2) << 2),
      m,
      n,
      k,
      transA,
      transB,
      lda,
      ldb,
      ldc,
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
  lda: i32,
  ldb: i32,
  ldcE: i32,
  alpha: f32,
  beta: i32,
  r0: i32,
  r1: i32,
  c0: i32,
  c1: i32,
  scratch: usize,
): void {
  if (r0 >= r1 || c0 >= c1) return;
  const ldc = <usize>ldcE << 2;
  if (k == 0) {
    if (beta == 0) {
      for (let i = <usize>r0; i < <usize>r1; i++) memory.fill(c + i * ldc + (<usize>c0 << 2), 0, (c1 - c0) << 2);
    }
    return;
  }
  const bp = scratch;
  const edgeA = bp + (PACK_B_FLOATS << 2);
  const scratchTile = edgeA + (EDGE_A_FLOATS << 2);
  const scaled = alpha != 1;
  const ldaB = <usize>lda << 2;
  // op(A)[i][k] at a + i * rs + k * ks
  const rs: usize = transA ? 4 : ldaB;
  const ks: usize = transA ? ldaB : 4;
  const ldbB = <usize>ldb << 2;
  const panelStride: usize = NR << 2;
  const kcMax = min(KC, k);
  const nc = max(NR, (PACK_B_FLOATS / kcMax) & ~(NR - 1));
  const directB = !transB && r1 - r0 <= DIRECT_B_MAX_ROWS;
  const rs6 = rs * MR;
  const ldc6 = ldc * MR;
  for (let jc = c0; jc < c1; jc += nc) {
    const ncur = min(nc, c1 - jc);
    const nFull = ncur & ~(NR - 1);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      if (!directB) packB(b, ldb, transB, pc, kc, jc, ncur, bp);
      else if (nFull < ncur) packB(b, ldb, false, pc, kc, jc + nFull, ncur - nFull, bp);
      const accumulate = pc > 0 || beta != 0;
      const mode = (accumulate ? ADD : STORE) + (scaled ? 1 : 0);
      for (let ic = r0; ic < r1; ic += MC) {
        const mcur = min(MC, r1 - ic);
        const mFull = mcur - mcur % MR;
        const aBlock = a + <usize>ic * rs + <usize>pc * ks;
        // The last, partial row panel reads a zero-padded row-major copy.
        if (mFull < mcur) copyEdgeRows(aBlock + <usize>mFull * rs, rs, ks, mcur - mFull, kc, edgeA);
        const kcB = <usize>kc << 2;
        for (let jr = 0; jr < ncur; jr += NR) {
          const nr = min(NR, ncur - jr);
          const col = jc + jr;
          let bPanel = bp + (<usize>jr * kc << 2);
          let bs = panelStride;
          if (directB) {
            if (nr == NR) {
              bPanel = b + ((<usize>pc * ldb + col) << 2);
              bs = ldbB;
            } else {
              bPanel = bp;
            }
          }
          let dst = c + <usize>ic * ldc + (<usize>col << 2);
          let ap = aBlock;
          if (nr == NR) {
            for (let ir = 0; ir < mFull; ir += MR) {
              kernel6x8(ap, rs, ks, bPanel, bs, kc, dst, ldc, mode, alpha);
              ap += rs6;
              dst += ldc6;
            }
          } else {
            for (let ir = 0; ir < mFull; ir += MR) {
              edgeTile(ap, rs, ks, bPanel, bs, kc, scratchTile, MR, nr);
              mergeTile(scratchTile, dst, ldc, MR, nr, mode, alpha);
              ap += rs6;
              dst += ldc6;
            }
          }
          if (mFull < mcur) {
            edgeTile(edgeA, kcB, 4, bPanel, bs, kc, scratchTile, mcur - mFull, nr);
            mergeTile(scratchTile, dst, ldc, mcur - mFull, nr, mode, alpha);
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
