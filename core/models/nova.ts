/**
 * NOVA (Liu et al., AAAI 2021, "Noninvasive Self-attention for Side Information Fusion in
 * Sequential Recommendation") on the SASRec encoder:
 *   item stream:   H_0 = Dropout(LN(E_id))                     (values never see side information)
 *   side stream:   R = F(E_id, P, A_1, ..., A_m)               (paper Sec. "Fusion function";
 *                  R_0 = Dropout(LN(R))                          positions count as side info)
 *   NOVA layer:    Q = R_0 W_Q, K = R_0 W_K, V = H_l W_V;
 *                  H_{l+1} = FFN(LN(H_l + Dropout(softmax(Q K^T / sqrt(d_h) + M) V W_O)))
 *   output:        s_u = H_L at the last position; scores = s_u · E_id^T.
 * Fusion F (config novaFusion): "sum" Σ f; "concat" Linear([f_1; ...; f_n]) (n·d -> d);
 * "gate" Σ σ(f_k w) f_k with one learned w ∈ R^d (the paper's gating, G = σ(F W^F)).
 * Attributes A_j (config novaAttributes): the item's category embedding, and optionally its
 * frozen text features through a Linear to d (core/models/side_attributes.ts).
 *
 * Deviations and choices: NOVA-BERT is bidirectional with a Cloze objective; as the DIF-SR
 * authors' NOVA baseline, this is the causal SASRec variant with the shared next-item losses.
 * R_0 is fused once from the embedding layer and reused by every layer (as the RecBole-based NOVA
 * implementations do), not re-fused from each layer's H_l. R_0 and H_0 share one LayerNorm, as
 * RecBole's FDSA shares one across streams. No public reference code from the NOVA authors was
 * available; the golden fixture checks this file against tools/torch/difsr_ref.py's Nova.
 */
import type { ForwardContext } from "../nn/context.ts";
import { type Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { ModuleList } from "../nn/module.ts";
import { causalPaddingMask, TransformerEncoder } from "../nn/transformer.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { type Tensor, tensor } from "../tensor.ts";
import { lossPositions, type SequenceBatch } from "./batch.ts";
import type { ItemSide } from "./item_side.ts";
import type { LossOutput, SequentialModel } from "./model.ts";
import {
  configuredItemLoss,
  gatherAt,
  ItemDotModel,
  lastPositions,
  lossIndex,
  positionIds,
  type SasrecConfig,
} from "./sasrec.ts";
import { AttributeEmbedding, checkAttributes, type SideAttribute } from "./side_attributes.ts";

export type NovaFusion = "sum" | "concat" | "gate";

export interface NovaConfig extends SasrecConfig {
  attributes: SideAttribute[];
  fusion: NovaFusion;
}

export class Nova extends ItemDotModel implements SequentialModel {
  readonly kind = "nova";
  readonly itemEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  readonly attributeEmbeddings: ModuleList<AttributeEmbedding>;
  readonly concatLayer: Linear | null = null;
  readonly gate: Linear | null = null;
  readonly encoder: TransformerEncoder;
  readonly norm: LayerNorm;

  constructor(readonly cfg: NovaConfig, items: ItemSide, rng: Rng) {
    super();
    checkAttributes("nova", cfg.attributes, items);
    const d = cfg.hidden;
    const std = cfg.initStd;
    [this.itemEmbedding, this.positionEmbedding] = this.itemAndPositionEmbeddings(cfg, rng);
    this.attributeEmbeddings = this.child(
      "attribute_embeddings",
      new ModuleList(cfg.attributes.map((a) => new AttributeEmbedding(a, d, items, rng, std))),
    );
    const features = cfg.attributes.length + 2;
    if (cfg.fusion === "concat") {
      this.concatLayer = this.child("concat_layer", new Linear(features * d, d, rng, { std }));
    } else if (cfg.fusion === "gate") {
      this.gate = this.child("gate", new Linear(d, 1, rng, { std, bias: false }));
    }
    this.encoder = this.child("trm_encoder", new TransformerEncoder(cfg, rng));
    this.norm = this.child("LayerNorm", new LayerNorm(d, cfg.layerNormEps));
  }

  #drop(x: Tensor, ctx: ForwardContext): Tensor {
    return op.dropout(x, this.cfg.hiddenDropout, ctx.rng.nextU32(), ctx.training);
  }

  /** R = F(E_id, P, A_1..A_m): [B, L, d]. */
  #fuse(features: Tensor[]): Tensor {
    if (this.concatLayer) return this.concatLayer.forward(op.concat(features, -1));
    if (this.gate) {
      const [b, l, d] = features[0].shape;
      const n = features.length;
      const stack = op.concat(features.map((f) => op.reshape(f, [b * l, 1, d])), 1);
      const g = op.sigmoid(op.reshape(this.gate.forward(stack), [b * l, 1, n]));
      return op.reshape(op.matmul(g, stack), [b, l, d]);
    }
    return features.slice(1).reduce((acc, f) => op.add(acc, f), features[0]);
  }

  /** Hidden states of every position [B, L, d]. */
  encode(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    const { size, len } = batch;
    const item = this.itemEmbedding.forward(tensor(batch.items, [size, len], "i32"));
    const pos = this.positionEmbedding.forward(positionIds(batch));
    const attrs = this.attributeEmbeddings.items.map((a) => a.forward(batch.items, size, len));
    const fused = this.#drop(this.norm.forward(this.#fuse([item, pos, ...attrs])), ctx);
    const h = this.#drop(this.norm.forward(item), ctx);
    return this.encoder.forward(h, causalPaddingMask(batch.items, size, len), ctx, fused);
  }

  /** Sequence representation [B, d]: the output at the last valid position. */
  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return gatherAt(this.encode(batch, ctx), lastPositions(batch));
  }

  /** Next-item loss at the last position, or at every position in window training. */
  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    const at = lossPositions(batch);
    const out = gatherAt(this.encode(batch, ctx), lossIndex(at));
    const main = configuredItemLoss(out, this.itemEmbedding.weight, at, this.cfg, ctx);
    return { total: main, parts: { main } };
  }
}
