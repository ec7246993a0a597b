/**
 * MISSRec (Wang et al., "MISSRec: Pre-training and Transferring Multi-modal Interest-aware
 * Sequence Representation for Recommendation", ACM MM 2023) as its authors' code implements it
 * (github.com/gimpong/MM23-MISSRec: missrec.py, model_utils.py, trainer.py, props/*.yaml), with
 * the reference's defaults seq_mm_fusion "add" and item_mm_fusion "dynamic_shared".
 *
 * Multi-modal item tokens: x^m_i the frozen features of modality m (text, image), adapted
 * by one Linear layer per modality (text_adaptor, img_adaptor; the reference's adaptor is a plain
 * Linear, not UniSRec's MoE):
 *   a^m_i = W_m x^m_i + b_m
 *   e_j   = Σ_m a^m_{i_j} + P_j (+ E_id[i_j] when transductive)          ("add" fusion)
 *   decoder input  z_j = Dropout(LN(e_j))
 *
 * Interest discovery (the trainer's _multimodal_interest_discovery): before every training epoch
 * (and, here, before every evaluation, so a checkpoint's eval reproduces the run's test metrics)
 * all items' adapted modality vectors {a^m_i} are clustered by k-means (seeded Lloyd, 5 passes;
 * the reference runs torchpq's mini-batch k-means) into K = ceil(ρ · M · I) interests
 * (ρ = interest_ratio); each (item, modality) maps to its cluster c^m_i, and the interest
 * tokens are the centroids μ_k (no gradient). A sequence's interest tokens are the sorted unique
 * {c^m_{i_j}} over its positions and modalities (0 for padding, masked).
 *
 * Interest-aware sequence encoder (nn.Transformer, post-LN, n_layers/2 encoder + n_layers/2
 * decoder layers, neither causal):
 *   memory M = LN_enc(Encoder(μ_{tokens}))                        (interest encoder)
 *   H        = LN_dec(Decoder(z, M))    self-attention over z, cross-attention to M
 *   s        = H at the last position, L2-normalised
 *   diversity regulariser  R = Σ_b ||Σ_q M_bq · w_b||² / d,  w_b = (unmasked tokens of b) / Nq
 *                          (the reference's interest_orthogonal_regularization, as written: a
 *                          sum over the batch, padded tokens' outputs included)
 * The attention blocks are RecBole's (core/nn/transformer.ts) plus a cross-attention; torch's
 * layers also drop out inside the feed-forward and use the hidden dropout for attention, so the
 * two agree exactly at dropout 0 (the golden case checks against torch.nn.Transformer).
 *
 * Dynamic item fusion (_compute_dynamic_fused_logits): with â^m_i = a^m_i / ||a^m_i||,
 *   l^m_i = s · â^m_i,   ω^m_i = softmax_m(l^m_i · f),   l_i = Σ_m ω^m_i l^m_i
 * (f the learnable fusion_factor, 0 at start; "static" averages instead), and transductively
 *   l_i = (s · Ê_id[i] + 2 l_i) / 3.
 * With two modalities softmax_m is a sigmoid of f (l^t - l^v). With one content modality the
 * reference scores cos-style against normalise(a^m_i (+ E_id[i])) instead.
 *
 * Fine-tuning (missrecStage "finetune"): L = CE(l / τ, target) + γ R over all items. From a
 * pre-trained run (`--init-from`) the position embedding and the encoder-decoder are fixed, as
 * the reference's finetune.py (fix_enc) does: missrecFixEncoder.
 * Pre-training (missrecStage "pretrain", no ID table): in-batch contrastive losses
 *   L = CE(l_seq-item / τ) + λ CE(s · s'ᵀ / τ) + γ (R + R'),
 * l_seq-item the fused logits of each sequence against the batch's next items, s' an augmented
 * view: item drop (each item but the first dropped with p = item_drop_ratio) with probability
 * item_drop_coefficient, else the text features of every position with dropout p (the reference
 * swaps in a second text encoding, word drop, that one frozen table cannot give).
 *
 * Missing modalities: the reference marks an item's modality empty when its feature row is all
 * zero and, with "add" fusion, still adds its adapted vector (the adaptor's bias) and clusters it.
 * Here a missing row is zero-filled before the adaptor, which is exactly that. DuAF-MAT's MAT-MoE
 * generates missing images instead. Without an image modality (Beauty) the model runs text-only
 * with a notice.
 */
