// Row-wise kernels over the last axis: softmax / log-softmax and LayerNorm, with gradients.

import { expBoundedV, log1pV, logV } from "./math";
import { hmax, hsum, loadTail, storeTail } from "./simd";

/** Softmax (or log-softmax) of each row of cols floats. */
export function softmax(x: usize, out: usize, rows: i32, cols: i32, log: bool): void {
  const rowBytes = <usize>cols << 2;
  for (let r = 0; r < rows; r++) softmaxRow(x + <usize>r * rowBytes, out + <usize>r * rowBytes, cols, log);
}

/**
 * Attention's softmax(x * scale + mask) per row, one call instead of a scale pass, a mask pass
 * and the softmax: row r (of rowBegin + rows, counted as [a, heads, q]) takes the logits
 * f32(f32(x * scale) + mask row), rounded as the separate passes round them, computed again in
 * each of softmax's passes instead of stored, then softmax's arithmetic (softmaxRow). The mask
 * row of row (i, j, k) starts at (i * sb + j * sh + k * sq) rows into mask; hasMask false adds
 * nothing.
 */
export function maskedSoftmax(
  x: usize,
  mask: usize,
  out: usize,
  rows: i32,
  cols: i32,
  scale: f32,
  hasMask: bool,
  heads: i32,
  q: i32,
  sb: i32,
  sh: i32,
  sq: i32,
  rowBegin: i32,
): void {
  const rowBytes = <usize>cols << 2;
  const nv = cols & ~3;
  const tail = cols - nv;
  const sv = f32x4.splat(scale);
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes;
    const or = out + <usize>r * rowBytes;
    const ra = rowBegin + r;
    const k = ra % q;
    const j = (ra / q) % heads;
    const i = ra / (q * heads);
    const mr = hasMask ? mask + (<usize>(i * sb + j * sh + k * sq)) * rowBytes : 0;
    let vm = f32x4.splat(-Infinity);
    for (let c = 0; c < nv; c += 4) vm = f32x4.pmax(vm, logitsV(xr, mr, c, sv, hasMask));
    let m = hmax(vm);
    for (let c = nv; c < cols; c++) m = max(m, logit(xr, mr, c, scale, hasMask));
    const sm = f32x4.splat(m);
    let vs = f32x4.splat(0);
    for (let c = 0; c < nv; c += 4) {
      const e = expBoundedV(f32x4.sub(logitsV(xr, mr, c, sv, hasMask), sm));
      v128.store(or + (<usize>c << 2), e);
      vs = f32x4.add(vs, e);
    }
    let s = hsum(vs);
    if (tail) {
      const o = <usize>nv << 2;
      let z = f32x4.mul(loadTail(xr + o, tail), sv);
      if (hasMask) z = f32x4.add(z, loadTail(mr + o, tail));
      const e = expBoundedV(f32x4.sub(z, sm));
      storeTail(or + o, e, tail);
      // lanes beyond the tail hold e^(0 - m), so add only the valid ones
      s += f32x4.extract_lane(e, 0);
      if (tail > 1) s += f32x4.extract_lane(e, 1);
      if (tail > 2) s += f32x4.extract_lane(e, 2);
    }
    const inv = f32x4.splat(1 / s);
    for (let c = 0; c < nv; c += 4) {
      const o = <usize>c << 2;
      v128.store(or + o, f32x4.mul(v128.load(or + o), inv));
    }
    for (let c = nv; c < cols; c++) {
      const o = <usize>c << 2;
      store<f32>(or + o, load<f32>(or + o) * f32x4.extract_lane(inv, 0));
    }
  }
}

/** Four logits f32(f32(x * scale) + mask) from column c. */
// @ts-ignore: decorator
@inline function logitsV(xr: usize, mr: usize, c: i32, sv: v128, hasMask: bool): v128 {
  const o = <usize>c << 2;
  const z = f32x4.mul(v128.load(xr + o), sv);
  return hasMask ? f32x4.add(z, v128.load(mr + o)) : z;
}

