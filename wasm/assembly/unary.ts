// Elementwise unary functions and their gradients (op codes shared with the TS side).

import {
  expV,
  logV,
  normalCdfV,
  normalPdfV,
  sigmoidV,
  softplusV,
  tanhV,
} from "./math";
import { loadTail, storeTail } from "./simd";

export const OP_NEG = 0;
export const OP_EXP = 1;
export const OP_LOG = 2;
export const OP_SQRT = 3;
export const OP_TANH = 4;
export const OP_SIGMOID = 5;
export const OP_GELU = 6;
export const OP_RELU = 7;
export const OP_LEAKY_RELU = 8;
export const OP_SOFTPLUS = 9;
export const OP_SIN = 10;
export const OP_COS = 11;
export const OP_ABS = 12;
export const OP_SQUARE = 13;
export const OP_SCALE = 14;
export const OP_ADD_SCALAR = 15;
export const OP_POW_SCALAR = 16;

// @ts-ignore: decorator
@inline function sp(x: f32): v128 {
  return f32x4.splat(x);
}

/** Scalar fallback, lane by lane, for ops without a vector form (sin, cos, pow). */
function perLane(op: i32, v: v128, alpha: f32): v128 {
  let r = v;
  for (let l: u8 = 0; l < 4; l++) {
    const x = f32x4.extract_lane(v, 0);
    let y: f32;
    if (op == OP_SIN) y = Mathf.sin(x);
    else if (op == OP_COS) y = Mathf.cos(x);
    else y = Mathf.pow(x, alpha);
    r = f32x4.replace_lane(r, 0, y);
    // rotate so the next lane sits in lane 0; after four turns the order is restored
    v = v128.shuffle<f32>(v, v, 1, 2, 3, 0);
    r = v128.shuffle<f32>(r, r, 1, 2, 3, 0);
  }
  return r;
}

// @ts-ignore: decorator
@inline function forward(op: i32, x: v128, alpha: f32): v128 {
  switch (op) {
    case OP_NEG:
      return f32x4.neg(x);
    case OP_EXP:
      return expV(x);
    case OP_LOG:
      return logV(x);
    case OP_SQRT:
      return f32x4.sqrt(x);
    case OP_TANH:
      return tanhV(x);
    case OP_SIGMOID:
      return sigmoidV(x);
    case OP_GELU:
      return f32x4.mul(x, normalCdfV(x));
    case OP_RELU:
      return f32x4.pmax(x, sp(0));
    case OP_LEAKY_RELU:
      return v128.bitselect(x, f32x4.mul(x, sp(alpha)), f32x4.gt(x, sp(0)));
    case OP_SOFTPLUS:
      return softplusV(x);
    case OP_ABS:
      return f32x4.abs(x);
    case OP_SQUARE:
      return f32x4.mul(x, x);
    case OP_SCALE:
      return f32x4.mul(x, sp(alpha));
    case OP_ADD_SCALAR:
      return f32x4.add(x, sp(alpha));
    default:
      return perLane(op, x, alpha);
  }
}

// @ts-ignore: decorator
@inline function backward(op: i32, x: v128, y: v128, g: v128, alpha: f32): v128 {
  switch (op) {
    case OP_NEG:
      return f32x4.neg(g);
    case OP_EXP:
      return f32x4.mul(g, y);
    case OP_LOG:
      return f32x4.div(g, x);
    case OP_SQRT:
      return f32x4.div(g, f32x4.add(y, y));
    case OP_TANH: // (1 - y)(1 + y): no cancellation when |y| is close to 1
      return f32x4.mul(g, f32x4.mul(f32x4.sub(sp(1), y), f32x4.add(sp(1), y)));
    case OP_SIGMOID:
      return f32x4.mul(g, f32x4.mul(y, f32x4.sub(sp(1), y)));
    case OP_GELU: {
      // Phi(x) = y / x from the forward's y = x Phi(x) (within an ulp of recomputing it, at a
      // fraction of the cost); Phi(0) = 1/2.
      const phi = v128.bitselect(sp(0.5), f32x4.div(y, x), f32x4.eq(x, sp(0)));
      return f32x4.mul(g, f32x4.add(phi, f32x4.mul(x, normalPdfV(x))));
    }
    case OP_RELU:
      return v128.and(g, f32x4.gt(x, sp(0)));
    case OP_LEAKY_RELU:
      return v128.bitselect(g, f32x4.mul(g, sp(alpha)), f32x4.gt(x, sp(0)));
    case OP_SOFTPLUS:
      return v128.bitselect(g, f32x4.mul(g, sigmoidV(x)), f32x4.gt(x, sp(20)));
    case OP_SIN:
      return f32x4.mul(g, perLane(OP_COS, x, 0));
    case OP_COS:
      return f32x4.neg(f32x4.mul(g, perLane(OP_SIN, x, 0)));
    case OP_ABS: {
      // sign(x) * g, and 0 at x == 0
      const pos = v128.and(g, f32x4.gt(x, sp(0)));
      const neg = v128.and(f32x4.neg(g), f32x4.lt(x, sp(0)));
      return v128.or(pos, neg);
    }
    case OP_SQUARE:
      return f32x4.mul(g, f32x4.add(x, x));
    case OP_SCALE:
      return f32x4.mul(g, sp(alpha));
    case OP_ADD_SCALAR:
      return g;
    default: // OP_POW_SCALAR: alpha * x^(alpha - 1)
      return f32x4.mul(g, f32x4.mul(sp(alpha), perLane(OP_POW_SCALAR, x, alpha - 1)));
  }
}