import { type ForwardContext, frozenOr } from "../nn/context.ts";
import { constant } from "../nn/init.ts";
import { Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { Module, ModuleList } from "../nn/module.ts";
import {
  type EncoderConfig,
  FeedForward,
  headScores,
  MultiHeadAttention,
  TransformerEncoder,
} from "../nn/transformer.ts";
import * as op from "../ops/mod.ts";
import { Rng } from "../random.ts";
import { keep, noGrad, type Tensor, tensor, tidy } from "../tensor.ts";
import type { SequenceBatch } from "./batch.ts";
import type { ItemSide } from "./item_side.ts";
import type { LossOutput, SequentialModel } from "./model.ts";
import { gatherLast, positionIds } from "./sasrec.ts";
import { type AugmentedView, FineTuneFix, itemDrop } from "./unisrec.ts";

export type MissrecModality = "text" | "image";

export interface MissrecConfig extends EncoderConfig {
  numItems: number;
  maxLen: number;
  stage: "pretrain" | "finetune";
  mode: "inductive" | "transductive";
  modalities: MissrecModality[];
  itemFusion: "static" | "dynamic_shared";
  temperature: number;
  lambda: number;
  gamma: number;
  interestRatio: number;
  kmeansIters: number;
  itemDropRatio: number;
  itemDropCoefficient: number;
  fixEncoder: boolean;
}

/** Additive key-padding mask [B, 1, 1, L]: -10000 where ids[b, j] = 0. */
function keyPadding(ids: Int32Array, size: number, len: number): Tensor {
  const m = new Float32Array(size * len);
  for (let i = 0; i < m.length; i++) m[i] = ids[i] === 0 ? -10000 : 0;
  return tensor(m, [size, 1, 1, len]);
}

/** Multi-head attention of queries x [B, Lq, d] over memory [B, Lk, d], residual + LayerNorm. */
export class CrossAttention extends MultiHeadAttention {
  attendTo(x: Tensor, memory: Tensor, mask: Tensor, ctx: ForwardContext): Tensor {
    const scores = headScores(this.query, this.key, x, this.cfg.heads, memory);
    return this.attend(scores, x, mask, ctx, memory);
  }
}

/** nn.TransformerDecoderLayer (post-LN): self-attention, cross-attention, feed-forward. */
export class DecoderLayer extends Module {
  readonly selfAttention: MultiHeadAttention;
  readonly crossAttention: CrossAttention;
  readonly ffn: FeedForward;
  constructor(cfg: EncoderConfig, rng: Rng) {
    super();
    this.selfAttention = this.child("self_attention", new MultiHeadAttention(cfg, rng));
    this.crossAttention = this.child("cross_attention", new CrossAttention(cfg, rng));
    this.ffn = this.child("feed_forward", new FeedForward(cfg, rng));
  }
  forward(x: Tensor, memory: Tensor, selfMask: Tensor, memMask: Tensor, ctx: ForwardContext) {
    const h = this.crossAttention.attendTo(
      this.selfAttention.forward(x, selfMask, ctx),
      memory,
      memMask,
      ctx,
    );
    return this.ffn.forward(h, ctx);
  }
}

interface Content {
  name: MissrecModality;
  /** [n, dim] frozen rows, zero where the item lacks the modality. */
  table: Tensor;
  adaptor: Linear;
}

/** The interests of every (item, modality): centroids [K + 1, d] (row 0 = padding) and lookups. */
export interface Interests {
  centroids: Tensor;
  lookup: Map<MissrecModality, Int32Array>;
}

/** Scoring tables: normalised adapted modality rows and the normalised ID rows, [n, d] each. */
interface ScoreTables {
  content: Tensor[];
  id: Tensor | null;
  /** One content modality: normalise(a (+ E_id)), scored by a plain dot product. */
  single: Tensor | null;
}

/**
 * Seeded Lloyd k-means of points [N, d] (the reference runs 5 passes of torchpq's mini-batch
 * k-means): k distinct points as the start, empty clusters keep their centroid.
 */
export function kmeans(
  points: Tensor,
  k: number,
  iters: number,
  rng: Rng,
): { assign: Int32Array; centroids: Float32Array } {
  const [n, d] = points.shape;
  const x = points.toFloat32();
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + rng.int(n - i);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const c = new Float32Array(k * d);
  for (let i = 0; i < k; i++) c.set(x.subarray(order[i] * d, order[i] * d + d), i * d);
  for (let it = 0;; it++) {
    // The nearest centroid minimises ||c||² - 2 x·c (||x||² is the same for every c), so it
    // is each row's argmax of 2 x·c - ||c||², computed where the points are: only the
    // assignments come back, not the [N x k] products.
    const cn = new Float32Array(k);
    for (let i = 0; i < k; i++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += c[i * d + t] ** 2;
      cn[i] = s;
    }
    const c2 = c.map((v) => 2 * v); // exact: 2 x·c is x·(2c)
    const assign = noGrad(() =>
      tidy(() =>
        op.argmaxRows(
          op.sub(op.matmul(points, tensor(c2, [k, d]), false, true), tensor(cn, [1, k])),
        )
      )
    );
    if (it === iters) return { assign, centroids: c };
    const sum = new Float64Array(k * d);
    const count = new Int32Array(k);
    for (let p = 0; p < n; p++) {
      const a = assign[p];
      count[a]++;
      for (let t = 0; t < d; t++) sum[a * d + t] += x[p * d + t];
    }
    for (let i = 0; i < k; i++) {
      if (count[i] === 0) continue;
      for (let t = 0; t < d; t++) c[i * d + t] = sum[i * d + t] / count[i];
    }
  }
}

export class Missrec extends Module implements SequentialModel {
  readonly kind = "missrec";
  readonly itemEmbedding: Embedding | null;
  readonly positionEmbedding: Embedding;
  readonly textAdaptor: Linear | null = null;
  readonly imageAdaptor: Linear | null = null;
  readonly fusionFactor: Tensor | null = null;
  readonly norm: LayerNorm;
  readonly encoder: TransformerEncoder;
  readonly encoderNorm: LayerNorm;
  readonly decoder: ModuleList<DecoderLayer>;
  readonly decoderNorm: LayerNorm;
  readonly notices: string[] = [];
  readonly #content: Content[] = [];
  readonly #clusterSeed: number;
  #interests: Interests | null = null;
  readonly #fix = new FineTuneFix(() => this.#fixedParameters());

  constructor(readonly cfg: MissrecConfig, items: ItemSide, rng: Rng) {
    super();
    if (cfg.layers % 2 !== 0) {
      throw new Error(
        `missrec: layers must be even (half encoder, half decoder), got ${cfg.layers}`,
      );
    }
    const d = cfg.hidden;
    const std = cfg.initStd;
    const n = cfg.numItems + 1;
    this.itemEmbedding = cfg.stage === "finetune" && cfg.mode === "transductive"
      ? this.child("item_embedding", new Embedding(n, d, rng, std))
      : null;
    this.positionEmbedding = this.child(
      "position_embedding",
      new Embedding(cfg.maxLen, d, rng, std),
    );
    for (const name of ["text", "image"] as const) {
      if (!cfg.modalities.includes(name)) continue;
      const features = items[name];
      if (!features) {
        this.notices.push(`missrec: no ${name} modality in the dataset; running without it`);
        continue;
      }
      const adaptor = this.child(
        name === "text" ? "text_adaptor" : "img_adaptor",
        new Linear(features.dim, d, rng, { std }),
      );
      if (name === "text") this.textAdaptor = adaptor;
      else this.imageAdaptor = adaptor;
      const data = Float32Array.from(features.data);
      for (let i = 0; i < n; i++) {
        if (!features.mask[i]) data.fill(0, i * features.dim, (i + 1) * features.dim);
      }
      this.#content.push({ name, table: keep(tensor(data, [n, features.dim])), adaptor });
    }
    if (this.#content.length === 0) throw new Error("missrec needs a text or image modality");
    if (this.#content.length === 2 && cfg.itemFusion === "dynamic_shared") {
      this.fusionFactor = this.param("fusion_factor", constant([1], 0));
    }
    this.norm = this.child("LayerNorm", new LayerNorm(d, cfg.layerNormEps));
    const half = { ...cfg, layers: cfg.layers / 2 };
    this.encoder = this.child("trm_encoder", new TransformerEncoder(half, rng));
    this.encoderNorm = this.child("encoder_norm", new LayerNorm(d, cfg.layerNormEps));
    this.decoder = this.child(
      "trm_decoder",
      new ModuleList(Array.from({ length: half.layers }, () => new DecoderLayer(cfg, rng))),
    );
    this.decoderNorm = this.child("decoder_norm", new LayerNorm(d, cfg.layerNormEps));
    this.#clusterSeed = rng.nextU32();
  }

  get modalities(): MissrecModality[] {
    return this.#content.map((c) => c.name);
  }

  get needsNegatives(): boolean {
    return false;
  }

  /**
   * After loading pre-trained parameters (--init-from): fix the position embedding and the
   * encoder-decoder (trm_model), as the reference's finetune.py (fix_enc) does.
   */
  initialized(loaded: ReadonlySet<string>): string | null {
    if (!this.cfg.fixEncoder || this.cfg.stage !== "finetune") return null;
    if (!this.#fix.apply(loaded)) return null;
    return "missrec: position_embedding and the interest encoder-decoder fixed for fine-tuning " +
      "(missrecFixEncoder=false trains them too)";
  }

  #fixedParameters(): [string, Tensor][] {
    return [
      ...this.positionEmbedding.namedParameters("position_embedding."),
      ...this.encoder.namedParameters("trm_encoder."),
      ...this.encoderNorm.namedParameters("encoder_norm."),
      ...this.decoder.namedParameters("trm_decoder."),
      ...this.decoderNorm.namedParameters("decoder_norm."),
    ];
  }

  trainableParameters(): Tensor[] {
    return this.#fix.trainable(this.parameters());
  }

  override train(on = true): this {
    super.train(on);
    // The trainer calls train() at every epoch start: interests are rediscovered then, as the
    // reference's trainer does, and on eval() too, so evaluation uses the interests of the
    // parameters it scores (a checkpoint's eval reproduces the run's test metrics).
    this.#setInterests(null);
    return this;
  }

  #setInterests(next: Interests | null): void {
    this.#interests?.centroids.dispose();
    this.#interests = next;
  }

  /** Uses given interests (tests) instead of discovering them. */
  setInterests(centroids: Float32Array, lookup: Map<MissrecModality, Int32Array>): void {
    const k = centroids.length / this.cfg.hidden;
    this.#setInterests({ centroids: keep(tensor(centroids, [k, this.cfg.hidden])), lookup });
  }

  /** The current interests, discovered from the adaptors when stale. */
  interests(): Interests {
    this.#interests ??= this.discoverInterests();
    return this.#interests;
  }

  /** k-means over every item's adapted modality vectors (items 1..I of each modality). */
  discoverInterests(): Interests {
    const n = this.cfg.numItems;
    const d = this.cfg.hidden;
    const m = this.#content.length;
    const k = Math.min(Math.max(Math.ceil(this.cfg.interestRatio * m * n), 1), m * n);
    const points = keep(noGrad(() =>
      tidy(() =>
        op.concat(
          this.#content.map((c) => op.slice(c.adaptor.forward(c.table), 0, 1, n)),
          0,
        )
      )
    ));
    const { assign, centroids } = kmeans(
      points,
      k,
      this.cfg.kmeansIters,
      new Rng(this.#clusterSeed),
    );
    points.dispose();
    const table = new Float32Array((k + 1) * d);
    table.set(centroids, d);
    const lookup = new Map<MissrecModality, Int32Array>();
    this.#content.forEach((c, j) => {
      const ids = new Int32Array(n + 1);
      for (let i = 1; i <= n; i++) ids[i] = assign[j * n + i - 1] + 1;
      lookup.set(c.name, ids);
    });
    return { centroids: keep(tensor(table, [k + 1, d])), lookup };
  }

  /** Each row's sorted unique interest ids over its positions and modalities, 0-padded. */
  interestTokens(items: Int32Array, size: number, len: number): { ids: Int32Array; width: number } {
    const { lookup } = this.interests();
    const rows: number[][] = [];
    for (let b = 0; b < size; b++) {
      const set = new Set<number>();
      for (const c of this.#content) {
        const table = lookup.get(c.name)!;
        for (let j = 0; j < len; j++) set.add(table[items[b * len + j]]);
      }
      rows.push([...set].sort((a, z) => a - z));
    }
    const width = Math.max(...rows.map((r) => r.length));
    const ids = new Int32Array(size * width);
    rows.forEach((r, b) => ids.set(r, b * width));
    return { ids, width };
  }

  /**
   * The interest-aware encoder: sequence vectors s [B, d] (L2-normalised) and the diversity
   * regulariser R, of item sequences whose adapted content sum is `content` [B, L, d].
   */
  encode(
    items: Int32Array,
    lengths: Int32Array,
    size: number,
    len: number,
    content: Tensor,
    ctx: ForwardContext,
  ): { s: Tensor; reg: Tensor } {
    const { ids, width } = this.interestTokens(items, size, len);
    const memMask = keyPadding(ids, size, width);
    const tokens = op.embedding(this.interests().centroids, tensor(ids, [size, width], "i32"));
    const memory = this.encoderNorm.forward(this.encoder.forward(tokens, memMask, ctx));
    const w = new Float32Array(size);
    for (let b = 0; b < size; b++) {
      let c = 0;
      for (let q = 0; q < width; q++) if (ids[b * width + q] !== 0) c++;
      w[b] = c / width;
    }
    const pooled = op.sum(op.mul(memory, tensor(w, [size, 1, 1])), 1);
    const reg = op.scale(op.sum(op.square(pooled)), 1 / this.cfg.hidden);

    let x = op.add(content, this.positionEmbedding.forward(positionIds({ size, len })));
    if (this.itemEmbedding) {
      x = op.add(x, this.itemEmbedding.forward(tensor(items, [size, len], "i32")));
    }
    let h = op.dropout(
      this.norm.forward(x),
      this.cfg.hiddenDropout,
      ctx.rng.nextU32(),
      ctx.training,
    );
    const selfMask = keyPadding(items, size, len);
    for (const layer of this.decoder.items) h = layer.forward(h, memory, selfMask, memMask, ctx);
    h = this.decoderNorm.forward(h);
    const s = op.l2Normalize(gatherLast(h, { size, len, lengths } as SequenceBatch));
    return { s, reg };
  }

  /** Σ_m adapted modality vectors of the items [B, L, d]; `text` replaces the text rows. */
  #content3(items: Int32Array, size: number, len: number, text?: Tensor): Tensor {
    const idx = tensor(items, [size, len], "i32");
    let out: Tensor | null = null;
    for (const c of this.#content) {
      const raw = c.name === "text" && text ? text : op.embedding(c.table, idx);
      const a = c.adaptor.forward(raw);
      out = out ? op.add(out, a) : a;
    }
    return out!;
  }

  #sequence(batch: SequenceBatch, ctx: ForwardContext): { s: Tensor; reg: Tensor } {
    const content = this.#content3(batch.items, batch.size, batch.len);
    return this.encode(batch.items, batch.lengths, batch.size, batch.len, content, ctx);
  }

  /** Normalised adapted rows of `rows` (all items when absent), per modality, and ID rows. */
  #tables(rows?: Tensor): ScoreTables {
    const adapted = this.#content.map((c) =>
      c.adaptor.forward(rows ? op.embedding(c.table, rows) : c.table)
    );
    const id = this.itemEmbedding && !rows ? this.itemEmbedding.weight : null;
    if (adapted.length === 1) {
      return {
        content: [],
        id: null,
        single: op.l2Normalize(id ? op.add(adapted[0], id) : adapted[0]),
      };
    }
    return {
      content: adapted.map((a) => op.l2Normalize(a)),
      id: id && op.l2Normalize(id),
      single: null,
    };
  }

  /** Fused logits l [N, n] of sequence vectors s [N, d] against score tables (no temperature). */
  fusedLogits(s: Tensor, t: ScoreTables): Tensor {
    if (t.single) return op.matmul(s, t.single, false, true);
    const [lt, lv] = t.content.map((a) => op.matmul(s, a, false, true));
    const diff = op.sub(lt, lv);
    // softmax over two modalities of l·f = sigmoid(f (l_t - l_v)) on l_t, the rest on l_v.
    const agg = this.fusionFactor
      ? op.add(lv, op.mul(op.sigmoid(op.mul(diff, this.fusionFactor)), diff))
      : op.scale(op.add(lt, lv), 0.5);
    if (!t.id) return agg;
    return op.scale(op.add(op.matmul(s, t.id, false, true), op.scale(agg, 2)), 1 / 3);
  }

  /** The scoring tables: built once per evaluation (ctx.frozen), else every call. */
  #scoringTables(ctx: ForwardContext): ScoreTables {
    if (this.training) return this.#tables();
    return frozenOr(ctx, "missrec.tables", () => this.#tables());
  }

  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return this.#sequence(batch, ctx).s;
  }

  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    if (batch.positionTargets) {
      throw new Error("missrec needs trainMode=prefix (its decoder is not causal)");
    }
    if (this.cfg.stage === "pretrain") {
      const view = ctx.rng.uniform() < this.cfg.itemDropCoefficient
        ? itemDrop(batch, this.cfg.itemDropRatio, ctx.rng)
        : this.#textDrop(batch, ctx);
      return this.pretrainLoss(batch, view, ctx);
    }
    const { s, reg } = this.#sequence(batch, ctx);
    const logits = op.scale(this.fusedLogits(s, this.#tables()), 1 / this.cfg.temperature);
    const main = op.crossEntropy(logits, tensor(batch.targets, [batch.size], "i32"));
    return {
      total: op.add(main, op.scale(reg, this.cfg.gamma)),
      parts: { main, interest_reg: reg },
    };
  }

  /** The second view when not item drop: every position's text features with dropout. */
  #textDrop(batch: SequenceBatch, ctx: ForwardContext): AugmentedView {
    const text = this.#content.find((c) => c.name === "text");
    if (!text) return { items: batch.items, lengths: batch.lengths };
    const raw = op.embedding(text.table, tensor(batch.items, [batch.size, batch.len], "i32"));
    return {
      items: batch.items,
      lengths: batch.lengths,
      text: op.dropout(raw, this.cfg.itemDropRatio, ctx.rng.nextU32(), true),
    };
  }

  /** L_seq-item + λ L_seq-seq + γ (R + R') over the batch (the reference's pretrain()). */
  pretrainLoss(batch: SequenceBatch, view: AugmentedView, ctx: ForwardContext): LossOutput {
    const n = batch.size;
    const { s, reg } = this.#sequence(batch, ctx);
    const labels = tensor(Int32Array.from({ length: n }, (_, i) => i), [n], "i32");
    const pos = this.#tables(tensor(batch.targets, [n], "i32"));
    const seqItem = op.crossEntropy(
      op.scale(this.fusedLogits(s, pos), 1 / this.cfg.temperature),
      labels,
    );
    const viewContent = this.#content3(view.items, n, batch.len, view.text);
    const aug = this.encode(view.items, view.lengths, n, batch.len, viewContent, ctx);
    const seqSeq = op.crossEntropy(
      op.scale(op.matmul(s, aug.s, false, true), 1 / this.cfg.temperature),
      labels,
    );
    const regs = op.add(reg, aug.reg);
    const total = op.add(
      op.add(seqItem, op.scale(seqSeq, this.cfg.lambda)),
      op.scale(regs, this.cfg.gamma),
    );
    return { total, parts: { seq_item: seqItem, seq_seq: seqSeq, interest_reg: regs } };
  }

  /** Fused logits / τ over every item (the reference's full_sort_predict). */
  scoreAll(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    const s = this.forward(batch, ctx);
    return op.scale(this.fusedLogits(s, this.#scoringTables(ctx)), 1 / this.cfg.temperature);
  }
}