/** One logit, as logitsV. */
// @ts-ignore: decorator
@inline function logit(xr: usize, mr: usize, c: i32, scale: f32, hasMask: bool): f32 {
  const o = <usize>c << 2;
  const z = load<f32>(xr + o) * scale;
  return hasMask ? z + load<f32>(mr + o) : z;
}

/** One row of softmax; xr and or may be the same row. */
// @ts-ignore: decorator
@inline function softmaxRow(xr: usize, or: usize, cols: i32, log: bool): void {
  const nv = cols & ~3;
  const tail = cols - nv;
  {
    let vm = f32x4.splat(-Infinity);
    for (let i = 0; i < nv; i += 4) vm = f32x4.pmax(vm, v128.load(xr + (<usize>i << 2)));
    let m = hmax(vm);
    for (let i = nv; i < cols; i++) m = max(m, load<f32>(xr + (<usize>i << 2)));
    const sm = f32x4.splat(m);
    let vs = f32x4.splat(0);
    // e^(x - max): stored as the softmax numerator, or only summed for log-softmax
    for (let i = 0; i < nv; i += 4) {
      const o = <usize>i << 2;
      const e = expBoundedV(f32x4.sub(v128.load(xr + o), sm));
      if (!log) v128.store(or + o, e);
      vs = f32x4.add(vs, e);
    }
    let s = hsum(vs);
    if (tail) {
      const o = <usize>nv << 2;
      const e = expBoundedV(f32x4.sub(loadTail(xr + o, tail), sm));
      if (!log) storeTail(or + o, e, tail);
      // lanes beyond the tail hold e^(0 - m), so add only the valid ones
      s += f32x4.extract_lane(e, 0);
      if (tail > 1) s += f32x4.extract_lane(e, 1);
      if (tail > 2) s += f32x4.extract_lane(e, 2);
    }
    if (log) {
      const shift = f32x4.splat(m + f32x4.extract_lane(logV(f32x4.splat(s)), 0));
      for (let i = 0; i < nv; i += 4) {
        const o = <usize>i << 2;
        v128.store(or + o, f32x4.sub(v128.load(xr + o), shift));
      }
      if (tail) {
        const o = <usize>nv << 2;
        storeTail(or + o, f32x4.sub(loadTail(xr + o, tail), shift), tail);
      }
    } else {
      const inv = f32x4.splat(1 / s);
      for (let i = 0; i < nv; i += 4) {
        const o = <usize>i << 2;
        v128.store(or + o, f32x4.mul(v128.load(or + o), inv));
      }
      for (let i = nv; i < cols; i++) {
        const o = <usize>i << 2;
        store<f32>(or + o, load<f32>(or + o) * f32x4.extract_lane(inv, 0));
      }
    }
  }
}

/**
 * Softmax: dx = y * (g - sum(g * y)); log-softmax: dx = g - e^y * sum(g). With scale != 1 each
 * dx is then multiplied by it, rounded as a separate scale pass would (attention's 1 / sqrt(dh)).
 */
export function softmaxGrad(
  y: usize,
  g: usize,
  out: usize,
  rows: i32,
  cols: i32,
  log: bool,
  scale: f32,
): void {
  const scaled = scale != 1;
  const sv = f32x4.splat(scale);
  const rowBytes = <usize>cols << 2;
  const nv = cols & ~3;
  const tail = cols - nv;
  for (let r = 0; r < rows; r++) {
    const yr = y + <usize>r * rowBytes;
    const gr = g + <usize>r * rowBytes;
    const or = out + <usize>r * rowBytes;
    let vs = f32x4.splat(0);
    for (let i = 0; i < nv; i += 4) {
      const o = <usize>i << 2;
      const gv = v128.load(gr + o);
      vs = f32x4.add(vs, log ? gv : f32x4.mul(gv, v128.load(yr + o)));
    }
    let s = hsum(vs);
    for (let i = nv; i < cols; i++) {
      const o = <usize>i << 2;
      s += log ? load<f32>(gr + o) : load<f32>(gr + o) * load<f32>(yr + o);
    }
    const ss = f32x4.splat(s);
    for (let i = 0; i < nv; i += 4) {
      const o = <usize>i << 2;
      const d = gradV(v128.load(yr + o), v128.load(gr + o), ss, log);
      v128.store(or + o, scaled ? f32x4.mul(d, sv) : d);
    }
    if (tail) {
      const o = <usize>nv << 2;
      const d = gradV(loadTail(yr + o, tail), loadTail(gr + o, tail), ss, log);
      storeTail(or + o, scaled ? f32x4.mul(d, sv) : d, tail);
    }
  }
}

