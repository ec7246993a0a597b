/**
 * UniSRec (Hou et al., "Towards Universal Sequence Representation Learning for Recommender
 * Systems", KDD 2022) as its authors' code implements it (github.com/RUCAIBox/UniSRec,
 * unisrec.py, data/transform.py, props/UniSRec.yaml). The item text representation x_i is the
 * dataset's frozen text features (docs/features.md), standing in for the paper's BERT [CLS]
 * vectors.
 *
 *   parametric whitening (Eq. 2):  x̃_i^(k) = (x_i - b^(k)) W^(k)        one per expert k (PWLayer;
 *                                  the reference applies dropout to x_i first, per expert)
 *   MoE adaptor (Eq. 3-4):         g = softmax(x_i W_gate + ε ⊙ softplus(x_i W_noise)),
 *                                  ε ~ N(0, 1) in training only (its noisy gating), ε's scale
 *                                  floored at 0.01;  v_i = Σ_k g_k x̃_i^(k)
 *   encoder (Eq. 5-6):             SASRec: f_j = v_{i_j} + p_j (+ E_id[i_j] when transductive),
 *                                  LayerNorm, dropout, the transformer, the last position's
 *                                  output s (trm_encoder and LayerNorm named as RecBole's)
 *   scores:                        cos(s, v_i) / τ (τ = 0.07), v_i + E_id[i] when transductive
 *
 * Pre-training (unisrecStage "pretrain", Eq. 7-9): in-batch contrastive losses over normalised
 * vectors with temperature τ,
 *   L = L_seq-item + λ L_seq-seq,
 * L_seq-item with each sequence's next item as positive and the batch's other next items as
 * negatives; L_seq-seq with an augmented view of each sequence as positive, the view made by item
 * drop (probability item_drop_coefficient = 0.9: each item but the first dropped with p = 0.2,
 * the rest packed to the left) or else word drop. The reference's word drop swaps 20 % of the
 * positions' text vectors for a second PLM encoding of the item text with words dropped; with
 * one frozen text table here, those positions get the text vector with dropout (p = 0.2) over
 * its dimensions. Off-diagonal pairs whose sequences share the next item get logit 0 (not -∞),
 * as the reference's torch.where does. Pre-training has no item ID table (it must transfer).
 *
 * Fine-tuning (unisrecStage "finetune"): CE over all items on the temperature-scaled cosines
 * (any `loss` kind works on those logits), "inductive" (text only) or "transductive" (text plus
 * an item ID embedding; the reference's default). From a pre-trained run (`--init-from`), the
 * reference's finetune.py (fix_enc) fixes position_embedding and trm_encoder and trains the
 * adaptor, the input LayerNorm and the ID table: unisrecFixEncoder.
 */
import { type ForwardContext, frozenOr } from "../nn/context.ts";
import { constant } from "../nn/init.ts";
import { Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { Module, ModuleList } from "../nn/module.ts";
import { causalPaddingMask, TransformerEncoder } from "../nn/transformer.ts";
import * as op from "../ops/mod.ts";
import { Rng } from "../random.ts";
import { keep, type Tensor, tensor } from "../tensor.ts";
import { lossPositions, type SequenceBatch } from "./batch.ts";
import type { ContentFeatures, LossOutput, SequentialModel } from "./model.ts";
import {
  configuredItemLoss,
  gatherAt,
  lastPositions,
  lossIndex,
  positionIds,
  type SasrecConfig,
} from "./sasrec.ts";

export interface UnisrecConfig extends SasrecConfig {
  stage: "pretrain" | "finetune";
  mode: "inductive" | "transductive";
  experts: number;
  adaptorDropout: number;
  temperature: number;
  lambda: number;
  itemDropRatio: number;
  itemDropCoefficient: number;
  noisyGating: boolean;
  fixEncoder: boolean;
}

/** Parametric whitening: (dropout(x) - b) W, W [out, in] without bias (PWLayer). */
export class PWLayer extends Module {
  readonly bias: Tensor;
  readonly lin: Linear;
  constructor(inputSize: number, outputSize: number, readonly dropout: number, rng: Rng) {
    super();
    this.bias = this.param("bias", constant([inputSize], 0));
    this.lin = this.child("lin", new Linear(inputSize, outputSize, rng, { bias: false }));
  }
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const dropped = op.dropout(x, this.dropout, ctx.rng.nextU32(), ctx.training);
    return this.lin.forward(op.sub(dropped, this.bias));
  }
}

