/**
 * LRURec (Yue et al., "Linear Recurrent Units for Sequential Recommendation", WSDM 2024) as its
 * authors' code implements it (github.com/yueqirex/LRURec, model/lru.py):
 *
 *   x_0 = LayerNorm(Dropout(E[s]))                              item embedding (no positions)
 *   per block:
 *     u_t  = γ ⊙ (B x_t + b_B)                 B ∈ C^{2d×d}, complex state of 2d channels
 *     h_t  = λ ⊙ h_{t-1} + u_t,  h_{-1} = 0    λ = exp(-exp(ν_log) + i·exp(θ_log))
 *     y_t  = Re(C h_t + b_C)                   C ∈ C^{d×2d}
 *     x'   = LayerNorm(Dropout_attn(y) + x)
 *     x    = LayerNorm(Dropout(W_2 Dropout(GELU(W_1 x' + b_1)) + b_2) + x')    (W_1: d -> 4d)
 *   score(i) = <x_t, E[i]> + bias_i
 *
 * with γ = exp(γ_log) the normalisation √(1 - |λ|²) at initialisation (trained afterwards).
 * Loss: CE over every item (the reference's), at the last position or at every position of a
 * window (trainMode), through the shared helpers of sasrec.ts; bce / gbce / sampled work too.
 *
 * Complex numbers as real pairs: B x + b_B for a real x is (B_re x + b_re) + i(B_im x + b_im),
 * and Re(C h + b_C) = C_re h_re - C_im h_im + Re(b_C). Hence the parameters in_proj_re/in_proj_im
 * (weight and bias each) and out_proj_re (weight, the real bias) / out_proj_im (weight only: the
 * imaginary output bias of the reference never reaches the loss, so it is left out).
 *
 * The recurrence, composed from existing differentiable ops (no engine kernel): unrolled,
 * h_t = Σ_{s≤t} λ^{t-s} u_s, a causal convolution. Per channel c that is one lower-triangular
 * Toeplitz matrix K_c[t, s] = γ_c λ_c^{t-s} (s ≤ t) applied to the sequence, i.e. a batched
 * [L x L] @ [L x B] matmul over the 2d channels, in complex arithmetic as four real ones:
 * h_re = K_re u_re - K_im u_im, h_im = K_re u_im + K_im u_re. K is built from exp, cos and sin
 * of ν·k and θ·k for lags k = t - s, so gradients reach ν_log, θ_log and γ_log through the usual
 * ops. At L = 50 this costs about as much as the feed-forward; the reference's log-depth parallel
 * scan is a GPU scheduling trick that computes the same sums.
 *
 * Padding: the reference left-pads (also up to a power of two) and masks the scan's carries out
 * of padding positions, so every valid position sees Σ over valid s ≤ t only, i.e. the
 * recurrence started from zero at the first item. Batches here are right-padded: the recurrence
 * runs left to right from zero at position 0 = the first item, so valid positions get the same
 * sums, and padding after the last item cannot reach them (K is lower triangular; LayerNorm and
 * the feed-forward act per position). Steps past each batch's longest row are cut off.
 *
 * Initialisation as the reference: r = |λ| uniform in the ring [r_min, r_max] (ν_log =
 * log(-½ log(U (r_max² - r_min²) + r_min²))), phase θ uniform in [0, 2π), γ_log = log √(1 - r²);
 * every other weight, bias and the item bias N(0, 0.02²) truncated to ±0.04; LayerNorms 1 / 0.
 * LayerNorm eps is torch's default 1e-5.
 */