// @ts-ignore: decorator
@inline function gradV(y: v128, g: v128, s: v128, log: bool): v128 {
  if (log) return f32x4.sub(g, f32x4.mul(expBoundedV(y), s));
  return f32x4.mul(y, f32x4.sub(g, s));
}

/** Mean and biased variance per row (two passes), then (x - mean) * rstd * gamma + beta. */
export function layerNorm(
  x: usize,
  gamma: usize,
  beta: usize,
  out: usize,
  mean: usize,
  rstd: usize,
  rows: i32,
  cols: i32,
  eps: f32,
): void {
  const rowBytes = <usize>cols << 2;
  const nv = cols & ~3;
  const tail = cols - nv;
  const invN: f32 = 1 / <f32>cols;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes;
    const or = out + <usize>r * rowBytes;
    let vs = f32x4.splat(0);
    for (let i = 0; i < nv; i += 4) vs = f32x4.add(vs, v128.load(xr + (<usize>i << 2)));
    let s = hsum(vs);
    for (let i = nv; i < cols; i++) s += load<f32>(xr + (<usize>i << 2));
    const mu = s * invN;
    const vmu = f32x4.splat(mu);
    let vq = f32x4.splat(0);
    for (let i = 0; i < nv; i += 4) {
      const d = f32x4.sub(v128.load(xr + (<usize>i << 2)), vmu);
      vq = f32x4.add(vq, f32x4.mul(d, d));
    }
    let q = hsum(vq);
    for (let i = nv; i < cols; i++) {
      const d = load<f32>(xr + (<usize>i << 2)) - mu;
      q += d * d;
    }
    const rs: f32 = 1 / Mathf.sqrt(q * invN + eps);
    store<f32>(mean + (<usize>r << 2), mu);
    store<f32>(rstd + (<usize>r << 2), rs);
    const vrs = f32x4.splat(rs);
    for (let i = 0; i < nv; i += 4) {
      const o = <usize>i << 2;
      const xh = f32x4.mul(f32x4.sub(v128.load(xr + o), vmu), vrs);
      v128.store(or + o, f32x4.add(f32x4.mul(xh, v128.load(gamma + o)), v128.load(beta + o)));
    }
    if (tail) {
      const o = <usize>nv << 2;
      const xh = f32x4.mul(f32x4.sub(loadTail(xr + o, tail), vmu), vrs);
      const y = f32x4.add(f32x4.mul(xh, loadTail(gamma + o, tail)), loadTail(beta + o, tail));
      storeTail(or + o, y, tail);
    }
  }
}

/**
 * dx = rstd * (dxh - mean(dxh) - xh * mean(dxh * xh)) with xh = (x - mean) * rstd and
 * dxh = g * gamma; dgamma += sum over rows of g * xh, dbeta += sum of g.
 */
