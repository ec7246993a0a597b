/**
 * Per-forward-pass context: training mode and the Rng that supplies dropout seeds and noise.
 * Passing it explicitly keeps every random draw reproducible from the run's seed.
 */
import type { Rng } from "../random.ts";

export interface ForwardContext {
  training: boolean;
  rng: Rng;
}
