// Vectorised float32 transcendental functions (Cephes-style range reduction + minimax
// polynomials), accurate to a few ulp: about 1e-7 relative over the ranges training uses.

import { madd } from "./simd";

const LOG2E: f32 = 1.44269504088896341;
const LN2_HI: f32 = 0.693359375;
const LN2_LO: f32 = -2.12194440e-4;
const EXP_MAX: f32 = 88.7228391;
/** Below this exp(x) is subnormal; it is returned as 0 (absolute error < 1.2e-38). */
const EXP_MIN: f32 = -87.3365447;
const SQRT_HALF: f32 = 0.707106781186547524;
const FLT_MIN: f32 = 1.17549435e-38;

// @ts-ignore: decorator
@inline function sp(x: f32): v128 {
  return f32x4.splat(x);
}

/** Lanes of n (whole numbers within i32 range) as i32: one instruction in the relaxed build. */
// @ts-ignore: decorator
@inline function truncI(n: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.relaxed_trunc_f32x4_s(n);
  return i32x4.trunc_sat_f32x4_s(n);
}

/** e^(x - n ln 2) for n = round(x / ln 2): the polynomial both exponentials share. */
// @ts-ignore: decorator
@inline function expMantissa(xc: v128, n: v128): v128 {
  let r = f32x4.sub(xc, f32x4.mul(n, sp(LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, sp(LN2_LO)));
  let p = sp(1.9875691500e-4);
  p = madd(p, r, sp(1.3981999507e-3));
  p = madd(p, r, sp(8.3334519073e-3));
  p = madd(p, r, sp(4.1665795894e-2));
  p = madd(p, r, sp(1.6666665459e-1));
  p = madd(p, r, sp(5.0000001201e-1));
  p = madd(p, f32x4.mul(r, r), f32x4.add(r, sp(1)));
  return p;
}

/** e^x lane-wise. */
export function expV(x: v128): v128 {
  const big = f32x4.gt(x, sp(EXP_MAX));
  const tiny = f32x4.lt(x, sp(EXP_MIN));
  const xc = f32x4.pmin(f32x4.pmax(x, sp(EXP_MIN)), sp(EXP_MAX));
  const n = f32x4.nearest(f32x4.mul(xc, sp(LOG2E)));
  const p = expMantissa(xc, n);
  // 2^n by building the exponent field; n is in [-126, 128] after clamping, so split the
  // scale in two halves to stay finite for n = 128 (x just below EXP_MAX).
  const ni = truncI(n);
  const h = i32x4.shr_s(ni, 1);
  const s1 = i32x4.shl(i32x4.add(h, i32x4.splat(127)), 23);
  const s2 = i32x4.shl(i32x4.add(i32x4.sub(ni, h), i32x4.splat(127)), 23);
  let y = f32x4.mul(f32x4.mul(p, s1), s2);
  y = v128.bitselect(sp(Infinity), y, big);
  return v128.andnot(y, tiny);
}

/**
 * e^x for x < 88 (and NaN), with expV's bits: the softmax and cross-entropy rows (e^(x - max),
 * e^(x - lse)) and the normal CDF and density (arguments near or below 0) never come near
 * overflow, so its handling goes, and 2^n (n in [-126, 127] after the clamp) is a normal float
 * built in one step; p * 2^n rounds as p * 2^h * 2^(n - h) does, since only the last of those
 * products can be inexact. Lanes at 88 or above give undefined values.
 */
export function expBoundedV(x: v128): v128 {
  const tiny = f32x4.lt(x, sp(EXP_MIN));
  const xc = f32x4.pmax(x, sp(EXP_MIN));
  const n = f32x4.nearest(f32x4.mul(xc, sp(LOG2E)));
  const p = expMantissa(xc, n);
  const s = i32x4.shl(i32x4.add(truncI(n), i32x4.splat(127)), 23);
  return v128.andnot(f32x4.mul(p, s), tiny);
}

/** Natural log lane-wise: -inf at 0, NaN below 0, inf at inf. */
export function logV(x: v128): v128 {
  // Subnormals: scale into the normal range first.
  const sub = f32x4.lt(x, sp(FLT_MIN));
  const xs = v128.bitselect(f32x4.mul(x, sp(33554432)), x, sub); // 2^25
  const bits = xs;
  let e = i32x4.sub(i32x4.shr_u(bits, 23), i32x4.splat(126));
  e = i32x4.sub(e, v128.and(sub, i32x4.splat(25)));
  // mantissa in [0.5, 1)
  let m = v128.or(v128.and(bits, i32x4.splat(0x007fffff)), i32x4.splat(0x3f000000));
  const lowM = f32x4.lt(m, sp(SQRT_HALF));
  // if m < sqrt(1/2): e -= 1, m = 2m - 1 else m = m - 1
  e = i32x4.add(e, lowM); // true lanes are -1
  m = f32x4.sub(f32x4.add(m, v128.and(m, lowM)), sp(1));
  const fe = f32x4.convert_i32x4_s(e);
  const z = f32x4.mul(m, m);
  let p = sp(7.0376836292e-2);
  p = madd(p, m, sp(-1.1514610310e-1));
  p = madd(p, m, sp(1.1676998740e-1));
  p = madd(p, m, sp(-1.2420140846e-1));
  p = madd(p, m, sp(1.4249322787e-1));
  p = madd(p, m, sp(-1.6668057665e-1));
  p = madd(p, m, sp(2.0000714765e-1));
  p = madd(p, m, sp(-2.4999993993e-1));
  p = madd(p, m, sp(3.3333331174e-1));
  let y = f32x4.mul(f32x4.mul(p, m), z);
  y = madd(fe, sp(LN2_LO), y);
  y = madd(z, sp(-0.5), y);
  let r = f32x4.add(f32x4.add(m, y), f32x4.mul(fe, sp(LN2_HI)));
  // special values
  r = v128.bitselect(sp(-Infinity), r, f32x4.eq(x, sp(0)));
  r = v128.bitselect(sp(NaN), r, f32x4.lt(x, sp(0)));
  r = v128.bitselect(x, r, f32x4.eq(x, sp(Infinity)));
  return v128.bitselect(x, r, f32x4.ne(x, x));
}

/** tanh lane-wise: odd polynomial near 0, 1 - 2/(e^{2|x|}+1) elsewhere. */
export function tanhV(x: v128): v128 {
  const ax = f32x4.abs(x);
  const z = f32x4.mul(x, x);
  let p = sp(-5.70498872745e-3);
  p = madd(p, z, sp(2.06390887954e-2));
  p = madd(p, z, sp(-5.37397155531e-2));
  p = madd(p, z, sp(1.33314422036e-1));
  p = madd(p, z, sp(-3.33332819422e-1));
  const small = madd(f32x4.mul(p, z), x, x);
  const e = expV(f32x4.add(ax, ax));
  let large = f32x4.sub(sp(1), f32x4.div(sp(2), f32x4.add(e, sp(1))));
  large = v128.or(large, v128.and(x, i32x4.splat(0x80000000))); // copy the sign of x
  return v128.bitselect(small, large, f32x4.lt(ax, sp(0.625)));
}

/** Logistic sigmoid 1 / (1 + e^-x). */
export function sigmoidV(x: v128): v128 {
  return f32x4.div(sp(1), f32x4.add(sp(1), expV(f32x4.neg(x))));
}

/** log(1 + u) for u >= 0, accurate for small u (Goldberg: log(w) * u / (w - 1), w = 1 + u). */
export function log1pV(u: v128): v128 {
  const w = f32x4.add(u, sp(1));
  const d = f32x4.sub(w, sp(1));
  const r = f32x4.div(f32x4.mul(logV(w), u), d);
  return v128.bitselect(u, r, f32x4.eq(d, sp(0)));
}

/** softplus log(1 + e^x) = max(x, 0) + log1p(e^-|x|), returning x above 20 as torch does. */
export function softplusV(x: v128): v128 {
  const r = f32x4.add(f32x4.max(x, sp(0)), log1pV(expV(f32x4.neg(f32x4.abs(x)))));
  return v128.bitselect(x, r, f32x4.gt(x, sp(20)));
}

/**
 * Standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2, with erfc from Numerical Recipes' erfcc
 * (fractional error < 1.2e-7 everywhere), so the left tail keeps its relative accuracy.
 */
export function normalCdfV(x: v128): v128 {
  const z = f32x4.mul(f32x4.abs(x), sp(0.707106781186547524));
  const t = f32x4.div(sp(1), madd(z, sp(0.5), sp(1)));
  let p = sp(0.17087277);
  p = madd(p, t, sp(-0.82215223));
  p = madd(p, t, sp(1.48851587));
  p = madd(p, t, sp(-1.13520398));
  p = madd(p, t, sp(0.27886807));
  p = madd(p, t, sp(-0.18628806));
  p = madd(p, t, sp(0.09678418));
  p = madd(p, t, sp(0.37409196));
  p = madd(p, t, sp(1.00002368));
  p = madd(p, t, sp(-1.26551223));
  // z^2 as x*x/2 (one rounding) rather than z*z (two): exp amplifies the argument's error.
  const z2 = f32x4.mul(f32x4.mul(x, x), sp(0.5));
  const half = f32x4.mul(f32x4.mul(t, expBoundedV(f32x4.sub(p, z2))), sp(0.5));
  return v128.bitselect(f32x4.sub(sp(1), half), half, f32x4.ge(x, sp(0)));
}

/** Standard normal density exp(-x^2 / 2) / sqrt(2 pi). */
export function normalPdfV(x: v128): v128 {
  return f32x4.mul(expBoundedV(f32x4.mul(f32x4.mul(x, x), sp(-0.5))), sp(0.398942280401432678));
}
