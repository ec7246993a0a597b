/** Shape arithmetic for broadcasting (numpy rules) shared by the elementwise and reduce ops. */
import { empty, sameShape, type Tensor } from "../tensor.ts";

export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`cannot broadcast [${a}] with [${b}]`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides of a contiguous tensor of `shape` laid over `outShape` (0 on broadcast dims). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const own = contiguousStrides(shape);
  const offset = outShape.length - shape.length;
  return outShape.map((d, i) => {
    const j = i - offset;
    if (j < 0) return 0;
    return shape[j] === 1 && d !== 1 ? 0 : own[j];
  });
}

/** Sums g (shaped like a broadcast result) down to `shape`: the gradient of broadcasting. */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const outStrides = broadcastStrides(shape, g.shape);
  const out = empty(shape);
  g.backend.reduceSum(g.storage, g.shape, out.storage, outStrides, out.size, false);
  return out;
}
