// DuAF's modality fusion (paper Eq. 7-8) and its gradient, one row at a time, so that the M
// keys, scores and weights of a row stay in registers and cache instead of [rows, M, dim]
// temporaries.

import { expBoundedV, tanhV } from "./math";
import { hsum, loadTail, madd, storeTail } from "./simd";

/** Lane j (0..3) of v. */
// @ts-ignore: decorator
@inline function lane(v: v128, j: i32): f32 {
  if (j == 0) return f32x4.extract_lane(v, 0);
  if (j == 1) return f32x4.extract_lane(v, 1);
  if (j == 2) return f32x4.extract_lane(v, 2);
  return f32x4.extract_lane(v, 3);
}

/** v with lane j (0..3) set to x. */
// @ts-ignore: decorator
@inline function withLane(v: v128, j: i32, x: f32): v128 {
  if (j == 0) return f32x4.replace_lane(v, 0, x);
  if (j == 1) return f32x4.replace_lane(v, 1, x);
  if (j == 2) return f32x4.replace_lane(v, 2, x);
  return f32x4.replace_lane(v, 3, x);
}

/** Four floats at p + c*4, or the tail's (the rest 0) when c is the row's vector end. */
// @ts-ignore: decorator
@inline function ld(p: usize, c: i32, nv: i32, tail: i32): v128 {
  const a = p + (<usize>c << 2);
  return c < nv ? v128.load(a) : loadTail(a, tail);
}

// @ts-ignore: decorator
@inline function st(p: usize, c: i32, nv: i32, tail: i32, v: v128): void {
  const a = p + (<usize>c << 2);
  if (c < nv) v128.store(a, v);
  else storeTail(a, v, tail);
}

/**
 * e: m (1..4) pointers to [rows, dim] modality rows (an i32 list at `ptrs`); t, q [rows, dim];
 * rows [rowBegin, rowEnd) are computed (a thread's share).
 * Writes keys [rows, m, dim] = tanh(e_j + t), omega [rows, m] = softmax_j(scale <keys_j, q>) and
 * h [rows, dim] = Σ_j omega_j e_j. Tail lanes load as 0, so they add tanh(0) * 0 to the scores.
 */
export function modalityFusion(
  ptrs: usize,
  m: i32,
  t: usize,
  q: usize,
  h: usize,
  omega: usize,
  keys: usize,
  rowBegin: i32,
  rowEnd: i32,
  dim: i32,
  scale: f32,
): void {
  const rowBytes = <usize>dim << 2;
  const nv = dim & ~3;
  const tail = dim - nv;
  const end = tail ? nv + 4 : nv;
  for (let r = rowBegin; r < rowEnd; r++) {
    const off = <usize>r * rowBytes;
    const tr = t + off, qr = q + off;
    let s = f32x4.splat(0);
    let mx: f32 = -Infinity;
    for (let j = 0; j < m; j++) {
      const ej = <usize>load<u32>(ptrs + (<usize>j << 2)) + off;
      const kj = keys + (<usize>(r * m + j)) * rowBytes;
      let acc = f32x4.splat(0);
      for (let c = 0; c < end; c += 4) {
        const k = tanhV(f32x4.add(ld(ej, c, nv, tail), ld(tr, c, nv, tail)));
        st(kj, c, nv, tail, k);
        acc = madd(k, ld(qr, c, nv, tail), acc);
      }
      const sj = hsum(acc) * scale;
      s = withLane(s, j, sj);
      mx = max(mx, sj);
    }
    // Unused lanes hold 0 and are left out of the sum.
    const ex = expBoundedV(f32x4.sub(s, f32x4.splat(mx)));
    let sum: f32 = 0;
    for (let j = 0; j < m; j++) sum += lane(ex, j);
    const inv: f32 = 1 / sum;
    const wr = omega + (<usize>(r * m) << 2);
    for (let j = 0; j < m; j++) store<f32>(wr + (<usize>j << 2), lane(ex, j) * inv);
    const hr = h + off;
    for (let c = 0; c < end; c += 4) {
      let acc = f32x4.splat(0);
      for (let j = 0; j < m; j++) {
        const ej = <usize>load<u32>(ptrs + (<usize>j << 2)) + off;
        acc = madd(f32x4.splat(load<f32>(wr + (<usize>j << 2))), ld(ej, c, nv, tail), acc);
      }
      st(hr, c, nv, tail, acc);
    }
  }
}

/**
 * Gradient of modalityFusion given gh [rows, dim] and gomega [rows, m] (0: none): with
 * gω_j = <gh, e_j> + gomega_j and
 * gs_j = scale ω_j (gω_j - Σ_i ω_i gω_i), u_j = gs_j (1 - k_j^2) q:
 * ge_j = ω_j gh + u_j, gt = Σ_j u_j, gq = Σ_j gs_j k_j. `ptrs` lists the m e pointers, then
 * (at ptrs + 16) the m ge pointers; all outputs are overwritten.
 */
export function modalityFusionGrad(
  ptrs: usize,
  m: i32,
  q: usize,
  omega: usize,
  keys: usize,
  gh: usize,
  gomega: usize,
  gt: usize,
  gq: usize,
  rowBegin: i32,
  rowEnd: i32,
  dim: i32,
  scale: f32,
): void {
  const rowBytes = <usize>dim << 2;
  const nv = dim & ~3;
  const tail = dim - nv;
  const end = tail ? nv + 4 : nv;
  for (let r = rowBegin; r < rowEnd; r++) {
    const off = <usize>r * rowBytes;
    const gr = gh + off, qr = q + off;
    const wr = omega + (<usize>(r * m) << 2);
    let gw = f32x4.splat(0);
    let w = f32x4.splat(0);
    let mean: f32 = 0;
    for (let j = 0; j < m; j++) {
      const ej = <usize>load<u32>(ptrs + (<usize>j << 2)) + off;
      let acc = f32x4.splat(0);
      for (let c = 0; c < end; c += 4) acc = madd(ld(gr, c, nv, tail), ld(ej, c, nv, tail), acc);
      let d = hsum(acc);
      if (gomega) d += load<f32>(gomega + (<usize>(r * m + j) << 2));
      const wj = load<f32>(wr + (<usize>j << 2));
      gw = withLane(gw, j, d);
      w = withLane(w, j, wj);
      mean += wj * d;
    }
    const gs = f32x4.mul(f32x4.splat(scale), f32x4.mul(w, f32x4.sub(gw, f32x4.splat(mean))));
    const one = f32x4.splat(1);
    for (let c = 0; c < end; c += 4) {
      const g = ld(gr, c, nv, tail);
      const qc = ld(qr, c, nv, tail);
      let tacc = f32x4.splat(0);
      let qacc = f32x4.splat(0);
      for (let j = 0; j < m; j++) {
        const kj = keys + (<usize>(r * m + j)) * rowBytes;
        const gej = <usize>load<u32>(ptrs + 16 + (<usize>j << 2)) + off;
        const k = ld(kj, c, nv, tail);
        const gsj = f32x4.splat(lane(gs, j));
        // 1 - k^2 as (1 - k)(1 + k), as tanh's own gradient: no cancellation near |k| = 1
        const dk = f32x4.mul(f32x4.sub(one, k), f32x4.add(one, k));
        const u = f32x4.mul(f32x4.mul(gsj, dk), qc);
        st(gej, c, nv, tail, madd(f32x4.splat(lane(w, j)), g, u));
        tacc = f32x4.add(tacc, u);
        qacc = madd(gsj, k, qacc);
      }
      st(gt + off, c, nv, tail, tacc);
      st(gq + off, c, nv, tail, qacc);
    }
  }
}