export function layerNormGrad(
  x: usize,
  gamma: usize,
  mean: usize,
  rstd: usize,
  g: usize,
  dx: usize,
  dgamma: usize,
  dbeta: usize,
  rows: i32,
  cols: i32,
): void {
  const rowBytes = <usize>cols << 2;
  const nv = cols & ~3;
  const tail = cols - nv;
  const invN: f32 = 1 / <f32>cols;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes;
    const gr = g + <usize>r * rowBytes;
    const dr = dx + <usize>r * rowBytes;
    const vmu = v128.load32_splat(mean + (<usize>r << 2));
    const vrs = v128.load32_splat(rstd + (<usize>r << 2));
    let v1 = f32x4.splat(0);
    let v2 = f32x4.splat(0);
    for (let i = 0; i < nv; i += 4) {
      const o = <usize>i << 2;
      const xh = f32x4.mul(f32x4.sub(v128.load(xr + o), vmu), vrs);
      const gv = v128.load(gr + o);
      const dxh = f32x4.mul(gv, v128.load(gamma + o));
      v1 = f32x4.add(v1, dxh);
      v2 = f32x4.add(v2, f32x4.mul(dxh, xh));
      v128.store(dgamma + o, f32x4.add(v128.load(dgamma + o), f32x4.mul(gv, xh)));
      v128.store(dbeta + o, f32x4.add(v128.load(dbeta + o), gv));
    }
    let s1 = hsum(v1);
    let s2 = hsum(v2);
    const mu = f32x4.extract_lane(vmu, 0);
    const rs = f32x4.extract_lane(vrs, 0);
    for (let i = nv; i < cols; i++) {
      const o = <usize>i << 2;
      const xh = (load<f32>(xr + o) - mu) * rs;
      const gv = load<f32>(gr + o);
      const dxh = gv * load<f32>(gamma + o);
      s1 += dxh;
      s2 += dxh * xh;
      store<f32>(dgamma + o, load<f32>(dgamma + o) + gv * xh);
      store<f32>(dbeta + o, load<f32>(dbeta + o) + gv);
    }
    const m1 = f32x4.splat(s1 * invN);
    const m2 = f32x4.splat(s2 * invN);
    for (let i = 0; i < nv; i += 4) {
      const o = <usize>i << 2;
      const xh = f32x4.mul(f32x4.sub(v128.load(xr + o), vmu), vrs);
      const dxh = f32x4.mul(v128.load(gr + o), v128.load(gamma + o));
      const v = f32x4.mul(vrs, f32x4.sub(f32x4.sub(dxh, m1), f32x4.mul(xh, m2)));
      v128.store(dr + o, v);
    }
    if (tail) {
      const o = <usize>nv << 2;
      const xh = f32x4.mul(f32x4.sub(loadTail(xr + o, tail), vmu), vrs);
      const dxh = f32x4.mul(loadTail(gr + o, tail), loadTail(gamma + o, tail));
      const v = f32x4.mul(vrs, f32x4.sub(f32x4.sub(dxh, m1), f32x4.mul(xh, m2)));
      storeTail(dr + o, v, tail);
    }
  }
}

/**
 * One item block of a chunked cross-entropy (core/ops/linear_ce.ts): merges the log-sum-exp of
 * each row of x (the logits of columns colOffset..colOffset+cols) into lse, and picks the target's
 * logit into picked when it falls in the block (the first block writes 0 for the others).
 * With shift != 0 the exponentials are kept: x becomes e^(x - m) in place and shift[r] = m, the
 * row's maximum, so that the gradient needs no second exponential per logit.
 */
