/**
 * Finite-difference gradient check on the float64 reference backend: analytic gradients from
 * the tape are compared with central differences of the same float64 computation.
 */
import assert from "node:assert/strict";
import { JsBackend } from "../../core/backends/js.ts";
import { backward, type Tensor, tensor, tidy, withBackend } from "../../core/tensor.ts";
import { Rng } from "../../core/random.ts";

export const f64 = new JsBackend({ float64: true });

function data64(t: Tensor): Float64Array {
  // The js backend keeps a typed array per storage; the check perturbs it in place.
  return (t.storage as unknown as { data: Float64Array }).data;
}

export interface GradCheckInput {
  shape: number[];
  /** Value generator for each element (default standard normal). */
  init?: (rng: Rng) => number;
  /** Exclude from checking (for example int32 indices passed through closure). */
  noGrad?: boolean;
}

/**
 * Builds inputs, runs `fn` (returning any tensor), reduces it to a scalar with fixed random
 * weights, and checks d(loss)/d(input) for every input element (up to `maxPerInput` of them).
 */
export function gradCheck(
  name: string,
  inputs: GradCheckInput[],
  fn: (xs: Tensor[]) => Tensor,
  opts: { seed?: number; eps?: number; tol?: number; maxPerInput?: number } = {},
): void {
  const rng = new Rng(opts.seed ?? 7);
  const eps = opts.eps ?? 1e-6;
  const tol = opts.tol ?? 1e-5;
  withBackend(f64, () => {
    const xs = inputs.map((spec) => {
      const size = spec.shape.reduce((p, d) => p * d, 1);
      const vals = Array.from({ length: size }, () => (spec.init ?? ((r) => r.normal()))(rng));
      const t = tensor(vals, spec.shape);
      // Re-fill in float64 so inputs are not rounded to float32.
      data64(t).set(vals);
      t.requiresGrad = !spec.noGrad;
      return t;
    });
    let weights: Float64Array | null = null;
    const lossOf = (): number =>
      tidy(() => {
        const y = fn(xs);
        const w = weights ??= Float64Array.from({ length: y.size }, () => rng.normal());
        const y64 = data64(y);
        let s = 0;
        for (let i = 0; i < y.size; i++) s += y64[i] * w[i];
        return s;
      });
    lossOf(); // fixes the weights
    tidy(() => {
      const y = fn(xs);
      const seed = tensor(new Float32Array(y.size), y.shape);
      data64(seed).set(weights!);
      backward(y, seed);
    });
    xs.forEach((x, xi) => {
      if (!x.requiresGrad) return;
      assert.ok(x.grad, `${name}: input ${xi} got no gradient`);
      const analytic = data64(x.grad!);
      const values = data64(x);
      const count = Math.min(x.size, opts.maxPerInput ?? 64);
      const stride = Math.max(1, Math.floor(x.size / count));
      for (let i = 0; i < x.size; i += stride) {
        const orig = values[i];
        values[i] = orig + eps;
        const up = lossOf();
        values[i] = orig - eps;
        const down = lossOf();
        values[i] = orig;
        const numeric = (up - down) / (2 * eps);
        const err = Math.abs(numeric - analytic[i]) / Math.max(1, Math.abs(numeric));
        assert.ok(
          err < tol,
          `${name}: d/d input${xi}[${i}] analytic ${
            analytic[i]
          } vs numeric ${numeric} (err ${err})`,
        );
      }
    });
  });
}
