/** Differentiable shape ops: reshape, transpose, slice, concat. */
import { empty, record, type Tensor, zeros } from "../tensor.ts";

export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const known = shape.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
  const resolved = shape.map((d) => (d === -1 ? x.size / known : d));
  const out = x.view(resolved);
  return record(out, "reshape", [x], (g) => [g.view(x.shape)]);
}

/** General axis permutation (a materialised copy). */
export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.length !== x.rank) throw new Error(`transpose: perm [${perm}] for rank ${x.rank}`);
  const out = empty(perm.map((p) => x.shape[p]));
  x.backend.permute(x.storage, x.shape, perm, out.storage);
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, i) => (inverse[p] = i));
  return record(out, "transpose", [x], (g) => {
    const dx = empty(x.shape);
    g.backend.permute(g.storage, g.shape, inverse, dx.storage);
    return [dx];
  });
}

function axisGeometry(shape: readonly number[], axis: number) {
  const a = axis < 0 ? shape.length + axis : axis;
  const outer = shape.slice(0, a).reduce((p, d) => p * d, 1);
  const inner = shape.slice(a + 1).reduce((p, d) => p * d, 1);
  return { a, outer, inner, len: shape[a] };
}

/** x[..., start:start+length, ...] along `axis`. */
export function slice(x: Tensor, axis: number, start: number, length: number): Tensor {
  const { a, outer, inner, len } = axisGeometry(x.shape, axis);
  if (start < 0 || start + length > len) {
    throw new Error(`slice: [${start}, ${start + length}) of ${len}`);
  }
  const shape = [...x.shape];
  shape[a] = length;
  const out = empty(shape);
  const b = x.backend;
  b.copy2d(
    x.storage,
    start * inner,
    len * inner,
    out.storage,
    0,
    length * inner,
    outer,
    length * inner,
    false,
  );
  return record(out, "slice", [x], (g) => {
    const dx = zeros(x.shape);
    b.copy2d(
      g.storage,
      0,
      length * inner,
      dx.storage,
      start * inner,
      len * inner,
      outer,
      length * inner,
      true,
    );
    return [dx];
  });
}

/** Concatenation along `axis`. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const first = xs[0];
  const { a, outer, inner } = axisGeometry(first.shape, axis);
  const total = xs.reduce((s, t) => s + t.shape[a], 0);
  const shape = [...first.shape];
  shape[a] = total;
  const out = empty(shape);
  const b = first.backend;
  let at = 0;
  const starts: number[] = [];
  for (const t of xs) {
    const l = t.shape[a];
    starts.push(at);
    b.copy2d(
      t.storage,
      0,
      l * inner,
      out.storage,
      at * inner,
      total * inner,
      outer,
      l * inner,
      false,
    );
    at += l;
  }
  return record(out, "concat", xs, (g) =>
    xs.map((t, i) => {
      if (!t.requiresGrad) return null;
      const l = t.shape[a];
      const dx = empty(t.shape);
      b.copy2d(
        g.storage,
        starts[i] * inner,
        total * inner,
        dx.storage,
        0,
        l * inner,
        outer,
        l * inner,
        false,
      );
      return dx;
    }));
}
