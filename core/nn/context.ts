/**
 * Per-forward-pass context: training mode and the Rng that supplies dropout seeds and noise.
 * Passing it explicitly keeps every random draw reproducible from the run's seed.
 */
import type { Rng } from "../random.ts";

export interface ForwardContext {
  training: boolean;
  rng: Rng;
  /**
   * Training with popularity-sampled negatives (gbce, sampled): their distribution over items
   * 1..I (core/models/negatives.ts); absent = uniform.
   */
  negatives?: SamplingDistribution | null;
}

/** A seeded distribution over items 1..I with its probabilities q(i) and log q(i). */
export interface SamplingDistribution {
  readonly prob: Float64Array;
  readonly logProb: Float32Array;
  draw(rng: Rng): number;
}
