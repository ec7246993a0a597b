/**
 * Scalar definitions of every UnaryOp and its derivative, in float64. The js backend is built on
 * these; they are the written-down meaning of each op that the other backends must match.
 */
import type { UnaryOp } from "../backend.ts";

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** erf to ~1e-14: Taylor series near 0, continued fraction for erfc in the tails. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = x;
    let sum = x;
    const x2 = x * x;
    for (let n = 1; n < 80; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (ax > 6) return Math.sign(x);
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), evaluated bottom-up.
  let f = ax;
  for (let k = 60; k >= 1; k--) f = ax + (k / 2) / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

function softplus(x: number): number {
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** y = f(x). */
export function unaryForward(op: UnaryOp, x: number, alpha: number): number {
  switch (op) {
    case "neg":
      return -x;
    case "exp":
      return Math.exp(x);
    case "log":
      return Math.log(x);
    case "sqrt":
      return Math.sqrt(x);
    case "tanh":
      return Math.tanh(x);
    case "sigmoid":
      return sigmoid(x);
    case "gelu":
      return 0.5 * x * (1 + erf(x * SQRT1_2));
    case "relu":
      return x > 0 ? x : 0;
    case "leaky_relu":
      return x > 0 ? x : alpha * x;
    case "softplus":
      return softplus(x);
    case "sin":
      return Math.sin(x);
    case "cos":
      return Math.cos(x);
    case "abs":
      return Math.abs(x);
    case "square":
      return x * x;
    case "scale":
      return alpha * x;
    case "add_scalar":
      return x + alpha;
    case "pow_scalar":
      return Math.pow(x, alpha);
  }
}

/** dy/dx at x, given y = f(x). */
export function unaryDerivative(op: UnaryOp, x: number, y: number, alpha: number): number {
  switch (op) {
    case "neg":
      return -1;
    case "exp":
      return y;
    case "log":
      return 1 / x;
    case "sqrt":
      return 0.5 / y;
    case "tanh":
      return 1 - y * y;
    case "sigmoid":
      return y * (1 - y);
    case "gelu":
      return 0.5 * (1 + erf(x * SQRT1_2)) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
    case "relu":
      return x > 0 ? 1 : 0;
    case "leaky_relu":
      return x > 0 ? 1 : alpha;
    case "softplus":
      return sigmoid(x);
    case "sin":
      return Math.cos(x);
    case "cos":
      return -Math.sin(x);
    case "abs":
      return x > 0 ? 1 : x < 0 ? -1 : 0;
    case "square":
      return 2 * x;
    case "scale":
      return alpha;
    case "add_scalar":
      return 1;
    case "pow_scalar":
      return alpha * Math.pow(x, alpha - 1);
  }
}