import { constant, truncatedNormal } from "../nn/init.ts";
import { Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { Module, ModuleList } from "../nn/module.ts";
import type { ForwardContext } from "../nn/context.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { assign, type Tensor, tensor } from "../tensor.ts";
import { lossPositions, type SequenceBatch } from "./batch.ts";
import { trimToLongest } from "./gru4rec.ts";
import type { LossOutput, SequentialModel } from "./model.ts";
import {
  configuredItemLoss,
  gatherAt,
  type ItemLossConfig,
  lastPositions,
  lossIndex,
} from "./sasrec.ts";

export interface LrurecConfig extends ItemLossConfig {
  numItems: number;
  /** d: embedding and output width (the reference's bert_hidden_units); the state has 2d. */
  hidden: number;
  /** LRU blocks (bert_num_blocks). */
  layers: number;
  /** Dropout on the embeddings and in the feed-forward (bert_dropout). */
  dropout: number;
  /** Dropout on the recurrence's output (bert_attn_dropout). */
  attnDropout: number;
  /** Ring of |λ| at initialisation. */
  rMin: number;
  rMax: number;
}

/** The reference's defaults (config.py and LRULayer). */
export const defaults: Omit<LrurecConfig, "numItems"> = {
  hidden: 64,
  layers: 2,
  dropout: 0.2,
  attnDropout: 0.2,
  rMin: 0.8,
  rMax: 0.99,
  loss: "ce",
};

const LN_EPS = 1e-5;
const INIT_STD = 0.02;

/** Overwrites a parameter with freshly drawn values (a temporary tensor, freed at once). */
function reinit(p: Tensor, fresh: Tensor): void {
  assign(p, fresh.toFloat32());
  fresh.dispose();
}

/** The reference's truncated normal on every weight and bias of a Linear. */
function truncLinear(inF: number, outF: number, rng: Rng, bias = true): Linear {
  const l = new Linear(inF, outF, rng, { bias });
  reinit(l.weight, truncatedNormal([outF, inF], INIT_STD, rng));
  if (l.bias) reinit(l.bias, truncatedNormal([outF], INIT_STD, rng));
  return l;
}

/** Lags t - s of a causal [L, L] Toeplitz matrix (0 above the diagonal) and its 0/1 mask. */
const lagCache = new Map<number, { lag: Float32Array; mask: Float32Array }>();
function lags(len: number): { lag: Tensor; mask: Tensor } {
  let hit = lagCache.get(len);
  if (!hit) {
    const lag = new Float32Array(len * len);
    const mask = new Float32Array(len * len);
    for (let t = 0; t < len; t++) {
      for (let s = 0; s <= t; s++) {
        lag[t * len + s] = t - s;
        mask[t * len + s] = 1;
      }
    }
    hit = { lag, mask };
    lagCache.set(len, hit);
  }
  return { lag: tensor(hit.lag, [1, len, len]), mask: tensor(hit.mask, [1, len, len]) };
}

/**
 * The recurrence's Toeplitz kernels from params_log [3, C] (rows ν_log, θ_log, γ_log):
 * K_re, K_im [C, L, L] with K[c, t, s] = γ_c λ_c^{t-s} for s ≤ t and 0 above the diagonal.
 */
export function lruKernel(paramsLog: Tensor, len: number): { re: Tensor; im: Tensor } {
  const c = paramsLog.shape[1];
  const row = (i: number) => op.reshape(op.slice(paramsLog, 0, i, 1), [c, 1, 1]);
  const { lag, mask } = lags(len);
  // |K| = γ e^{-ν k} = exp(γ_log - exp(ν_log) k); arg K = θ k.
  const mag = op.mul(op.exp(op.sub(row(2), op.mul(op.exp(row(0)), lag))), mask);
  const phase = op.mul(op.exp(row(1)), lag);
  return { re: op.mul(mag, op.cos(phase)), im: op.mul(mag, op.sin(phase)) };
}

/** The linear recurrent unit with its residual and LayerNorm (the reference's LRULayer). */
export class LruLayer extends Module {
  /** Rows ν_log, θ_log, γ_log over the 2d state channels. */
  readonly paramsLog: Tensor;
  readonly inRe: Linear;
  readonly inIm: Linear;
  readonly outRe: Linear;
  readonly outIm: Linear;
  readonly norm: LayerNorm;

  constructor(readonly d: number, readonly dropout: number, rMin: number, rMax: number, rng: Rng) {
    super();
    const c = 2 * d;
    const v = new Float32Array(3 * c);
    for (let j = 0; j < c; j++) {
      const nu = -0.5 * Math.log(rng.uniform() * (rMax * rMax - rMin * rMin) + rMin * rMin);
      const r = Math.exp(-nu);
      v[j] = Math.log(nu);
      // A phase of exactly 0 would make θ_log -∞ (a uniform draw can be 0).
      v[c + j] = Math.log(Math.max(rng.uniform(), 1e-7) * 2 * Math.PI);
      v[2 * c + j] = Math.log(Math.sqrt(1 - r * r));
    }
    this.paramsLog = this.param("params_log", tensor(v, [3, c]));
    this.inRe = this.child("in_proj_re", truncLinear(d, c, rng));
    this.inIm = this.child("in_proj_im", truncLinear(d, c, rng));
    this.outRe = this.child("out_proj_re", truncLinear(c, d, rng));
    this.outIm = this.child("out_proj_im", truncLinear(c, d, rng, false));
    this.norm = this.child("layer_norm", new LayerNorm(d, LN_EPS));
  }

  /** x [B, L, d] -> [B, L, d]. */
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const len = x.shape[1];
    // Channels first for the per-channel Toeplitz products: [B, L, 2d] -> [2d, L, B].
    const uRe = op.transpose(this.inRe.forward(x), [2, 1, 0]);
    const uIm = op.transpose(this.inIm.forward(x), [2, 1, 0]);
    const k = lruKernel(this.paramsLog, len);
    const hRe = op.sub(op.matmul(k.re, uRe), op.matmul(k.im, uIm));
    const hIm = op.add(op.matmul(k.re, uIm), op.matmul(k.im, uRe));
    const y = op.sub(
      this.outRe.forward(op.transpose(hRe, [2, 1, 0])),
      this.outIm.forward(op.transpose(hIm, [2, 1, 0])),
    );
    const drop = op.dropout(y, this.dropout, ctx.rng.nextU32(), ctx.training);
    return this.norm.forward(op.add(drop, x));
  }
}

