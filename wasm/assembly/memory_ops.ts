// Fills, strided copies, axpy, sum of squares and general transposes.

import { addRow } from "./binary";

/** Writes the 32-bit pattern `bits` to n consecutive slots (f32 or i32 storage alike). */
export function fill32(p: usize, bits: i32, n: i32): void {
  const v = i32x4.splat(bits);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(p + (<usize>i << 2), v);
  for (; i < n; i++) store<i32>(p + (<usize>i << 2), bits);
}

/** Rows up to this many floats are copied element by element. */
const SHORT_ROW = 8;

/** dst[r * dstStride + c] (+)= src[r * srcStride + c] for r < rows, c < cols (elements). */
export function copy2d(
  src: usize,
  srcStride: i32,
  dst: usize,
  dstStride: i32,
  rows: i32,
  cols: i32,
  accumulate: bool,
): void {
  const rowBytes = <usize>cols << 2;
  if (!accumulate && srcStride == cols && dstStride == cols) {
    memory.copy(dst, src, <usize>rows * rowBytes);
    return;
  }
  const ss = <usize>srcStride << 2;
  const ds = <usize>dstStride << 2;
  if (cols <= SHORT_ROW) {
    // Rows of a few floats (a concat or slice along an inner axis of size 1-8, e.g. interleaving
    // two [..., 1] tensors): a memory.copy or addRow call per row costs several times the copy.
    for (let r = 0; r < rows; r++) {
      for (let c: usize = 0; c < rowBytes; c += 4) {
        const v = load<f32>(src + c);
        store<f32>(dst + c, accumulate ? load<f32>(dst + c) + v : v);
      }
      src += ss;
      dst += ds;
    }
    return;
  }
  for (let r = 0; r < rows; r++) {
    if (accumulate) addRow(src, dst, cols);
    else memory.copy(dst, src, rowBytes);
    src += ss;
    dst += ds;
  }
}

/** out[i] += alpha * x[i] for i < n. */
export function axpy(x: usize, out: usize, n: i32, alpha: f32): void {
  const va = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(out + o), f32x4.mul(va, v128.load(x + o))));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(out + o) + alpha * load<f32>(x + o));
  }
}

/** Sum of x[i]^2 for i < n, accumulated in float64. */
export function sumSquares(x: usize, n: i32): f64 {
  let s0 = f64x2.splat(0);
  let s1 = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    const lo = f64x2.promote_low_f32x4(v);
    const hi = f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1));
    s0 = f64x2.add(s0, f64x2.mul(lo, lo));
    s1 = f64x2.add(s1, f64x2.mul(hi, hi));
  }
  const s = f64x2.add(s0, s1);
  let t = f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
  for (; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    t += v * v;
  }
  return t;
}

const TILE = 16;

/**
 * out (contiguous over outShape) [j] = x[sum j_d * xStrides[d]]. params: outShape then the
 * strides in x of each out dim (rank >= 2 each; the TS side pads lower ranks with 1-sized dims),
 * then rank i32 of odometer space. The last two dims are copied in 16x16 tiles so a transpose
 * reads and writes whole cache lines.
 */
export function permute(x: usize, out: usize, rank: i32, params: usize): void {
  const shape = params;
  const sX = params + (<usize>rank << 2);
  const idx = params + (<usize>rank << 3);
  const rowsD = rank - 2;
  const nR = load<i32>(shape + (<usize>rowsD << 2));
  const nC = load<i32>(shape + (<usize>(rowsD + 1) << 2));
  const sR = <usize>load<i32>(sX + (<usize>rowsD << 2)) << 2;
  const sC = <usize>load<i32>(sX + (<usize>(rowsD + 1) << 2)) << 2;
  let outer = 1;
  for (let d = 0; d < rowsD; d++) {
    outer *= load<i32>(shape + (<usize>d << 2));
    store<i32>(idx + (<usize>d << 2), 0);
  }
  let offX: usize = 0;
  const planeBytes = <usize>nR * nC << 2;
  for (let o = 0; o < outer; o++) {
    const src = x + (offX << 2);
    const dst = out + <usize>o * planeBytes;
    if (sC == 4) {
      for (let r = 0; r < nR; r++) {
        memory.copy(dst + (<usize>r * nC << 2), src + <usize>r * sR, <usize>nC << 2);
      }
    } else {
      for (let r0 = 0; r0 < nR; r0 += TILE) {
        const r1 = min(nR, r0 + TILE);
        for (let c0 = 0; c0 < nC; c0 += TILE) {
          const c1 = min(nC, c0 + TILE);
          for (let r = r0; r < r1; r++) {
            const s = src + <usize>r * sR;
            const d = dst + (<usize>r * nC << 2);
            for (let c = c0; c < c1; c++) {
              store<f32>(d + (<usize>c << 2), load<f32>(s + <usize>c * sC));
            }
          }
        }
      }
    }
    for (let d = rowsD - 1; d >= 0; d--) {
      const p = idx + (<usize>d << 2);
      const v = load<i32>(p) + 1;
      const dx = <usize>load<i32>(sX + (<usize>d << 2));
      if (v < load<i32>(shape + (<usize>d << 2))) {
        store<i32>(p, v);
        offX += dx;
        break;
      }
      store<i32>(p, 0);
      offX -= dx * <usize>(v - 1);
    }
  }
}