/** out[i] = f(x[i]) for i < n (byte pointers). */
export function unary(op: i32, x: usize, out: usize, n: i32, alpha: f32): void {
  // One loop per op keeps the switch out of the inner loop after inlining.
  switch (op) {
    case OP_NEG:
      unaryLoop(OP_NEG, x, out, n, alpha);
      break;
    case OP_EXP:
      unaryLoop(OP_EXP, x, out, n, alpha);
      break;
    case OP_LOG:
      unaryLoop(OP_LOG, x, out, n, alpha);
      break;
    case OP_SQRT:
      unaryLoop(OP_SQRT, x, out, n, alpha);
      break;
    case OP_TANH:
      unaryLoop(OP_TANH, x, out, n, alpha);
      break;
    case OP_SIGMOID:
      unaryLoop(OP_SIGMOID, x, out, n, alpha);
      break;
    case OP_GELU:
      unaryLoop(OP_GELU, x, out, n, alpha);
      break;
    case OP_RELU:
      unaryLoop(OP_RELU, x, out, n, alpha);
      break;
    case OP_LEAKY_RELU:
      unaryLoop(OP_LEAKY_RELU, x, out, n, alpha);
      break;
    case OP_SOFTPLUS:
      unaryLoop(OP_SOFTPLUS, x, out, n, alpha);
      break;
    case OP_ABS:
      unaryLoop(OP_ABS, x, out, n, alpha);
      break;
    case OP_SQUARE:
      unaryLoop(OP_SQUARE, x, out, n, alpha);
      break;
    case OP_SCALE:
      unaryLoop(OP_SCALE, x, out, n, alpha);
      break;
    case OP_ADD_SCALAR:
      unaryLoop(OP_ADD_SCALAR, x, out, n, alpha);
      break;
    default:
      unaryLoop(op, x, out, n, alpha);
  }
}

// @ts-ignore: decorator
@inline function unaryLoop(op: i32, x: usize, out: usize, n: i32, alpha: f32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, forward(op, v128.load(x + o), alpha));
  }
  if (i < n) {
    const o = <usize>i << 2;
    storeTail(out + o, forward(op, loadTail(x + o, n - i), alpha), n - i);
  }
}

/** out[i] = g[i] * f'(x[i]) for i < n; y = f(x) serves ops whose derivative is cheaper in y. */
export function unaryGrad(
  op: i32,
  x: usize,
  y: usize,
  g: usize,
  out: usize,
  n: i32,
  alpha: f32,
): void {
  switch (op) {
    case OP_NEG:
      gradLoop(OP_NEG, x, y, g, out, n, alpha);
      break;
    case OP_EXP:
      gradLoop(OP_EXP, x, y, g, out, n, alpha);
      break;
    case OP_LOG:
      gradLoop(OP_LOG, x, y, g, out, n, alpha);
      break;
    case OP_SQRT:
      gradLoop(OP_SQRT, x, y, g, out, n, alpha);
      break;
    case OP_TANH:
      gradLoop(OP_TANH, x, y, g, out, n, alpha);
      break;
    case OP_SIGMOID:
      gradLoop(OP_SIGMOID, x, y, g, out, n, alpha);
      break;
    case OP_GELU:
      gradLoop(OP_GELU, x, y, g, out, n, alpha);
      break;
    case OP_RELU:
      gradLoop(OP_RELU, x, y, g, out, n, alpha);
      break;
    case OP_LEAKY_RELU:
      gradLoop(OP_LEAKY_RELU, x, y, g, out, n, alpha);
      break;
    case OP_SOFTPLUS:
      gradLoop(OP_SOFTPLUS, x, y, g, out, n, alpha);
      break;
    case OP_ABS:
      gradLoop(OP_ABS, x, y, g, out, n, alpha);
      break;
    case OP_SQUARE:
      gradLoop(OP_SQUARE, x, y, g, out, n, alpha);
      break;
    case OP_SCALE:
      gradLoop(OP_SCALE, x, y, g, out, n, alpha);
      break;
    case OP_ADD_SCALAR:
      gradLoop(OP_ADD_SCALAR, x, y, g, out, n, alpha);
      break;
    default:
      gradLoop(op, x, y, g, out, n, alpha);
  }
}

// @ts-ignore: decorator
@inline function gradLoop(
  op: i32,
  x: usize,
  y: usize,
  g: usize,
  out: usize,
  n: i32,
  alpha: f32,
): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(
      out + o,
      backward(op, v128.load(x + o), v128.load(y + o), v128.load(g + o), alpha),
    );
  }
  if (i < n) {
    const o = <usize>i << 2;
    const r = n - i;
    const v = backward(op, loadTail(x + o, r), loadTail(y + o, r), loadTail(g + o, r), alpha);
    storeTail(out + o, v, r);
  }
}
