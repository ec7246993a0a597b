// Broadcasting binary ops and sum reductions over strided views (rank <= 6). The TS side
// merges contiguous dimensions first, so most calls reach the vector inner loops below with
// rank 1 or 2.

import { loadTail, storeTail } from "./simd";

export const OP_ADD = 0;
export const OP_SUB = 1;
export const OP_MUL = 2;
export const OP_DIV = 3;

// @ts-ignore: decorator
@inline function applyV(op: i32, a: v128, b: v128): v128 {
  if (op == OP_ADD) return f32x4.add(a, b);
  if (op == OP_SUB) return f32x4.sub(a, b);
  if (op == OP_MUL) return f32x4.mul(a, b);
  return f32x4.div(a, b);
}

// @ts-ignore: decorator
@inline function apply(op: i32, a: f32, b: f32): f32 {
  if (op == OP_ADD) return a + b;
  if (op == OP_SUB) return a - b;
  if (op == OP_MUL) return a * b;
  return a / b;
}

/** One output row of n elements; sa, sb are element strides (0 = broadcast). */
// @ts-ignore: decorator
@inline function rowOp(op: i32, a: usize, sa: i32, b: usize, sb: i32, out: usize, n: i32): void {
  let i = 0;
  if (sa == 1 && sb == 1) {
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + o, applyV(op, v128.load(a + o), v128.load(b + o)));
    }
    if (i < n) {
      const o = <usize>i << 2;
      const r = n - i;
      storeTail(out + o, applyV(op, loadTail(a + o, r), loadTail(b + o, r)), r);
    }
  } else if (sa == 1 && sb == 0) {
    const vb = v128.load32_splat(b);
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + o, applyV(op, v128.load(a + o), vb));
    }
    if (i < n) {
      const o = <usize>i << 2;
      storeTail(out + o, applyV(op, loadTail(a + o, n - i), vb), n - i);
    }
  } else if (sa == 0 && sb == 1) {
    const va = v128.load32_splat(a);
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      v128.store(out + o, applyV(op, va, v128.load(b + o)));
    }
    if (i < n) {
      const o = <usize>i << 2;
      storeTail(out + o, applyV(op, va, loadTail(b + o, n - i)), n - i);
    }
  } else {
    const da = <usize>sa << 2;
    const db = <usize>sb << 2;
    for (; i < n; i++) {
      store<f32>(out + (<usize>i << 2), apply(op, load<f32>(a), load<f32>(b)));
      a += da;
      b += db;
    }
  }
}

function rowDispatch(op: i32, a: usize, sa: i32, b: usize, sb: i32, out: usize, n: i32): void {
  if (op == OP_ADD) rowOp(OP_ADD, a, sa, b, sb, out, n);
  else if (op == OP_SUB) rowOp(OP_SUB, a, sa, b, sb, out, n);
  else if (op == OP_MUL) rowOp(OP_MUL, a, sa, b, sb, out, n);
  else rowOp(OP_DIV, a, sa, b, sb, out, n);
}

/**
 * out = a (op) b over `shape` (rank dims at params as i32: shape, then a strides, then b
 * strides, each `rank` long); out is contiguous.
 */
export function binary(op: i32, a: usize, b: usize, out: usize, rank: i32, params: usize): void {
  const shape = params;
  const sA = params + (<usize>rank << 2);
  const sB = params + (<usize>rank << 3);
  const last = rank - 1;
  const n = load<i32>(shape + (<usize>last << 2));
  const ia = load<i32>(sA + (<usize>last << 2));
  const ib = load<i32>(sB + (<usize>last << 2));
  let rows = 1;
  for (let d = 0; d < last; d++) rows *= load<i32>(shape + (<usize>d << 2));
  // odometer over the outer dims
  const idx = params + (<usize>rank * 12);
  for (let d = 0; d < last; d++) store<i32>(idx + (<usize>d << 2), 0);
  let offA: usize = 0;
  let offB: usize = 0;
  const rowBytes = <usize>n << 2;
  for (let r = 0; r < rows; r++) {
    rowDispatch(op, a + (offA << 2), ia, b + (offB << 2), ib, out + <usize>r * rowBytes, n);
    for (let d = last - 1; d >= 0; d--) {
      const p = idx + (<usize>d << 2);
      const v = load<i32>(p) + 1;
      const da = <usize>load<i32>(sA + (<usize>d << 2));
      const db = <usize>load<i32>(sB + (<usize>d << 2));
      if (v < load<i32>(shape + (<usize>d << 2))) {
        store<i32>(p, v);
        offA += da;
        offB += db;
        break;
      }
      store<i32>(p, 0);
      offA -= da * <usize>(v - 1);
      offB -= db * <usize>(v - 1);
    }
  }
}

/**
 * out[sum idx_d * outStrides[d]] += x[idx] for x contiguous over `shape` (params: shape, then
 * out strides, rank each). out (outSize floats) is zeroed first unless accumulate.
 */
export function reduceSum(
  x: usize,
  out: usize,
  outSize: i32,
  accumulate: bool,
  rank: i32,
  params: usize,
): void {
  if (!accumulate) memory.fill(out, 0, <usize>outSize << 2);
  const shape = params;
  const sO = params + (<usize>rank << 2);
  const last = rank - 1;
  const n = load<i32>(shape + (<usize>last << 2));
  const io = load<i32>(sO + (<usize>last << 2));
  let rows = 1;
  for (let d = 0; d < last; d++) rows *= load<i32>(shape + (<usize>d << 2));
  const idx = params + (<usize>rank << 3);
  for (let d = 0; d < last; d++) store<i32>(idx + (<usize>d << 2), 0);
  let offO: usize = 0;
  const rowBytes = <usize>n << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes;
    const o = out + (offO << 2);
    if (io == 0) store<f32>(o, load<f32>(o) + <f32>rowSum(xr, n));
    else if (io == 1) addRow(xr, o, n);
    else {
      const step = <usize>io << 2;
      for (let j = 0; j < n; j++) {
        const p = o + <usize>j * step;
        store<f32>(p, load<f32>(p) + load<f32>(xr + (<usize>j << 2)));
      }
    }
    for (let d = last - 1; d >= 0; d--) {
      const p = idx + (<usize>d << 2);
      const v = load<i32>(p) + 1;
      const dO = <usize>load<i32>(sO + (<usize>d << 2));
      if (v < load<i32>(shape + (<usize>d << 2))) {
        store<i32>(p, v);
        offO += dO;
        break;
      }
      store<i32>(p, 0);
      offO -= dO * <usize>(v - 1);
    }
  }
}

/** Sum of n floats, accumulated in float64 (two f64x2 lanes) so long rows keep precision. */
export function rowSum(x: usize, n: i32): f64 {
  let s0 = f64x2.splat(0);
  let s1 = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    s0 = f64x2.add(s0, f64x2.promote_low_f32x4(v));
    s1 = f64x2.add(s1, f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1)));
  }
  const s = f64x2.add(s0, s1);
  let t = f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
  for (; i < n; i++) t += <f64>load<f32>(x + (<usize>i << 2));
  return t;
}

/** out[j] += x[j] for j < n. */
export function addRow(x: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(out + o), v128.load(x + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(out + o) + load<f32>(x + o));
  }
}
