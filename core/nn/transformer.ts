/**
 * The SASRec transformer encoder, with RecBole's structure and parameter names
 * (recbole/model/layers.py: TransformerEncoder > TransformerLayer > MultiHeadAttention,
 * FeedForward): post-LayerNorm residual blocks, additive attention mask, GELU feed-forward.
 * Shared by SASRec and the models built on its encoder (FDSA, DuAF-MAT, NOVA, ...); DIF-SR's and
 * MISSRec's attentions reuse its value half (ValueAttention).
 */
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { type Tensor, tensor } from "../tensor.ts";
import type { ForwardContext } from "./context.ts";
import { LayerNorm, Linear } from "./layers.ts";
import { Module, ModuleList } from "./module.ts";

export interface EncoderConfig {
  layers: number;
  heads: number;
  hidden: number;
  inner: number;
  hiddenDropout: number;
  attnDropout: number;
  layerNormEps: number;
  initStd: number;
}

/**
 * Dropout with its seed drawn from ctx.rng (one draw per call, training or not). With `rows`, x
 * holds rows `rows.index` of a full pass's [rows.of, cols] activation and gets the mask the full
 * pass draws there (forwardAt in training).
 */
function drop(
  x: Tensor,
  p: number,
  ctx: ForwardContext,
  rows?: { index: Int32Array; of: number },
): Tensor {
  const seed = ctx.rng.nextU32();
  if (!rows || !ctx.training || p === 0) return op.dropout(x, p, seed, ctx.training);
  return op.dropoutRows(x, p, seed, rows.of, rows.index);
}

/**
 * norm(drop(x) + residual), the dropout drawing its seed as `drop` does: inside the layer norm's
 * fused add where the backend takes it (a full pass's rows, training with p > 0).
 */
function dropAddNorm(
  norm: LayerNorm,
  x: Tensor,
  residual: Tensor,
  p: number,
  ctx: ForwardContext,
  rows?: { index: Int32Array; of: number },
): Tensor {
  if (rows || !ctx.training || p === 0) return norm.addForward(drop(x, p, ctx, rows), residual);
  return norm.addForward(x, residual, { p, seed: ctx.rng.nextU32() });
}

/**
 * Raw (unscaled) scores q k^T per head, queries from x [B, Lq, *], keys from memory [B, Lk, *]
 * (default x): [B, h, Lq, Lk]. The heads are read in place from the projections (op.headDots).
 */
export function headScores(
  q: Linear,
  k: Linear,
  x: Tensor,
  heads: number,
  memory: Tensor = x,
): Tensor {
  return op.headDots(q.forward(x), k.forward(memory), heads);
}

/**
 * The value half of RecBole's MultiHeadAttention, shared by every attention whose scores come
 * from elsewhere: softmax(scores / sqrt(dh) + mask) (dropout) mixes the values of `memory`
 * (default: x itself); dense, dropout, LayerNorm(out + x).
 */
export abstract class ValueAttention extends Module {
  abstract readonly value: Linear;
  abstract readonly dense: Linear;
  abstract readonly norm: LayerNorm;
  constructor(readonly cfg: EncoderConfig) {
    super();
  }

  /**
   * scores [B, h, Lq, Lk], x [B, Lq, d], mask additive, memory [B, Lk, d]. `steps`: x holds one
   * query per sequence (Lq = 1), the one at step steps[b] of a full pass over memory's Lk steps,
   * whose dropout masks it takes.
   */
  protected attend(
    scores: Tensor,
    x: Tensor,
    mask: Tensor,
    ctx: ForwardContext,
    memory: Tensor = x,
    steps?: Int32Array,
  ): Tensor {
    const d = x.shape[2];
    const heads = this.cfg.heads;
    const len = memory.shape[1];
    const probs = drop(
      op.maskedSoftmax(scores, mask, 1 / Math.sqrt(d / heads)),
      this.cfg.attnDropout,
      ctx,
      steps && op.stepRows(steps, heads, len),
    );
    // [B, Lq, d] with the heads side by side, as the permuted merge of RecBole's layout.
    const context = op.headMix(probs, this.value.forward(memory));
    const out = this.dense.forward(context);
    return dropAddNorm(
      this.norm,
      out,
      x,
      this.cfg.hiddenDropout,
      ctx,
      steps && op.stepRows(steps, 1, len),
    );
  }
}

