/** Differentiable elementwise ops: broadcasting binary arithmetic and unary functions. */
import type { BinaryOp, UnaryOp } from "../backend.ts";
import { empty, full, record, sameShape, type Tensor } from "../tensor.ts";
import { broadcastShapes, broadcastStrides, sumToShape } from "./broadcast.ts";

function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShapes(a.shape, b.shape);
  const out = empty(shape);
  a.backend.binary(
    op,
    a.storage,
    broadcastStrides(a.shape, shape),
    b.storage,
    broadcastStrides(b.shape, shape),
    out.storage,
    shape,
  );
  return out;
}

function unaryRaw(op: UnaryOp, x: Tensor, alpha = 0): Tensor {
  const out = empty(x.shape);
  x.backend.unary(op, x.storage, out.storage, x.size, alpha);
  return out;
}

export function add(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === "number") return addScalar(a, b);
  const out = binaryRaw("add", a, b);
  return record(out, "add", [a, b], (g) => [sumToShape(g, a.shape), sumToShape(g, b.shape)]);
}

export function sub(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === "number") return addScalar(a, -b);
  const out = binaryRaw("sub", a, b);
  return record(out, "sub", [a, b], (g) => [
    sumToShape(g, a.shape),
    b.requiresGrad ? sumToShape(unaryRaw("neg", g), b.shape) : null,
  ]);
}

export function mul(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === "number") return scale(a, b);
  const out = binaryRaw("mul", a, b);
  return record(out, "mul", [a, b], (g) => [
    a.requiresGrad ? sumToShape(binaryRaw("mul", g, b), a.shape) : null,
    b.requiresGrad ? sumToShape(binaryRaw("mul", g, a), b.shape) : null,
  ]);
}

export function div(a: Tensor, b: Tensor | number): Tensor {
  if (typeof b === "number") return scale(a, 1 / b);
  const out = binaryRaw("div", a, b);
  return record(out, "div", [a, b], (g) => [
    a.requiresGrad ? sumToShape(binaryRaw("div", g, b), a.shape) : null,
    // d(a/b)/db = -a/b^2 = -out/b
    b.requiresGrad
      ? sumToShape(unaryRaw("neg", binaryRaw("div", binaryRaw("mul", g, out), b)), b.shape)
      : null,
  ]);
}

/** A unary op whose gradient is the backend's unaryGrad kernel. */
function unary(op: UnaryOp, x: Tensor, alpha = 0): Tensor {
  const out = unaryRaw(op, x, alpha);
  return record(out, op, [x], (g) => {
    const dx = empty(x.shape);
    x.backend.unaryGrad(op, x.storage, out.storage, g.storage, dx.storage, x.size, alpha);
    return [dx];
  });
}

export const neg = (x: Tensor): Tensor => unary("neg", x);
export const exp = (x: Tensor): Tensor => unary("exp", x);
export const log = (x: Tensor): Tensor => unary("log", x);
export const sqrt = (x: Tensor): Tensor => unary("sqrt", x);
export const tanh = (x: Tensor): Tensor => unary("tanh", x);
export const sigmoid = (x: Tensor): Tensor => unary("sigmoid", x);
export const gelu = (x: Tensor): Tensor => unary("gelu", x);
export const relu = (x: Tensor): Tensor => unary("relu", x);
export const leakyRelu = (x: Tensor, slope = 0.01): Tensor => unary("leaky_relu", x, slope);
export const softplus = (x: Tensor): Tensor => unary("softplus", x);
export const sin = (x: Tensor): Tensor => unary("sin", x);
export const cos = (x: Tensor): Tensor => unary("cos", x);
export const abs = (x: Tensor): Tensor => unary("abs", x);
export const square = (x: Tensor): Tensor => unary("square", x);
export const scale = (x: Tensor, alpha: number): Tensor => unary("scale", x, alpha);
export const addScalar = (x: Tensor, alpha: number): Tensor => unary("add_scalar", x, alpha);
export const pow = (x: Tensor, alpha: number): Tensor => unary("pow_scalar", x, alpha);

/** x broadcast to `shape` (a materialised copy; its gradient sums back). */
export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  const zero = full([1], 0);
  const out = empty(shape);
  x.backend.binary(
    "add",
    x.storage,
    broadcastStrides(x.shape, shape),
    zero.storage,
    shape.map(() => 0),
    out.storage,
    shape,
  );
  return record(out, "broadcast_to", [x], (g) => [sumToShape(g, x.shape)]);
}
