/**
 * Self-attention blocks for side-information recommenders whose attention scores and values come
 * from different inputs: NOVA (scores from a side-information-fused stream, values from the item
 * stream) and DIF-SR (one score matrix per attribute, the item and the position, fused, values from
 * the item stream). NOVA is core/nn/transformer.ts's encoder with its queries and keys from the
 * fused stream (TransformerEncoder.forward's scoresFrom); DIF-SR's attention ends like
 * MultiHeadAttention (ValueAttention: softmax, value mix, `dense`, dropout, residual LayerNorm over
 * the item stream), then the shared FeedForward block. Parameter names follow the references'
 * PyTorch modules.
 */
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import type { ForwardContext } from "./context.ts";
import { LayerNorm, Linear } from "./layers.ts";
import { Module, ModuleList } from "./module.ts";
import { type EncoderConfig, FeedForward, headScores, ValueAttention } from "./transformer.ts";

/** How DIF-SR fuses its score matrices (the reference's fusion_type). */
export type ScoreFusion = "sum" | "concat" | "gate";

/** Linear(L, L) -> ReLU -> Linear(L, 1) as nn.Sequential, so names are projection.0 / .2. */
class GateProjection extends Module {
  readonly first: Linear;
  readonly second: Linear;
  constructor(len: number, rng: Rng, std: number) {
    super();
    this.first = this.child("0", new Linear(len, len, rng, { std }));
    this.second = this.child("2", new Linear(len, 1, rng, { std }));
  }
}

/**
 * RecBole's VanillaAttention over score matrices (DIF-SR's "gate" fusion): each stream's score
 * rows get an energy from a 2-layer MLP over the key axis; a softmax over the streams weights
 * their sum. streams: [B, h, L, S, L] -> [B, h, L, L].
 */
class ScoreGate extends Module {
  readonly projection: GateProjection;
  constructor(len: number, rng: Rng, std: number) {
    super();
    this.projection = this.child("projection", new GateProjection(len, rng, std));
  }
  forward(streams: Tensor): Tensor {
    const [b, h, l, s, k] = streams.shape;
    const p = this.projection;
    const energy = p.second.forward(op.relu(p.first.forward(streams))); // [B, h, L, S, 1]
    const weights = op.softmax(op.reshape(energy, [b * h * l, 1, s]));
    return op.reshape(op.matmul(weights, op.reshape(streams, [b * h * l, s, k])), [b, h, l, k]);
  }
}

export interface DifAttentionConfig extends EncoderConfig {
  /** Width of each attribute's embedding (the reference's attribute_hidden_size). */
  attributeDims: number[];
  fusion: ScoreFusion;
  /** The padded length every batch must have for "concat" / "gate" (they mix key columns). */
  maxLen: number;
}

/**
 * DIF-SR's decoupled attention (the reference's DIFMultiHeadAttention): separate query/key
 * projections for the item stream H, the position embedding P and each attribute embedding A_j;
 * score matrices H: Q_h K_h^T, P: Q_p K_p^T, A_j: Q_j K_j^T fused by sum, a Linear over their
 * concatenated key axes (concat), or ScoreGate (gate); values from H only.
 */
export class DifAttention extends ValueAttention {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  readonly queryP: Linear;
  readonly keyP: Linear;
  readonly queryLayers: ModuleList<Linear>;
  readonly keyLayers: ModuleList<Linear>;
  readonly concatFusion: Linear | null = null;
  readonly gateFusion: ScoreGate | null = null;
  readonly dense: Linear;
  readonly norm: LayerNorm;
  constructor(readonly dif: DifAttentionConfig, rng: Rng) {
    super(dif);
    const d = dif.hidden;
    const std = dif.initStd;
    for (const a of dif.attributeDims) {
      if (a % dif.heads !== 0) {
        throw new Error(`attribute width ${a} is not a multiple of ${dif.heads} heads`);
      }
    }
    this.query = this.child("query", new Linear(d, d, rng, { std }));
    this.key = this.child("key", new Linear(d, d, rng, { std }));
    this.value = this.child("value", new Linear(d, d, rng, { std }));
    this.queryP = this.child("query_p", new Linear(d, d, rng, { std }));
    this.keyP = this.child("key_p", new Linear(d, d, rng, { std }));
    const proj = () => dif.attributeDims.map((a) => new Linear(a, a, rng, { std }));
    this.queryLayers = this.child("query_layers", new ModuleList(proj()));
    this.keyLayers = this.child("key_layers", new ModuleList(proj()));
    const streams = dif.attributeDims.length + 2;
    if (dif.fusion === "concat") {
      this.concatFusion = this.child(
        "fusion_layer",
        new Linear(dif.maxLen * streams, dif.maxLen, rng, { std }),
      );
    } else if (dif.fusion === "gate") {
      this.gateFusion = this.child("fusion_layer", new ScoreGate(dif.maxLen, rng, std));
    }
    this.dense = this.child("dense", new Linear(d, d, rng, { std }));
    this.norm = this.child("LayerNorm", new LayerNorm(d, dif.layerNormEps));
  }

  /**
   * h: item stream [B, L, d]; pos: position embeddings [B, L, d]; attrs: [B, L, a_j] each;
   * mask [B, 1, L, L]. Scores are fused before the 1/sqrt(dh) scale (dh of the item stream).
   */
  forward(h: Tensor, pos: Tensor, attrs: Tensor[], mask: Tensor, ctx: ForwardContext): Tensor {
    const heads = this.cfg.heads;
    const item = headScores(this.query, this.key, h, heads);
    const position = headScores(this.queryP, this.keyP, pos, heads);
    const attr = attrs.map((a, j) =>
      headScores(this.queryLayers.items[j], this.keyLayers.items[j], a, heads)
    );
    let scores: Tensor;
    if (this.concatFusion) {
      // The reference's order along the key axis: attributes, item, position.
      scores = this.concatFusion.forward(op.concat([...attr, item, position], -1));
    } else if (this.gateFusion) {
      const [b, hh, l, k] = item.shape;
      const stack = [...attr, item, position].map((s) => op.reshape(s, [b, hh, l, 1, k]));
      scores = this.gateFusion.forward(op.concat(stack, 3));
    } else {
      scores = [...attr, position].reduce((acc, s) => op.add(acc, s), item);
    }
    return this.attend(scores, h, mask, ctx);
  }
}

/** One DIF-SR layer: DifAttention then the FeedForward block. */
export class DifLayer extends Module {
  readonly attention: DifAttention;
  readonly ffn: FeedForward;
  constructor(cfg: DifAttentionConfig, rng: Rng) {
    super();
    this.attention = this.child("multi_head_attention", new DifAttention(cfg, rng));
    this.ffn = this.child("feed_forward", new FeedForward(cfg, rng));
  }
  forward(h: Tensor, pos: Tensor, attrs: Tensor[], mask: Tensor, ctx: ForwardContext): Tensor {
    return this.ffn.forward(this.attention.forward(h, pos, attrs, mask, ctx), ctx);
  }
}

/** Layers under `layer.{i}`, RecBole's encoder naming (`trm_encoder.layer.0...`). */
export class LayerStack<M extends Module> extends Module {
  readonly layer: ModuleList<M>;
  constructor(layers: M[]) {
    super();
    this.layer = this.child("layer", new ModuleList(layers));
  }
}