/** Position-wise feed-forward d -> 4d -> d with GELU, residual and LayerNorm. */
class FeedForward extends Module {
  readonly w1: Linear;
  readonly w2: Linear;
  readonly norm: LayerNorm;
  constructor(d: number, readonly dropout: number, rng: Rng) {
    super();
    this.w1 = this.child("w_1", truncLinear(d, 4 * d, rng));
    this.w2 = this.child("w_2", truncLinear(4 * d, d, rng));
    this.norm = this.child("layer_norm", new LayerNorm(d, LN_EPS));
  }
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const drop = (t: Tensor) => op.dropout(t, this.dropout, ctx.rng.nextU32(), ctx.training);
    return this.norm.forward(op.add(drop(this.w2.forward(drop(op.gelu(this.w1.forward(x))))), x));
  }
}

class LruBlock extends Module {
  readonly lru: LruLayer;
  readonly ffn: FeedForward;
  constructor(cfg: LrurecConfig, rng: Rng) {
    super();
    this.lru = this.child(
      "lru_layer",
      new LruLayer(cfg.hidden, cfg.attnDropout, cfg.rMin, cfg.rMax, rng),
    );
    this.ffn = this.child("feed_forward", new FeedForward(cfg.hidden, cfg.dropout, rng));
  }
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    return this.ffn.forward(this.lru.forward(x, ctx), ctx);
  }
}

class LruEmbedding extends Module {
  readonly token: Embedding;
  readonly norm: LayerNorm;
  constructor(numItems: number, d: number, rng: Rng) {
    super();
    this.token = this.child("token", new Embedding(numItems + 1, d, rng));
    reinit(this.token.weight, truncatedNormal([numItems + 1, d], INIT_STD, rng));
    this.norm = this.child("layer_norm", new LayerNorm(d, LN_EPS));
  }
}

class LruStack extends Module {
  readonly blocks: ModuleList<LruBlock>;
  /** Per-item output bias [numItems + 1]. */
  readonly bias: Tensor;
  constructor(cfg: LrurecConfig, rng: Rng) {
    super();
    const blocks: LruBlock[] = [];
    for (let i = 0; i < cfg.layers; i++) blocks.push(new LruBlock(cfg, rng));
    this.blocks = this.child("lru_blocks", new ModuleList(blocks));
    this.bias = this.param("bias", constant([cfg.numItems + 1], 0));
    reinit(this.bias, truncatedNormal([cfg.numItems + 1], INIT_STD, rng));
  }
}

export class Lrurec extends Module implements SequentialModel {
  readonly kind = "lrurec";
  readonly embedding: LruEmbedding;
  readonly model: LruStack;

  /** Names follow the reference's state_dict (embedding.*, model.lru_blocks.*, model.bias). */
  constructor(readonly cfg: LrurecConfig, rng: Rng) {
    super();
    this.embedding = this.child("embedding", new LruEmbedding(cfg.numItems, cfg.hidden, rng));
    this.model = this.child("model", new LruStack(cfg, rng));
  }

  get needsNegatives(): boolean {
    return this.cfg.loss === "bce";
  }

  /** Outputs of every position [B, L, d]. */
  encode(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    const items = tensor(batch.items, [batch.size, batch.len], "i32");
    const e = op.dropout(
      this.embedding.token.forward(items),
      this.cfg.dropout,
      ctx.rng.nextU32(),
      ctx.training,
    );
    let x = this.embedding.norm.forward(e);
    for (const block of this.model.blocks.items) x = block.forward(x, ctx);
    return x;
  }

  /**
   * Scoring with the item bias as one dot product: [x, 1] · [E_i, bias_i] = <x, E_i> + bias_i,
   * so every loss and the blocked evaluation use the shared dot-product paths unchanged.
   */
  #withOne(x: Tensor): Tensor {
    return op.concat([x, constant([x.shape[0], 1], 1)], 1);
  }
  #itemTable(): Tensor {
    const n = this.cfg.numItems + 1;
    return op.concat([this.embedding.token.weight, op.reshape(this.model.bias, [n, 1])], 1);
  }

  /** Sequence representation [B, d + 1] (the last column is 1, the bias's factor). */
  forward(full: SequenceBatch, ctx: ForwardContext): Tensor {
    const batch = trimToLongest(full);
    return this.#withOne(gatherAt(this.encode(batch, ctx), lastPositions(batch)));
  }

  /** Next-item loss at the last position, or at every position in window training. */
  loss(full: SequenceBatch, ctx: ForwardContext): LossOutput {
    const batch = trimToLongest(full);
    const at = lossPositions(batch);
    const out = this.#withOne(gatherAt(this.encode(batch, ctx), lossIndex(at)));
    const main = configuredItemLoss(out, this.#itemTable(), at, this.cfg, ctx);
    return { total: main, parts: { main } };
  }

  scoreAll(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return op.matmul(this.forward(batch, ctx), this.#itemTable(), false, true);
  }

  scoreParts(batch: SequenceBatch, ctx: ForwardContext): { users: Tensor; items: Tensor } {
    return { users: this.forward(batch, ctx), items: this.#itemTable() };
  }
}