export class MultiHeadAttention extends ValueAttention {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  readonly dense: Linear;
  readonly norm: LayerNorm;
  constructor(cfg: EncoderConfig, rng: Rng) {
    super(cfg);
    const d = cfg.hidden;
    const std = cfg.initStd;
    this.query = this.child("query", new Linear(d, d, rng, { std }));
    this.key = this.child("key", new Linear(d, d, rng, { std }));
    this.value = this.child("value", new Linear(d, d, rng, { std }));
    this.dense = this.child("dense", new Linear(d, d, rng, { std }));
    this.norm = this.child("LayerNorm", new LayerNorm(d, cfg.layerNormEps));
  }

  /**
   * x [B, L, d], mask additive [B, 1, L, L]. Queries and keys come from `scoresFrom` (x itself,
   * or NOVA's side-information-fused stream), values and the residual from x.
   */
  forward(x: Tensor, mask: Tensor, ctx: ForwardContext, scoresFrom: Tensor = x): Tensor {
    return this.#attendHeads(scoresFrom, scoresFrom, x, x, mask, ctx);
  }

  /**
   * Attention of `queries` [B, Lq, d] over every step of `memory` [B, L, d]; mask [B, 1, Lq, L].
   * `steps`: queries holds one query per sequence (Lq = 1), the one at step steps[b] of a full
   * pass over memory's L steps, whose dropout masks it takes.
   */
  forwardQueries(
    queries: Tensor,
    memory: Tensor,
    mask: Tensor,
    ctx: ForwardContext,
    steps?: Int32Array,
  ): Tensor {
    return this.#attendHeads(queries, memory, memory, queries, mask, ctx, steps);
  }

  /**
   * attend's computation with its own scores: queries from `qFrom`, keys from `kFrom`, values
   * from `vFrom`, the residual; the heads' softmax, dropout and mixing in one op.
   */
  #attendHeads(
    qFrom: Tensor,
    kFrom: Tensor,
    vFrom: Tensor,
    residual: Tensor,
    mask: Tensor,
    ctx: ForwardContext,
    steps?: Int32Array,
  ): Tensor {
    const heads = this.cfg.heads;
    const q = this.query.forward(qFrom);
    const k = this.key.forward(kFrom);
    // The probabilities' dropout draws its seed here, as drop() does.
    const seed = ctx.rng.nextU32();
    const context = op.headAttention(
      q,
      k,
      this.value.forward(vFrom),
      mask,
      heads,
      1 / Math.sqrt(residual.shape[2] / heads),
      { p: this.cfg.attnDropout, seed, training: ctx.training, steps },
    );
    return dropAddNorm(
      this.norm,
      this.dense.forward(context),
      residual,
      this.cfg.hiddenDropout,
      ctx,
      steps && op.stepRows(steps, 1, vFrom.shape[1]),
    );
  }
}

export class FeedForward extends Module {
  readonly dense1: Linear;
  readonly dense2: Linear;
  readonly norm: LayerNorm;
  constructor(readonly cfg: EncoderConfig, rng: Rng) {
    super();
    const std = cfg.initStd;
    this.dense1 = this.child("dense_1", new Linear(cfg.hidden, cfg.inner, rng, { std }));
    this.dense2 = this.child("dense_2", new Linear(cfg.inner, cfg.hidden, rng, { std }));
    this.norm = this.child("LayerNorm", new LayerNorm(cfg.hidden, cfg.layerNormEps));
  }
  /** `rows`: x holds these rows of a full pass's activation (forwardAt in training). */
  forward(x: Tensor, ctx: ForwardContext, rows?: { index: Int32Array; of: number }): Tensor {
    const { dense1, dense2 } = this;
    const y = op.feedForward(x, dense1.weight, dense1.bias!, dense2.weight, dense2.bias!);
    return dropAddNorm(this.norm, y, x, this.cfg.hiddenDropout, ctx, rows);
  }
}

