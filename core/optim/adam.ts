/**
 * Adam and AdamW with torch semantics (bias-corrected moments; Adam adds weight decay to the
 * gradient, AdamW decays the weights directly), plus global gradient-norm clipping.
 */
import { keep, type Tensor, zeros } from "../tensor.ts";

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** true: AdamW. */
  decoupled?: boolean;
}

export class Adam {
  readonly params: Tensor[];
  readonly #m: Tensor[];
  readonly #v: Tensor[];
  step_ = 0;
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly decoupled: boolean;

  constructor(params: Tensor[], opts: AdamOptions) {
    this.params = params;
    this.lr = opts.lr;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    this.decoupled = opts.decoupled ?? false;
    this.#m = params.map((p) => keep(zeros(p.shape)));
    this.#v = params.map((p) => keep(zeros(p.shape)));
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    this.step_++;
    const bc1 = 1 - Math.pow(this.beta1, this.step_);
    const bc2 = 1 - Math.pow(this.beta2, this.step_);
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      p.backend.adam({
        p: p.storage,
        g: p.grad.storage,
        m: this.#m[i].storage,
        v: this.#v[i].storage,
        n: p.size,
        lr: this.lr,
        beta1: this.beta1,
        beta2: this.beta2,
        eps: this.eps,
        weightDecay: this.weightDecay,
        decoupled: this.decoupled,
        biasCorrection1: bc1,
        biasCorrection2: bc2,
      });
    });
  }

  /**
   * Drops the gradients (torch's `zero_grad(set_to_none=True)`): the next backward hands each
   * parameter its gradient buffer instead of adding into a zeroed one, and a parameter that gets
   * no gradient is skipped by `step`.
   */
  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Optimizer state tensors by name, for checkpoints (`m.<i>`, `v.<i>`). */
  state(): [string, Tensor][] {
    return this.params.flatMap((_, i) => [[`m.${i}`, this.#m[i]], [`v.${i}`, this.#v[i]]]);
  }
}

/** Scales gradients so their global L2 norm is at most maxNorm; returns the norm before. */
export function clipGradNorm(params: Tensor[], maxNorm: number): number {
  let sq = 0;
  for (const p of params) if (p.grad) sq += p.backend.sumSquares(p.grad.storage, p.size);
  const norm = Math.sqrt(sq);
  if (norm > maxNorm) {
    const factor = maxNorm / (norm + 1e-6);
    // In-place scale as g += (factor - 1) g.
    for (const p of params) {
      if (p.grad) p.backend.axpy(p.grad.storage, p.grad.storage, p.size, factor - 1);
    }
  }
  return norm;
}