/** Gate noise ε ~ N(0, 1), [rows, experts], from the step's Rng. */
export function gateNoise(rows: number, experts: number, ctx: ForwardContext): Float32Array {
  const z = new Float32Array(rows * experts);
  for (let i = 0; i < z.length; i++) z[i] = ctx.rng.normal();
  return z;
}

/** The MoE adaptor: softmax-gated parametric whitening experts (MoEAdaptorLayer). */
export class MoEAdaptor extends Module {
  readonly wGate: Tensor;
  readonly wNoise: Tensor;
  readonly experts: ModuleList<PWLayer>;
  /** Where the gate noise comes from (a test may substitute fixed draws). */
  noise: (rows: number, experts: number, ctx: ForwardContext) => Float32Array = gateNoise;

  constructor(
    readonly n: number,
    inputSize: number,
    outputSize: number,
    dropout: number,
    readonly noisy: boolean,
    rng: Rng,
  ) {
    super();
    this.wGate = this.param("w_gate", constant([inputSize, n], 0));
    this.wNoise = this.param("w_noise", constant([inputSize, n], 0));
    const list = Array.from({ length: n }, () => new PWLayer(inputSize, outputSize, dropout, rng));
    this.experts = this.child("experts", new ModuleList(list));
  }

  /** Gate weights [rows, n] of rows x [rows, in]; each row sums to 1. */
  gates(x: Tensor, ctx: ForwardContext): Tensor {
    let logits = op.matmul(x, this.wGate);
    if (this.noisy && ctx.training) {
      const rows = x.shape[0];
      const std = op.addScalar(op.softplus(op.matmul(x, this.wNoise)), 1e-2);
      logits = op.add(logits, op.mul(tensor(this.noise(rows, this.n, ctx), [rows, this.n]), std));
    }
    return op.softmax(logits);
  }

  /** Adapted vectors [..., out] of text vectors x [..., in]. */
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const lead = x.shape.slice(0, -1);
    const rows = x.size / x.shape[x.rank - 1];
    const flat = op.reshape(x, [rows, x.shape[x.rank - 1]]);
    const g = this.gates(flat, ctx);
    let out: Tensor | null = null;
    this.experts.items.forEach((e, k) => {
      const term = op.mul(e.forward(flat, ctx), op.slice(g, 1, k, 1));
      out = out ? op.add(out, term) : term;
    });
    return op.reshape(out!, [...lead, out!.shape[1]]);
  }
}

/** An augmented view of a batch's sequences for the sequence-sequence loss. */
export interface AugmentedView {
  items: Int32Array;
  lengths: Int32Array;
  /** Text vectors of the view [B, L, textDim]; absent = the items' rows of the text table. */
  text?: Tensor;
}

/**
 * Item drop: every item but the first kept with probability 1 - ratio, the kept ones packed to
 * the left (the reference's cumsum/scatter, without its write collisions).
 */
export function itemDrop(batch: SequenceBatch, ratio: number, rng: Rng): AugmentedView {
  const items = new Int32Array(batch.items.length);
  const lengths = new Int32Array(batch.size);
  for (let b = 0; b < batch.size; b++) {
    const row = b * batch.len;
    let n = 0;
    for (let j = 0; j < batch.lengths[b]; j++) {
      const keepIt = rng.uniform() >= ratio;
      if (j === 0 || keepIt) items[row + n++] = batch.items[row + j];
    }
    lengths[b] = n;
  }
  return { items, lengths };
}

export class Unisrec extends Module implements SequentialModel {
  readonly kind = "unisrec";
  readonly itemEmbedding: Embedding | null;
  readonly positionEmbedding: Embedding;
  readonly encoder: TransformerEncoder;
  readonly norm: LayerNorm;
  readonly adaptor: MoEAdaptor;
  /** Frozen text features [(numItems + 1), textDim]: data, not a parameter. */
  readonly textTable: Tensor;
  readonly #fix = new FineTuneFix(() => this.#fixedParameters());