export class TransformerLayer extends Module {
  readonly attention: MultiHeadAttention;
  readonly ffn: FeedForward;
  constructor(cfg: EncoderConfig, rng: Rng) {
    super();
    this.attention = this.child("multi_head_attention", new MultiHeadAttention(cfg, rng));
    this.ffn = this.child("feed_forward", new FeedForward(cfg, rng));
  }
  /** scoresFrom: where queries and keys come from (MultiHeadAttention.forward). */
  forward(x: Tensor, mask: Tensor, ctx: ForwardContext, scoresFrom: Tensor = x): Tensor {
    return this.ffn.forward(this.attention.forward(x, mask, ctx, scoresFrom), ctx);
  }

  /**
   * The layer's output at the rows `queries` [B, 1, d] of x only: [B, 1, d]. In training,
   * `steps` (each query's step in x) gives the dropouts forward's masks at those rows.
   */
  forwardQueries(
    queries: Tensor,
    x: Tensor,
    keyMask: Tensor,
    ctx: ForwardContext,
    steps?: Int32Array,
  ): Tensor {
    const att = this.attention.forwardQueries(queries, x, keyMask, ctx, steps);
    return this.ffn.forward(att, ctx, steps && op.stepRows(steps, 1, x.shape[1]));
  }
}

export class TransformerEncoder extends Module {
  readonly layer: ModuleList<TransformerLayer>;
  constructor(cfg: EncoderConfig, rng: Rng) {
    super();
    const layers = Array.from({ length: cfg.layers }, () => new TransformerLayer(cfg, rng));
    this.layer = this.child("layer", new ModuleList(layers));
  }
  /**
   * Returns the last layer's output [B, L, d]. Each layer takes queries and keys from its own
   * input, or from one fixed stream `scoresFrom` (NOVA's fused side information).
   */
  forward(x: Tensor, mask: Tensor, ctx: ForwardContext, scoresFrom?: Tensor): Tensor {
    let h = x;
    for (const l of this.layer.items) h = l.forward(h, mask, ctx, scoresFrom ?? h);
    return h;
  }

  /**
   * The last layer's output at one step per row, `at` (flat indices into [B, L], one per row,
   * each row's last valid step): [B, d]. Scoring a sequence needs only that step, so the last
   * layer's queries, output projection and feed-forward run on B rows instead of B x L; keys and
   * values still see every step. `keyMask` [B, 1, 1, L] masks the padding keys, which is all the
   * causal mask does at a row's last step. On kernels whose elements do not depend on the row
   * count (the wasm GEMM) each row has the bits of forward's row. In training, `steps` (at[b] -
   * b L, on the host) lets the last layer's dropouts draw forward's masks at those steps.
   */
  forwardAt(
    x: Tensor,
    mask: Tensor,
    keyMask: Tensor,
    at: Tensor,
    ctx: ForwardContext,
    steps?: Int32Array,
  ): Tensor {
    if (ctx.training && !steps) throw new Error("forwardAt: training needs each row's step");
    const layers = this.layer.items;
    let h = x;
    for (const l of layers.slice(0, -1)) h = l.forward(h, mask, ctx, h);
    const [b, len, d] = h.shape;
    const queries = op.reshape(op.embedding(op.reshape(h, [b * len, d]), at), [b, 1, d]);
    const last = layers[layers.length - 1];
    return op.reshape(last.forwardQueries(queries, h, keyMask, ctx, steps), [b, d]);
  }
}

/**
 * RecBole's additive mask for right-padded sequences: causal AND key != padding. Built on the
 * backend from a [B, 1, 1, L] padding row and one [L, L] causal square, so the host makes
 * B + L rows rather than B x L x L values. Allowed scores get 0, masked ones -10000, or -20000
 * where both rules mask them: either way the score underflows to exactly 0 in the softmax.
 */
export function causalPaddingMask(seq: Int32Array, batch: number, len: number): Tensor {
  const causal = new Float32Array(len * len);
  for (let i = 0; i < len; i++) causal.fill(-10000, i * len + i + 1, (i + 1) * len);
  return op.add(paddingMask(seq, batch, len), tensor(causal, [1, 1, len, len]));
}

/** The padding half of causalPaddingMask alone: [B, 1, 1, L], -10000 at padding keys. */
export function paddingMask(seq: Int32Array, batch: number, len: number): Tensor {
  const padding = new Float32Array(batch * len);
  for (let i = 0; i < padding.length; i++) padding[i] = seq[i] === 0 ? -10000 : 0;
  return tensor(padding, [batch, 1, 1, len]);
}
