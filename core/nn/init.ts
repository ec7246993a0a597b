/** Parameter initialisers. Values are drawn on the host from an explicit Rng, then uploaded. */
import type { Rng } from "../random.ts";
import { type Tensor, tensor } from "../tensor.ts";

export function normal(shape: number[], std: number, rng: Rng, mean = 0): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = mean + std * rng.normal();
  return tensor(v, shape);
}

/** Normal truncated to [-2std, 2std] by redrawing (torch.nn.init.trunc_normal_ with a=-2σ, b=2σ). */
export function truncatedNormal(shape: number[], std: number, rng: Rng): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let x: number;
    do x = rng.normal(); while (Math.abs(x) > 2);
    v[i] = std * x;
  }
  return tensor(v, shape);
}

/** Xavier/Glorot uniform for a [fanOut, fanIn] weight. */
export function xavierUniform(shape: [number, number], rng: Rng): Tensor {
  const [fanOut, fanIn] = shape;
  const a = Math.sqrt(6 / (fanIn + fanOut));
  const v = new Float32Array(fanOut * fanIn);
  for (let i = 0; i < v.length; i++) v[i] = (2 * rng.uniform() - 1) * a;
  return tensor(v, shape);
}

export function constant(shape: number[], value: number): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  return tensor(new Float32Array(n).fill(value), shape);
}

/** Uniform in [-bound, bound) (torch's default for nn.GRU weights and nn.Linear: 1/sqrt(fan_in)). */
export function uniform(shape: number[], bound: number, rng: Rng): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (2 * rng.uniform() - 1) * bound;
  return tensor(v, shape);
}

/** Xavier/Glorot normal for a [fanOut, fanIn] weight: N(0, 2 / (fanIn + fanOut)). */
export function xavierNormal(shape: [number, number], rng: Rng): Tensor {
  return normal(shape, Math.sqrt(2 / (shape[0] + shape[1])), rng);
}