  constructor(readonly cfg: UnisrecConfig, rng: Rng, text: ContentFeatures) {
    super();
    if (text.data.length !== (cfg.numItems + 1) * text.dim) {
      throw new Error(
        `unisrec: text features hold ${text.data.length} values, expected ` +
          `(${cfg.numItems} items + 1) x ${text.dim}`,
      );
    }
    const d = cfg.hidden;
    const std = cfg.initStd;
    this.textTable = keep(tensor(text.data, [cfg.numItems + 1, text.dim]));
    // Pre-training has no ID table (the reference sets it to None): what it learns transfers.
    this.itemEmbedding = cfg.stage === "finetune" && cfg.mode === "transductive"
      ? this.child("item_embedding", new Embedding(cfg.numItems + 1, d, rng, std))
      : null;
    this.positionEmbedding = this.child(
      "position_embedding",
      new Embedding(cfg.maxLen, d, rng, std),
    );
    this.encoder = this.child("trm_encoder", new TransformerEncoder(cfg, rng));
    this.norm = this.child("LayerNorm", new LayerNorm(d, cfg.layerNormEps));
    this.adaptor = this.child(
      "moe_adaptor",
      new MoEAdaptor(cfg.experts, text.dim, d, cfg.adaptorDropout, cfg.noisyGating, rng),
    );
  }

  get needsNegatives(): boolean {
    return this.cfg.loss === "bce";
  }

  /**
   * After loading pre-trained parameters (--init-from): fix the position embedding and the
   * transformer, as the reference's fine-tuning does (fix_enc). Returns a line to print.
   */
  initialized(loaded: ReadonlySet<string>): string | null {
    if (!this.cfg.fixEncoder || this.cfg.stage !== "finetune") return null;
    if (!this.#fix.apply(loaded)) return null;
    return "unisrec: position_embedding and trm_encoder fixed for fine-tuning " +
      "(unisrecFixEncoder=false trains them too)";
  }

  #fixedParameters(): [string, Tensor][] {
    return [
      ...this.positionEmbedding.namedParameters("position_embedding."),
      ...this.encoder.namedParameters("trm_encoder."),
    ];
  }

  trainableParameters(): Tensor[] {
    return this.#fix.trainable(this.parameters());
  }

  /** Hidden states [B, L, d] of sequences whose text vectors are `text` [B, L, textDim]. */
  encode(
    items: Int32Array,
    size: number,
    len: number,
    text: Tensor,
    ctx: ForwardContext,
  ): Tensor {
    let x = op.add(
      this.adaptor.forward(text, ctx),
      this.positionEmbedding.forward(positionIds({ size, len })),
    );
    if (this.itemEmbedding) {
      x = op.add(x, this.itemEmbedding.forward(tensor(items, [size, len], "i32")));
    }
    const h0 = op.dropout(
      this.norm.forward(x),
      this.cfg.hiddenDropout,
      ctx.rng.nextU32(),
      ctx.training,
    );
    return this.encoder.forward(h0, causalPaddingMask(items, size, len), ctx);
  }