export function crossEntropyBlock(
  x: usize,
  targets: usize,
  lse: usize,
  picked: usize,
  rows: i32,
  cols: i32,
  colOffset: i32,
  first: bool,
  shift: usize,
): void {
  const rowBytes = <usize>cols << 2;
  const nv = cols & ~3;
  const tail = cols - nv;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes;
    // The target's logit first: a kept row is overwritten below.
    const t = load<i32>(targets + (<usize>r << 2)) - colOffset;
    const pp = picked + (<usize>r << 2);
    if (<u32>t < <u32>cols) store<f32>(pp, load<f32>(xr + (<usize>t << 2)));
    else if (first) store<f32>(pp, 0);
    let vm = f32x4.splat(-Infinity);
    for (let i = 0; i < nv; i += 4) vm = f32x4.pmax(vm, v128.load(xr + (<usize>i << 2)));
    let m = hmax(vm);
    for (let i = nv; i < cols; i++) m = max(m, load<f32>(xr + (<usize>i << 2)));
    const sm = f32x4.splat(m);
    let vs = f32x4.splat(0);
    if (shift) {
      for (let i = 0; i < nv; i += 4) {
        const e = expBoundedV(f32x4.sub(v128.load(xr + (<usize>i << 2)), sm));
        v128.store(xr + (<usize>i << 2), e);
        vs = f32x4.add(vs, e);
      }
      store<f32>(shift + (<usize>r << 2), m);
    } else {
      for (let i = 0; i < nv; i += 4) {
        vs = f32x4.add(vs, expBoundedV(f32x4.sub(v128.load(xr + (<usize>i << 2)), sm)));
      }
    }
    let s = hsum(vs);
    if (tail) {
      const e = expBoundedV(f32x4.sub(loadTail(xr + (<usize>nv << 2), tail), sm));
      if (shift) storeTail(xr + (<usize>nv << 2), e, tail);
      s += f32x4.extract_lane(e, 0);
      if (tail > 1) s += f32x4.extract_lane(e, 1);
      if (tail > 2) s += f32x4.extract_lane(e, 2);
    }
    const block = m + f32x4.extract_lane(logV(f32x4.splat(s)), 0);
    const lp = lse + (<usize>r << 2);
    if (first) store<f32>(lp, block);
    else {
      const prev = load<f32>(lp);
      const hi = max(prev, block);
      const lo = min(prev, block);
      const e = f32x4.extract_lane(expBoundedV(f32x4.splat(lo - hi)), 0);
      store<f32>(lp, hi + f32x4.extract_lane(log1pV(f32x4.splat(e)), 0));
    }
  }
}

/**
 * A block's logits turned in place into their gradient: x = w[r] * (e^(x - lse[r]) - onehot),
 * the one at column targets[r] - colOffset when it falls in the block. With shift != 0, x holds
 * crossEntropyBlock's kept e^(x - shift[r]), and one exponential per row rescales it:
 * x = w[r] * e^(shift[r] - lse[r]) * x - w[r] * onehot.
 */
export function crossEntropyBlockGrad(
  x: usize,
  targets: usize,
  lse: usize,
  w: usize,
  rows: i32,
  cols: i32,
  colOffset: i32,
  shift: usize,
): void {
  const rowBytes = <usize>cols << 2;
  const nv = cols & ~3;
  const tail = cols - nv;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes;
    const vl = v128.load32_splat(lse + (<usize>r << 2));
    const vw = v128.load32_splat(w + (<usize>r << 2));
    if (shift) {
      const vs = v128.load32_splat(shift + (<usize>r << 2));
      const c = f32x4.mul(vw, expBoundedV(f32x4.sub(vs, vl)));
      for (let i = 0; i < nv; i += 4) {
        const o = <usize>i << 2;
        v128.store(xr + o, f32x4.mul(c, v128.load(xr + o)));
      }
      if (tail) {
        const o = <usize>nv << 2;
        storeTail(xr + o, f32x4.mul(c, loadTail(xr + o, tail)), tail);
      }
    } else {
      for (let i = 0; i < nv; i += 4) {
        const o = <usize>i << 2;
        v128.store(xr + o, f32x4.mul(vw, expBoundedV(f32x4.sub(v128.load(xr + o), vl))));
      }
      if (tail) {
        const o = <usize>nv << 2;
        storeTail(xr + o, f32x4.mul(vw, expBoundedV(f32x4.sub(loadTail(xr + o, tail), vl))), tail);
      }
    }
    const t = load<i32>(targets + (<usize>r << 2)) - colOffset;
    if (<u32>t < <u32>cols) {
      const p = xr + (<usize>t << 2);
      store<f32>(p, load<f32>(p) - f32x4.extract_lane(vw, 0));
    }
  }
}
