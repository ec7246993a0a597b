/**
 * Per-forward-pass context: training mode and the Rng that supplies dropout seeds and noise.
 * Passing it explicitly keeps every random draw reproducible from the run's seed.
 */
import type { Rng } from "../random.ts";
import { noGrad, retained, type Tensor } from "../tensor.ts";

export interface ForwardContext {
  training: boolean;
  rng: Rng;
  /**
   * Training with popularity-sampled negatives (gbce, sampled): their distribution over items
   * 1..I (core/models/negatives.ts); absent = uniform.
   */
  negatives?: SamplingDistribution | null;
  /**
   * Outside training, values that depend on the parameters alone (a model's item tables),
   * computed by the first batch and reused by the rest while the parameters stay fixed: one
   * evaluation, one serving session. Absent: every call computes them again.
   */
  frozen?: FrozenValues;
}

/** A cache of parameter-only values for one stretch of inference; see ForwardContext.frozen. */
export class FrozenValues {
  readonly #values = new Map<string, unknown>();
  readonly #owned: Tensor[] = [];

  /** The value under key, made by `make` the first time (its tensors outlive tidy scopes). */
  get<T>(key: string, make: () => T): T {
    if (this.#values.has(key)) return this.#values.get(key) as T;
    const { value, owned } = retained(() => noGrad(make));
    this.#owned.push(...owned);
    this.#values.set(key, value);
    return value;
  }

  /** Frees the tensors the cached values made (parameters they hold are not theirs). */
  dispose(): void {
    for (const t of this.#owned) if (!t.disposed) t.dispose();
    this.#owned.length = 0;
    this.#values.clear();
  }
}

/**
 * `make()`, cached in ctx.frozen outside training: for a model's parameter-only values (item
 * tables), so an evaluation builds them once instead of once per batch.
 */
export function frozenOr<T>(ctx: ForwardContext, key: string, make: () => T): T {
  return !ctx.training && ctx.frozen ? ctx.frozen.get(key, make) : make();
}

/** A seeded distribution over items 1..I with its probabilities q(i) and log q(i). */
export interface SamplingDistribution {
  readonly prob: Float64Array;
  readonly logProb: Float32Array;
  draw(rng: Rng): number;
}
