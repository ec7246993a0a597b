/**
 * FDSA (Zhang et al., IJCAI 2019), structured as RecBole 1.2's fdsa.py with the item text
 * features as its feature sequence:
 *   item stream:    item embedding + position -> LayerNorm -> dropout -> TransformerEncoder
 *   feature stream: Linear(frozen text features) + position -> LayerNorm -> dropout ->
 *                   its own TransformerEncoder
 *   output:         concat(last item state, last feature state) -> Linear(2d -> d) ->
 *                   LayerNorm -> dropout; scores = dot with the item embedding table.
 *
 * As in RecBole, one LayerNorm module (and one dropout rate) serves both stream inputs and the
 * output. RecBole's vanilla attention over feature fields is left out: with a single feature
 * (the text modality) its softmax weight is identically 1 and its parameters get no gradient.
 * Items without text carry zero feature rows, so their feature embedding is the projection bias.
 */
import { UsageError } from "../errors.ts";
import type { ForwardContext } from "../nn/context.ts";
import { type Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { causalPaddingMask, TransformerEncoder } from "../nn/transformer.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { keep, type Tensor, tensor } from "../tensor.ts";
import { lossPositions, type SequenceBatch } from "./batch.ts";
import type { ContentFeatures, LossOutput, SequentialModel } from "./model.ts";
import {
  configuredItemLoss,
  encodeLastSteps,
  gatherAt,
  ItemDotModel,
  lastPositions,
  lossIndex,
  positionIds,
  type SasrecConfig,
} from "./sasrec.ts";

export interface FdsaConfig extends SasrecConfig {
}

/**
 * RecBole's FDSA.yaml: n_layers 2, n_heads 2, hidden_size 64, inner_size 256,
 * hidden_dropout_prob 0.5, attn_dropout_prob 0.5, hidden_act gelu, layer_norm_eps 1e-12,
 * initializer_range 0.02, loss_type CE; MAX_ITEM_LIST_LENGTH 50.
 */
export const defaults: Omit<FdsaConfig, "numItems"> = {
  layers: 2,
  heads: 2,
  hidden: 64,
  inner: 256,
  hiddenDropout: 0.5,
  attnDropout: 0.5,
  layerNormEps: 1e-12,
  initStd: 0.02,
  maxLen: 50,
  loss: "ce",
};

export class Fdsa extends ItemDotModel implements SequentialModel {
  readonly kind = "fdsa";
  readonly lastStepLoss = true;
  readonly itemEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  readonly featureProjection: Linear;
  readonly itemEncoder: TransformerEncoder;
  readonly featureEncoder: TransformerEncoder;
  readonly norm: LayerNorm;
  readonly concatLayer: Linear;
  /** Frozen text features [(numItems + 1), textDim]: data, not a parameter. */
  readonly textTable: Tensor;

  constructor(readonly cfg: FdsaConfig, rng: Rng, text?: ContentFeatures | null) {
    super();
    if (!text) {
      throw new UsageError(
        "fdsa needs a text modality: the dataset has no item text features (add item metadata " +
          "or precomputed text features, or choose a model that uses item IDs only)",
      );
    }
    if (text.dim < 1 || text.data.length !== (cfg.numItems + 1) * text.dim) {
      throw new UsageError(
        `fdsa: text features hold ${text.data.length} values, expected ` +
          `(${cfg.numItems} items + 1 padding row) x ${text.dim}`,
      );
    }
    const d = cfg.hidden;
    const std = cfg.initStd;
    this.textTable = keep(tensor(text.data, [cfg.numItems + 1, text.dim]));
    [this.itemEmbedding, this.positionEmbedding] = this.itemAndPositionEmbeddings(cfg, rng);
    this.featureProjection = this.child(
      "feature_projection",
      new Linear(text.dim, d, rng, { std }),
    );
    this.itemEncoder = this.child("item_trm_encoder", new TransformerEncoder(cfg, rng));
    this.featureEncoder = this.child("feature_trm_encoder", new TransformerEncoder(cfg, rng));
    this.norm = this.child("LayerNorm", new LayerNorm(d, cfg.layerNormEps));
    this.concatLayer = this.child("concat_layer", new Linear(2 * d, d, rng, { std }));
  }

  #drop(x: Tensor, ctx: ForwardContext): Tensor {
    return op.dropout(x, this.cfg.hiddenDropout, ctx.rng.nextU32(), ctx.training);
  }

  /** Sequence representation [B, d]: the fused output at each sequence's last position. */
  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return this.#represent(batch, lastPositions(batch), true, ctx);
  }

  /**
   * The fused output of the two streams at flat [B * L] positions `at` [N]: [N, d]. `last`: `at`
   * is each row's last step, where the encoders' last layers run alone (forwardAt).
   */
  #represent(batch: SequenceBatch, at: Tensor, last: boolean, ctx: ForwardContext): Tensor {
    const items = tensor(batch.items, [batch.size, batch.len], "i32");
    const pos = this.positionEmbedding.forward(positionIds(batch));
    const mask = causalPaddingMask(batch.items, batch.size, batch.len);
    const encodeAt = (encoder: TransformerEncoder, x: Tensor) =>
      last
        ? encodeLastSteps(encoder, x, batch, ctx, mask)
        : gatherAt(encoder.forward(x, mask, ctx), at);

    const itemIn = this.#drop(
      this.norm.forward(op.add(this.itemEmbedding.forward(items), pos)),
      ctx,
    );
    const itemOut = encodeAt(this.itemEncoder, itemIn);

    // Gather the sequence's feature rows before projecting: B*L rows rather than every item.
    const feat = this.featureProjection.forward(op.embedding(this.textTable, items));
    const featIn = this.#drop(this.norm.forward(op.add(feat, pos)), ctx);
    const featOut = encodeAt(this.featureEncoder, featIn);

    const fused = this.concatLayer.forward(op.concat([itemOut, featOut], -1));
    return this.#drop(this.norm.forward(fused), ctx);
  }

  /** Next-item loss at the last position, or at every position in window training. */
  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    const at = lossPositions(batch);
    const out = this.#represent(batch, lossIndex(at), !batch.positionTargets, ctx);
    const main = configuredItemLoss(out, this.itemEmbedding.weight, at, this.cfg, ctx);
    return { total: main, parts: { main } };
  }
}
