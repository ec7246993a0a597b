/**
 * Most-popular baseline (RecBole's Pop): every user gets the same ranking, by how often each
 * item is the target of a training example. Under leave-one-out with prefix augmentation those
 * are positions 1 .. n-3 of each user's sequence (exactly the targets of
 * splitExamples(src, "train")), which is what RecBole's Pop counts from its training batches;
 * valid and test items are never counted.
 *
 * It has nothing to optimise: `trainable` is false, so the trainer calls `fit` instead of taking
 * gradient steps. The counts live in a non-trainable parameter `item_count` so that checkpoints
 * save and restore them like any other model state.
 */
import type { ForwardContext } from "../nn/context.ts";
import { Module } from "../nn/module.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { assign, type Tensor, tensor, zeros } from "../tensor.ts";
import type { SequenceBatch } from "./batch.ts";
import type {
  ContentFeatures,
  InteractionSequences,
  LossOutput,
  SequentialModel,
} from "./model.ts";

export interface PopConfig {
  numItems: number;
}

/** RecBole's Pop has no hyper-parameters. */
export const defaults: Omit<PopConfig, "numItems"> = {};

/** Per-item counts of training-example targets ([numItems + 1], index 0 = padding, always 0). */
export function trainingTargetCounts(src: InteractionSequences): Float32Array {
  const counts = new Float32Array(src.numItems + 1);
  for (let u = 0; u < src.numUsers; u++) {
    const off = src.seqOffsets[u];
    const n = src.seqOffsets[u + 1] - off;
    for (let p = 1; p <= n - 3; p++) counts[src.seqItems[off + p]]++;
  }
  return counts;
}

export class MostPopular extends Module implements SequentialModel {
  readonly kind = "pop";
  readonly needsNegatives = false;
  readonly trainable = false;
  readonly counts: Tensor;

  /** `_rng` and `_text` are accepted for a uniform model constructor; counting draws nothing. */
  constructor(readonly cfg: PopConfig, _rng?: Rng, _text?: ContentFeatures | null) {
    super();
    this.counts = this.param("item_count", zeros([cfg.numItems + 1]));
    // A statistic, not a weight: no gradient, so optimizers leave it alone.
    this.counts.requiresGrad = false;
  }

  fit(src: InteractionSequences): void {
    if (src.numItems !== this.cfg.numItems) {
      throw new Error(`pop: fitted on ${src.numItems} items, built for ${this.cfg.numItems}`);
    }
    assign(this.counts, trainingTargetCounts(src));
  }

  /**
   * Not a training objective (nothing is trainable) but a comparable validation number: the
   * mean negative log-likelihood of the targets under add-one-smoothed popularity,
   * p(i) = (c_i + 1) / (Σc + numItems).
   */
  loss(batch: SequenceBatch, _ctx: ForwardContext): LossOutput {
    const c = this.counts.toFloat32();
    let total = 0;
    for (let i = 1; i < c.length; i++) total += c[i];
    const denom = total + this.cfg.numItems;
    let nll = 0;
    for (let r = 0; r < batch.size; r++) nll -= Math.log((c[batch.targets[r]] + 1) / denom);
    const main = tensor([nll / batch.size], []);
    return { total: main, parts: { main } };
  }

  /** The counts, repeated for every row: [B, numItems + 1]. */
  scoreAll(batch: SequenceBatch, _ctx: ForwardContext): Tensor {
    // Adding to fresh zeros always returns a new tensor, never the parameter itself.
    return op.add(zeros([batch.size, this.cfg.numItems + 1]), this.counts);
  }
}
