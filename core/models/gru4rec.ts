/**
 * GRU4Rec (Hidasi et al. 2016; Tan et al. 2016) as RecBole 1.2 implements it
 * (recbole/model/sequential_recommender/gru4rec.py): item embedding -> dropout -> a bias-free
 * nn.GRU -> Linear(hidden -> embedding) -> the output at the last valid position ->
 * dot-product scores against the item embedding table. Loss: CE over all items or BCE with one
 * sampled negative, at the last position (or at every position in window training).
 *
 * Initialisation follows RecBole: xavier_normal_ item embeddings, xavier_uniform_ for the
 * first GRU layer's weights (deeper layers keep torch's default), torch's default Linear init.
 */
import { Gru } from "../nn/gru.ts";
import { uniform, xavierNormal, xavierUniform } from "../nn/init.ts";
import { Embedding, Linear } from "../nn/layers.ts";
import type { ForwardContext } from "../nn/context.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { assign, type Tensor, tensor } from "../tensor.ts";
import { lossPositions, type SequenceBatch } from "./batch.ts";
import { sliceBatch } from "./examples.ts";
import type { ContentFeatures, LossOutput, SequentialModel } from "./model.ts";
import {
  configuredItemLoss,
  gatherAt,
  ItemDotModel,
  type ItemLossConfig,
  lastPositions,
  lossIndex,
} from "./sasrec.ts";

export interface Gru4recConfig extends ItemLossConfig {
  numItems: number;
  embeddingSize: number;
  hiddenSize: number;
  numLayers: number;
  /** Dropout on the item embeddings (RecBole's `dropout_prob`). */
  dropout: number;
}

/**
 * RecBole's GRU4Rec.yaml: embedding_size 64, hidden_size 128, num_layers 1, dropout_prob 0.3,
 * loss_type CE. (The GRU has no biases: RecBole builds it with bias=False.)
 */
export const defaults: Omit<Gru4recConfig, "numItems"> = {
  embeddingSize: 64,
  hiddenSize: 128,
  numLayers: 1,
  dropout: 0.3,
  loss: "ce",
};

/**
 * The batch cut to its longest sequence. Batches are padded to a fixed length, but the GRU is
 * causal and right padding comes last, so steps past every row's end cannot reach any gathered
 * output: skipping them is exact and saves the time loop (and its tape) those steps.
 */
export function trimToLongest(batch: SequenceBatch): SequenceBatch {
  let longest = 1;
  for (let r = 0; r < batch.size; r++) longest = Math.max(longest, batch.lengths[r]);
  return longest >= batch.len ? batch : sliceBatch(batch, 0, batch.size);
}

/** Overwrites a parameter with freshly drawn values (a temporary tensor, freed at once). */
function reinit(p: Tensor, fresh: Tensor): void {
  assign(p, fresh.toFloat32());
  fresh.dispose();
}

export class Gru4rec extends ItemDotModel implements SequentialModel {
  readonly kind = "gru4rec";
  readonly itemEmbedding: Embedding;
  readonly gru: Gru;
  readonly dense: Linear;

  /** `_text` is accepted for a uniform model constructor; GRU4Rec uses item IDs only. */
  constructor(readonly cfg: Gru4recConfig, rng: Rng, _text?: ContentFeatures | null) {
    super();
    const { numItems, embeddingSize: e, hiddenSize: h } = cfg;
    this.itemEmbedding = this.child("item_embedding", new Embedding(numItems + 1, e, rng));
    reinit(this.itemEmbedding.weight, xavierNormal([numItems + 1, e], rng));
    this.gru = this.child(
      "gru_layers",
      new Gru({ inputSize: e, hiddenSize: h, numLayers: cfg.numLayers, bias: false }, rng),
    );
    const l0 = this.gru.layers[0];
    reinit(l0.wIh, xavierUniform([3 * h, e], rng));
    reinit(l0.wHh, xavierUniform([3 * h, h], rng));
    this.dense = this.child("dense", new Linear(h, e, rng));
    // torch's nn.Linear default: weight and bias U(-1/√fan_in, 1/√fan_in).
    const bound = 1 / Math.sqrt(h);
    reinit(this.dense.weight, uniform([e, h], bound, rng));
    reinit(this.dense.bias!, uniform([e], bound, rng));
  }

  /** Sequence representation [B, embeddingSize]: the output at each sequence's last position. */
  forward(full: SequenceBatch, ctx: ForwardContext): Tensor {
    const batch = trimToLongest(full);
    return this.#represent(batch, lastPositions(batch), ctx);
  }

  /** The GRU's output at flat [B * L] positions `at` [N], through the dense layer: [N, e]. */
  #represent(batch: SequenceBatch, at: Tensor, ctx: ForwardContext): Tensor {
    const items = tensor(batch.items, [batch.size, batch.len], "i32");
    const x = op.dropout(
      this.itemEmbedding.forward(items),
      this.cfg.dropout,
      ctx.rng.nextU32(),
      ctx.training,
    );
    const { output } = this.gru.forward(x);
    // The dense layer acts per position, so gathering the wanted states first is the same result
    // as RecBole's dense-then-gather at a fraction of the cost.
    return this.dense.forward(gatherAt(output, at));
  }

  /** Next-item loss at the last position, or at every position in window training. */
  loss(full: SequenceBatch, ctx: ForwardContext): LossOutput {
    const batch = trimToLongest(full);
    const at = lossPositions(batch);
    const out = this.#represent(batch, lossIndex(at), ctx);
    const main = configuredItemLoss(out, this.itemEmbedding.weight, at, this.cfg, ctx);
    return { total: main, parts: { main } };
  }
}
