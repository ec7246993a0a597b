/**
 * DIF-SR (Xie et al., SIGIR 2022, "Decoupled Side Information Fusion for Sequential
 * Recommendation"), structured as the authors' RecBole model (SASRecD, DIFMultiHeadAttention):
 *   input:       H_0 = Dropout(LN(E_id))                  (side information stays out of H)
 *   layer l:     per stream s ∈ {item, position, A_1..A_m} its own query/key projections:
 *                  S_id = (H_l W_Q)(H_l W_K)^T, S_p = (P W_Q^p)(P W_K^p)^T,
 *                  S_j = (A_j W_Q^j)(A_j W_K^j)^T         (A_j of width difsrAttributeHidden)
 *                fused (difsrFusion): sum S_id + S_p + Σ S_j; concat Linear over the
 *                streams' concatenated key axes; gate a softmax over streams of a 2-layer MLP's
 *                energies (RecBole's VanillaAttention), weighting their sum;
 *                H' = LN(H_l + Dropout(softmax(S / sqrt(d_h) + M) (H_l W_V) W_O)), H_{l+1} = FFN(H')
 *                (values from the item stream only)
 *   output:      s_u = H_L at the last position; scores = s_u · E_id^T.
 *   loss:        L = L_rec + Σ_j λ_j L_attr_j; L_attr_j = BCE-with-logits of
 *                Linear_j(s_u) against the target item's one-hot attribute, averaged over
 *                attribute classes 1.. (class 0, padding / unknown, is left out, as in the
 *                reference) and over loss positions.
 *
 * Attributes (difsrAttributes): the item's category (a learned table) and optionally its frozen
 * text features (a Linear to difsrAttributeHidden). The attribute-prediction loss applies to
 * categorical attributes only: the reference has no loss for dense features, so λ of "text" is
 * unused. difsrLambdas[j] weights attribute j (the last entry repeats for later attributes).
 *
 * Deviations: "concat" / "gate" mix the score columns of every key before the causal mask, so
 * batches are padded to maxLen for them (as the reference always pads) and window training is
 * refused (a position would see its future items, its own target among them). The reference's
 * FeatureSeqEmbLayer keeps attribute tables in plain dicts, so they are neither initialised by
 * _init_weights nor trained; here they are parameters like any other unless
 * difsrFreezeAttributes (N(0, 1), never updated) asks for the reference's behaviour. The item
 * table's padding row gets gradients (torch's padding_idx would zero them); with concat / gate it
 * reaches the scores of padded key columns.
 */