  #textOf(items: Int32Array, size: number, len: number): Tensor {
    return op.embedding(this.textTable, tensor(items, [size, len], "i32"));
  }

  /** Sequence vectors [N, d] at flat positions `at`, L2-normalised. */
  #sequence(batch: SequenceBatch, at: Tensor, ctx: ForwardContext): Tensor {
    const text = this.#textOf(batch.items, batch.size, batch.len);
    return op.l2Normalize(gatherAt(this.encode(batch.items, batch.size, batch.len, text, ctx), at));
  }

  /**
   * Every item's vector [numItems + 1, d] (adapted text, + ID embedding), L2-normalised; built
   * once per evaluation (ctx.frozen).
   */
  itemTable(ctx: ForwardContext): Tensor {
    return frozenOr(ctx, "unisrec.items", () => {
      let v = this.adaptor.forward(this.textTable, ctx);
      if (this.itemEmbedding) v = op.add(v, this.itemEmbedding.weight);
      return op.l2Normalize(v);
    });
  }

  /**
   * Evaluation's per-item tables for export: the sequence input (adapted text, + ID embedding)
   * and its L2-normalised rows, the score table.
   */
  inferenceTables(): { input: Tensor; score: Tensor } {
    const ctx = { training: false, rng: new Rng(0) };
    let input = this.adaptor.forward(this.textTable, ctx);
    if (this.itemEmbedding) input = op.add(input, this.itemEmbedding.weight);
    return { input, score: op.l2Normalize(input) };
  }

  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return this.#sequence(batch, lastPositions(batch), ctx);
  }

  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    if (this.cfg.stage === "pretrain") {
      const view = ctx.rng.uniform() < this.cfg.itemDropCoefficient
        ? itemDrop(batch, this.cfg.itemDropRatio, ctx.rng)
        : this.#wordDrop(batch, ctx);
      return this.pretrainLoss(batch, view, ctx);
    }
    const at = lossPositions(batch);
    const s = op.scale(this.#sequence(batch, lossIndex(at), ctx), 1 / this.cfg.temperature);
    const main = configuredItemLoss(s, this.itemTable(ctx), at, this.cfg, ctx);
    return { total: main, parts: { main } };
  }

  /**
   * Word drop's stand-in: the positions a Bernoulli(1 - ratio) mask drops get their text vector
   * with dropout over its dimensions (one frozen text table here; see the header).
   */
  #wordDrop(batch: SequenceBatch, ctx: ForwardContext): AugmentedView {
    const p = this.cfg.itemDropRatio;
    const swap = new Float32Array(batch.items.length);
    for (let i = 0; i < swap.length; i++) swap[i] = ctx.rng.uniform() < p ? 1 : 0;
    const text = this.#textOf(batch.items, batch.size, batch.len);
    const dropped = op.dropout(text, p, ctx.rng.nextU32(), true);
    const m = tensor(swap, [batch.size, batch.len, 1]);
    return {
      items: batch.items,
      lengths: batch.lengths,
      text: op.add(text, op.mul(op.sub(dropped, text), m)),
    };
  }

  /** L_seq-item + λ L_seq-seq over the batch (the reference's pretrain()). */
  pretrainLoss(batch: SequenceBatch, view: AugmentedView, ctx: ForwardContext): LossOutput {
    if (batch.positionTargets) {
      throw new Error("unisrec pre-training needs trainMode=prefix (one target per sequence)");
    }
    const n = batch.size;
    const s = this.forward(batch, ctx);
    const targets = tensor(batch.targets, [n], "i32");
    const pos = op.l2Normalize(this.adaptor.forward(op.embedding(this.textTable, targets), ctx));
    // 0 where another row has the same next item (its logit is set to 0), 1 elsewhere.
    const keepMask = new Float32Array(n * n).fill(1);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (i !== j && batch.targets[i] === batch.targets[j]) keepMask[i * n + j] = 0;
      }
    }
    const mask = tensor(keepMask, [n, n]);
    const diagonal = tensor(Int32Array.from({ length: n }, (_, i) => i), [n], "i32");
    const contrast = (other: Tensor) => {
      const logits = op.scale(op.matmul(s, other, false, true), 1 / this.cfg.temperature);
      return op.crossEntropy(op.mul(logits, mask), diagonal);
    };
    const seqItem = contrast(pos);
    const viewText = view.text ?? this.#textOf(view.items, n, batch.len);
    const aug = this.encode(view.items, n, batch.len, viewText, ctx);
    const last = new Int32Array(n);
    for (let b = 0; b < n; b++) last[b] = b * batch.len + view.lengths[b] - 1;
    const sAug = op.l2Normalize(gatherAt(aug, tensor(last, [n], "i32")));
    const seqSeq = contrast(sAug);
    const total = op.add(seqItem, op.scale(seqSeq, this.cfg.lambda));
    return { total, parts: { seq_item: seqItem, seq_seq: seqSeq } };
  }

  /** Cosine scores (the reference's full_sort_predict: no temperature). */
  scoreAll(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return op.matmul(this.forward(batch, ctx), this.itemTable(ctx), false, true);
  }

  scoreParts(batch: SequenceBatch, ctx: ForwardContext): { users: Tensor; items: Tensor } {
    return { users: this.forward(batch, ctx), items: this.itemTable(ctx) };
  }
}

/**
 * The reference's fix_enc: the parameters a model holds fixed when it fine-tunes from pre-trained
 * ones (--init-from). They are fixed only if at least one of them was loaded.
 */
export class FineTuneFix {
  #frozen = false;
  constructor(readonly fixedParameters: () => [string, Tensor][]) {}

  /** Fixes the parameters when any of them is among `loaded`; returns whether it did. */
  apply(loaded: ReadonlySet<string>): boolean {
    const fixed = this.fixedParameters();
    if (!fixed.some(([name]) => loaded.has(name))) return false;
    for (const [, t] of fixed) t.requiresGrad = false;
    this.#frozen = true;
    return true;
  }

  /** `all` without the fixed parameters once they are fixed. */
  trainable(all: Tensor[]): Tensor[] {
    if (!this.#frozen) return all;
    const fixed = new Set(this.fixedParameters().map(([, t]) => t));
    return all.filter((t) => !fixed.has(t));
  }
}
