/** Differentiable reductions. */
import { empty, record, type Tensor } from "../tensor.ts";
import { contiguousStrides } from "./broadcast.ts";
import { broadcastTo, scale } from "./elementwise.ts";

function normaliseAxes(rank: number, axes?: number | readonly number[]): number[] {
  if (axes === undefined) return [...Array(rank).keys()];
  const list = typeof axes === "number" ? [axes] : [...axes];
  return list.map((a) => (a < 0 ? rank + a : a));
}

/** Sum over `axes` (all when omitted). */
export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normaliseAxes(x.rank, axes);
  const keptShape = x.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  const strides = contiguousStrides(keptShape).map((s, i) => (ax.includes(i) ? 0 : s));
  const outShape = keepDims ? keptShape : x.shape.filter((_, i) => !ax.includes(i));
  const out = empty(outShape);
  x.backend.reduceSum(x.storage, x.shape, out.storage, strides, out.size, false);
  return record(out, "sum", [x], (g) => [broadcastTo(g.view(keptShape), x.shape)]);
}

export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normaliseAxes(x.rank, axes);
  const count = ax.reduce((p, a) => p * x.shape[a], 1);
  return scale(sum(x, ax, keepDims), 1 / count);
}