import { UsageError } from "../errors.ts";
import type { ForwardContext } from "../nn/context.ts";
import { type Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { ModuleList } from "../nn/module.ts";
import { DifLayer, LayerStack, type ScoreFusion } from "../nn/side_attention.ts";
import { causalPaddingMask } from "../nn/transformer.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { type Tensor, tensor } from "../tensor.ts";
import { type LossPositions, lossPositions, type SequenceBatch } from "./batch.ts";
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

export interface DifsrConfig extends SasrecConfig {
  attributes: SideAttribute[];
  attributeHidden: number;
  fusion: ScoreFusion;
  lambdas: number[];
  /** Attribute tables N(0, 1) and never trained, as the reference code leaves them. */
  freezeAttributes?: boolean;
}

/** The batch right-padded to `len` positions (concat / gate fusion need every key column). */
export function padBatch(batch: SequenceBatch, len: number): SequenceBatch {
  if (batch.len === len) return batch;
  if (batch.len > len) throw new Error(`difsr: batch length ${batch.len} exceeds maxLen ${len}`);
  const widen = <T extends Int32Array | Float32Array>(src: T, dst: T): T => {
    for (let b = 0; b < batch.size; b++) {
      dst.set(src.subarray(b * batch.len, (b + 1) * batch.len), b * len);
    }
    return dst;
  };
  const n = batch.size * len;
  return {
    ...batch,
    len,
    items: widen(batch.items, new Int32Array(n)),
    times: widen(batch.times, new Float32Array(n)),
    positionTargets: batch.positionTargets && widen(batch.positionTargets, new Int32Array(n)),
    positionNegatives: batch.positionNegatives &&
      widen(batch.positionNegatives, new Int32Array(n)),
  };
}

export class Difsr extends ItemDotModel implements SequentialModel {
  readonly kind = "difsr";
  readonly itemEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  readonly attributeEmbeddings: ModuleList<AttributeEmbedding>;
  readonly layers: ModuleList<DifLayer>;
  /** One attribute predictor per categorical attribute, in attribute order. */
  readonly predictors: ModuleList<Linear>;
  readonly norm: LayerNorm;
  /** Index into cfg.attributes of each predictor. */
  readonly #predicted: number[];

  constructor(readonly cfg: DifsrConfig, readonly items: ItemSide, rng: Rng) {
    super();
    checkAttributes("difsr", cfg.attributes, items);
    if (cfg.attributeHidden % cfg.heads !== 0) {
      throw new UsageError(
        `difsr: difsrAttributeHidden ${cfg.attributeHidden} must be a multiple of heads ` +
          `(${cfg.heads})`,
      );
    }
    const d = cfg.hidden;
    const std = cfg.initStd;
    const a = cfg.attributeHidden;
    [this.itemEmbedding, this.positionEmbedding] = this.itemAndPositionEmbeddings(cfg, rng);
    this.attributeEmbeddings = this.child(
      "attribute_embeddings",
      new ModuleList(
        cfg.attributes.map((x) =>
          new AttributeEmbedding(x, a, items, rng, std, cfg.freezeAttributes ?? false)
        ),
      ),
    );
    const layerCfg = { ...cfg, attributeDims: cfg.attributes.map(() => a) };
    const layers = Array.from({ length: cfg.layers }, () => new DifLayer(layerCfg, rng));
    this.layers = this.child("trm_encoder", new LayerStack(layers)).layer;
    this.#predicted = cfg.attributes.flatMap((x, j) => (x === "category" ? [j] : []));
    this.predictors = this.child(
      "ap",
      new ModuleList(this.#predicted.map(() => new Linear(d, items.numCategories, rng, { std }))),
    );
    this.norm = this.child("LayerNorm", new LayerNorm(d, cfg.layerNormEps));
  }

  /** Everything but frozen attribute tables. */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((p) => p.requiresGrad);
  }

  /** The batch the encoder runs on: padded to maxLen when the fusion mixes key columns. */
  #layout(batch: SequenceBatch): SequenceBatch {
    return this.cfg.fusion === "sum" ? batch : padBatch(batch, this.cfg.maxLen);
  }

  /** Hidden states of every position [B, L, d] of a batch already in #layout. */
  #encode(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    const { size, len } = batch;
    const item = this.itemEmbedding.forward(tensor(batch.items, [size, len], "i32"));
    const pos = this.positionEmbedding.forward(positionIds(batch));
    const attrs = this.attributeEmbeddings.items.map((x) => x.forward(batch.items, size, len));
    let h = op.dropout(
      this.norm.forward(item),
      this.cfg.hiddenDropout,
      ctx.rng.nextU32(),
      ctx.training,
    );
    const mask = causalPaddingMask(batch.items, size, len);
    for (const layer of this.layers.items) h = layer.forward(h, pos, attrs, mask, ctx);
    return h;
  }

  /** Sequence representation [B, d]: the output at the last valid position. */
  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    const b = this.#layout(batch);
    return gatherAt(this.#encode(b, ctx), lastPositions(b));
  }

  /** λ_j for attribute j: difsrLambdas[j], the last entry for later attributes. */
  lambda(j: number): number {
    const l = this.cfg.lambdas;
    return l.length === 0 ? 0 : l[Math.min(j, l.length - 1)];
  }

  /**
   * Mean BCE-with-logits of logits [N, C] against one-hot labels over classes 1..C-1:
   * Σ softplus(z) over those classes minus z at each row's label (none for label 0).
   */
  #attributeLoss(out: Tensor, predictor: Linear, at: LossPositions): Tensor {
    const n = at.targets.length;
    const c = this.items.numCategories;
    const cat = this.items.itemCategory;
    const labels = new Int32Array(n);
    const has = new Float32Array(n);
    for (let r = 0; r < n; r++) {
      labels[r] = cat[at.targets[r]];
      has[r] = labels[r] > 0 ? 1 : 0;
    }
    const logits = predictor.forward(out);
    const all = op.sum(op.softplus(op.slice(logits, 1, 1, c - 1)));
    const hit = op.sum(op.mul(op.pick(logits, tensor(labels, [n], "i32")), tensor(has, [n])));
    return op.scale(op.sub(all, hit), 1 / (n * (c - 1)));
  }

  /** Next-item loss plus λ-weighted attribute losses at the same loss positions. */
  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    const b = this.#layout(batch);
    const at = lossPositions(b);
    const out = gatherAt(this.#encode(b, ctx), lossIndex(at));
    const main = configuredItemLoss(out, this.itemEmbedding.weight, at, this.cfg, ctx);
    const parts: Record<string, Tensor> = { main };
    let total = main;
    this.predictors.items.forEach((p, i) => {
      const j = this.#predicted[i];
      const attr = this.#attributeLoss(out, p, at);
      parts[`attr_${this.cfg.attributes[j]}`] = attr;
      total = op.add(total, op.scale(attr, this.lambda(j)));
    });
    return { total, parts };
  }
}
