/**
 * TedRec (Xu et al., CIKM 2024, "Sequence-level Semantic Representation Fusion for Recommender
 * Systems") as its authors' code implements it (github.com/Sherry-XLL/TedRec, tedrec.py on
 * RecBole's SASRec; defaults from props/TedRec.yaml):
 *
 *   text:   T = MoE(P[s]) = Σ_i g_i W_i (Dropout_i(P[s]) - b_i)        frozen text features P
 *           g = softmax(P[s] W_gate + ε ⊙ (softplus(P[s] W_noise) + 0.01)), ε ~ N(0, 1) in
 *           training only (noisy gating); b_i [L, d_text] a per-position bias of each expert
 *           (the "distinguishable textual representations": positions modulate the text).
 *   mutual filtering in the frequency domain, along the sequence axis of length L:
 *           Ê = rfft(E[s]),  T̂ = rfft(T)                                     (norm "ortho")
 *           E_c = irfft(Ê ⊙ W_c)          W_c a learnable complex filter [L/2 + 1, d]
 *           F_c = irfft(T̂ ⊙ Ê)            the text and ID spectra filter each other
 *           X = 2 (E_c σ(E_c w_e + b_e) + F_c σ(F_c w_f + b_f))     two scalar gates per position
 *   encoder: H = SASRec-Transformer(Dropout(LayerNorm(X + P_pos))), h = H at the last item.
 *   loss:    CE over all items of cos(h, E_i) / τ (τ = tedrecTemperature); scores cos(h, E_i).
 *
 * The transforms are core/ops/dft.ts (cos / sin matmuls equal to torch.fft's rfft / irfft).
 *
 * Padding: the reference runs on RecBole's batches, right-padded to max_seq_length, and
 * transforms all L = max_seq_length positions, padding included: a padded slot carries the
 * padding row of the item table (random, never updated through lookups: torch's padding_idx)
 * and the expert outputs of a zero text row (-W_i b_i). The batches here are right-padded too
 * and are widened to maxLen before the transform, so every row sees the reference's L-point
 * spectrum; lookups of item 0 pass no gradient to its row, as with padding_idx. The circular
 * filter mixes every position with every other, later ones included, so window training
 * (a loss at every position) would see its targets and is refused; prefix training (RecBole's)
 * puts only the history in each row.
 *
 * Text: the dataset's frozen text features (the reference uses BERT [CLS] vectors of 768
 * dimensions); an item without text has a zero row, as the padding item does.
 *
 * Initialisation as the reference: SASRec's N(0, initStd) weights and zero biases; the expert
 * weights N(0, 0.02), their biases, W_gate and W_noise 0; W_c N(0, 0.02); the gates' weights
 * N(0, 0.02) and biases torch's default U(±1/√d). Parameter names are the reference's
 * state_dict keys (the frozen plm_embedding is data here, not a parameter).
 */
import { UsageError } from "../errors.ts";
import { type ForwardContext, frozenOr } from "../nn/context.ts";
import { constant, normal, uniform } from "../nn/init.ts";
import { Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { Module, ModuleList } from "../nn/module.ts";
import { TransformerEncoder } from "../nn/transformer.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { assign, keep, noGrad, type Tensor, tensor } from "../tensor.ts";
import { lossPositions, type SequenceBatch } from "./batch.ts";
import { padBatch } from "./difsr.ts";
import type { ItemSide } from "./item_side.ts";
import type { LossOutput, SequentialModel } from "./model.ts";
import {
  configuredItemLoss,
  encodeRows,
  gatherAt,
  lastPositions,
  lossIndex,
  type SasrecConfig,
} from "./sasrec.ts";

export interface TedrecConfig extends SasrecConfig {
  /** τ of the cosine logits (temperature). */
  temperature: number;
  /** Experts of the text adaptor (n_exps). */
  experts: number;
  /** Dropout on the text features inside each expert (adaptor_dropout_prob). */
  adaptorDropout: number;
  /** Gaussian noise on the experts' gate logits in training (the adaptor's noisy gating). */
  noisyGating: boolean;
}

/** props/TedRec.yaml (hidden_size 300 there; `hidden` keeps the shared default here). */
export const defaults = {
  temperature: 0.07,
  experts: 8,
  adaptorDropout: 0.2,
  noisyGating: true,
};

/** One expert: W (Dropout(x) - b), b a per-position bias [1, L, d_text] (DTRLayer). */
class TextExpert extends Module {
  readonly bias: Tensor;
  readonly lin: Linear;
  constructor(textDim: number, d: number, maxLen: number, rng: Rng) {
    super();
    this.bias = this.param("bias", constant([1, maxLen, textDim], 0));
    this.lin = this.child("lin", new Linear(textDim, d, rng, { bias: false, std: 0.02 }));
  }
  /** W D(x): the part of W (D(x) - b) that depends on the text. */
  project(x: Tensor, p: number, ctx: ForwardContext): Tensor {
    return this.lin.forward(op.dropout(x, p, ctx.rng.nextU32(), ctx.training));
  }
  /** W b [1, L, d]: the part that depends on the position only. */
  shift(): Tensor {
    return this.lin.forward(this.bias);
  }
}

/** The mixture-of-experts text adaptor (MoEAdaptorLayer) with its gate weights. */
class MoeAdaptor extends Module {
  readonly experts: ModuleList<TextExpert>;
  readonly wGate: Tensor;
  readonly wNoise: Tensor;
  constructor(textDim: number, d: number, cfg: TedrecConfig, rng: Rng) {
    super();
    const list: TextExpert[] = [];
    for (let i = 0; i < cfg.experts; i++) list.push(new TextExpert(textDim, d, cfg.maxLen, rng));
    this.experts = this.child("experts", new ModuleList(list));
    this.wGate = this.param("w_gate", constant([textDim, cfg.experts], 0));
    this.wNoise = this.param("w_noise", constant([textDim, cfg.experts], 0));
  }
}

export class Tedrec extends Module implements SequentialModel {
  readonly kind = "tedrec";
  readonly itemEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  readonly encoder: TransformerEncoder;
  readonly norm: LayerNorm;
  readonly itemGating: Linear;
  readonly fusionGating: Linear;
  readonly adaptor: MoeAdaptor;
  /** W_c as the reference stores it: [1, L/2 + 1, d, 2] (real, imaginary). */
  readonly complexWeight: Tensor;
  /** Frozen text features [(numItems + 1), textDim], row 0 zero: data, not a parameter. */
  readonly textTable: Tensor;

  constructor(readonly cfg: TedrecConfig, items: ItemSide, rng: Rng) {
    super();
    const text = items.text;
    if (!text) {
      throw new UsageError(
        "tedrec needs a text modality: the dataset has no item text features (add item " +
          "metadata or precomputed text features, or choose a model that uses item IDs only)",
      );
    }
    if (text.dim < 1 || text.data.length !== (cfg.numItems + 1) * text.dim) {
      throw new UsageError(
        `tedrec: text features hold ${text.data.length} values, expected ` +
          `(${cfg.numItems} items + 1 padding row) x ${text.dim}`,
      );
    }
    if (cfg.experts < 1) throw new UsageError("tedrec: tedrecExperts must be at least 1");
    const d = cfg.hidden;
    const std = cfg.initStd;
    const table = Float32Array.from(text.data);
    table.fill(0, 0, text.dim); // the padding row (the reference's padding_idx row of zeros)
    this.textTable = keep(tensor(table, [cfg.numItems + 1, text.dim]));
    this.itemEmbedding = this.child("item_embedding", new Embedding(cfg.numItems + 1, d, rng, std));
    this.positionEmbedding = this.child(
      "position_embedding",
      new Embedding(cfg.maxLen, d, rng, std),
    );
    this.encoder = this.child("trm_encoder", new TransformerEncoder(cfg, rng));
    this.norm = this.child("LayerNorm", new LayerNorm(d, cfg.layerNormEps));
    this.itemGating = this.child("item_gating", this.#gate(d, rng));
    this.fusionGating = this.child("fusion_gating", this.#gate(d, rng));
    this.adaptor = this.child("moe_adaptor", new MoeAdaptor(text.dim, d, cfg, rng));
    const bins = op.rfftBins(cfg.maxLen);
    this.complexWeight = this.param("complex_weight", normal([1, bins, d, 2], 0.02, rng));
  }

  /** Linear(d, 1): weight N(0, 0.02), bias torch's default U(±1/√d). */
  #gate(d: number, rng: Rng): Linear {
    const l = new Linear(d, 1, rng, { std: 0.02 });
    const b = uniform([1], 1 / Math.sqrt(d), rng);
    assign(l.bias!, b.toFloat32());
    b.dispose();
    return l;
  }

  /** Every row is transformed at maxLen, padding included. */
  get padsTo(): number {
    return this.cfg.maxLen;
  }

  /**
   * Activations per padded token relative to SASRec's encoder: each expert keeps its dropped
   * text rows and its d outputs, the fusion its spectra, products, inverses and gates (about
   * 20 d). Rows count at maxLen (padsTo); the encoder and the experts' products run at the
   * batch's own length, so on short histories this is an upper bound.
   */
  get memoryFactor(): number {
    const { hidden: d, inner, heads, layers, maxLen, experts } = this.cfg;
    const t = this.textTable.shape[1];
    const encoder = 12 * d + layers * (13 * d + 3 * inner + 3.2 * heads * maxLen) + 64;
    return 1 + (experts * (2 * t + 2 * d + 3) + t + 20 * d) / encoder;
  }

  get needsNegatives(): boolean {
    return this.cfg.loss === "bce";
  }

  /** Standard normal draws for the gate logits [B, L, experts] (from ctx.rng). */
  gateNoise(shape: readonly number[], ctx: ForwardContext): Tensor {
    const n = shape.reduce((p, x) => p * x, 1);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = ctx.rng.normal();
    return tensor(v, shape);
  }

  /**
   * T: the text sequence of a batch padded to L = maxLen through the MoE adaptor, [B, L, d].
   * Each expert's W_i (D(x) - b_i) runs as W_i D(x) - W_i b_i: padded slots (and items without
   * text) have x = 0, so W_i D(x) is computed on the first `len` positions only (the rows'
   * own length) and the position term Σ_i g_i W_i b_i on all L, as one product per position.
   */
  #text(items: Tensor, len: number, ctx: ForwardContext): Tensor {
    const a = this.adaptor;
    const [size, width] = items.shape;
    const x = op.embedding(this.textTable, items);
    let logits = op.matmul(x, a.wGate);
    if (this.cfg.noisyGating && ctx.training) {
      const std = op.addScalar(op.softplus(op.matmul(x, a.wNoise)), 1e-2);
      logits = op.add(logits, op.mul(this.gateNoise(logits.shape, ctx), std));
    }
    const gates = op.softmax(logits);
    const own = (t: Tensor) => len < width ? op.slice(t, 1, 0, len) : t;
    const xOwn = own(x), gOwn = own(gates);
    let text: Tensor | null = null;
    a.experts.items.forEach((expert, i) => {
      const y = op.mul(op.slice(gOwn, 2, i, 1), expert.project(xOwn, this.cfg.adaptorDropout, ctx));
      text = text ? op.add(text, y) : y;
    });
    const d = this.cfg.hidden;
    if (len < width) {
      text = op.concat([
        text!,
        tensor(new Float32Array(size * (width - len) * d), [size, width - len, d]),
      ], 1);
    }
    // Σ_i g_i[p] (W_i b_i)[p]: [L, B, E] @ [L, E, d] -> [L, B, d].
    const shifts = op.transpose(op.concat(a.experts.items.map((e) => e.shift()), 0), [1, 0, 2]);
    const position = op.transpose(op.matmul(op.transpose(gates, [1, 0, 2]), shifts), [1, 0, 2]);
    return op.sub(text!, position);
  }

  /** E[s] with the padding row's lookups cut from its gradient (torch's padding_idx). */
  #items(batch: SequenceBatch, items: Tensor): Tensor {
    const { size, len } = batch;
    const valid = new Float32Array(size * len);
    for (let i = 0; i < valid.length; i++) valid[i] = batch.items[i] === 0 ? 0 : 1;
    const keepMask = tensor(valid, [size, len, 1]);
    const padMask = op.addScalar(op.neg(keepMask), 1);
    const row0 = noGrad(() => op.slice(this.itemEmbedding.weight, 0, 0, 1));
    return op.add(op.mul(this.itemEmbedding.forward(items), keepMask), op.mul(padMask, row0));
  }

  /** X: the sequence-level fusion of the ID and text sequences, [B, L, d]. */
  fuse(batch: SequenceBatch, ctx: ForwardContext, ownLen = batch.len): Tensor {
    const { size, len } = batch;
    const items = tensor(batch.items, [size, len], "i32");
    const d = this.cfg.hidden;
    const bins = op.rfftBins(len);
    // The transforms run along the last axis: sequences as [B, d, L].
    const seqLast = (t: Tensor) => op.transpose(t, [0, 2, 1]);
    const id = op.rfft(seqLast(this.#items(batch, items)), "ortho");
    const text = op.rfft(seqLast(this.#text(items, ownLen, ctx)), "ortho");
    const w = (part: number) =>
      op.transpose(op.reshape(op.slice(this.complexWeight, 3, part, 1), [bins, d]), [1, 0]);
    const itemConv = seqLast(op.irfft(op.complexMul(id, { re: w(0), im: w(1) }), len, "ortho"));
    const fusionConv = seqLast(op.irfft(op.complexMul(text, id), len, "ortho"));
    const gated = (x: Tensor, gate: Linear) => op.mul(x, op.sigmoid(gate.forward(x)));
    return op.scale(
      op.add(gated(itemConv, this.itemGating), gated(fusionConv, this.fusionGating)),
      2,
    );
  }

  /**
   * Hidden states [B, len, d] of the batch's own positions. The fusion transforms each row at
   * maxLen (the reference's L-point spectrum); the encoder then runs on the first `len`
   * positions only: attention is causal and rows are right-padded, so no output at a real item
   * depends on a later slot, and the reference's outputs there are these (the padded slots'
   * are never read). On short histories this is most of the step: Beauty's prefixes average
   * under 8 items against L = 50.
   */
  #encode(full: SequenceBatch, ctx: ForwardContext): Tensor {
    const x = this.fuse(this.#layout(full), ctx, full.len);
    return encodeRows(this, full, full.len < x.shape[1] ? op.slice(x, 1, 0, full.len) : x, ctx);
  }

  /** The batch widened to the reference's transform length. */
  #layout(batch: SequenceBatch): SequenceBatch {
    if (batch.positionTargets) {
      throw new UsageError(
        "tedrec: the frequency-domain filter mixes every position of a sequence, so window " +
          "training would see its targets: use trainMode=prefix",
      );
    }
    return padBatch(batch, this.cfg.maxLen);
  }

  /** The item table the cosine scores use: rows of E scaled to unit length (once per evaluation). */
  #itemTable(ctx: ForwardContext): Tensor {
    return frozenOr(ctx, "tedrec.items", () => op.l2Normalize(this.itemEmbedding.weight));
  }

  /** Sequence representation [B, d]: the unit-length output at the last item. */
  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return op.l2Normalize(gatherAt(this.#encode(batch, ctx), lastPositions(batch)));
  }

  /** CE (or the configured loss) over cos(h, E_i) / τ at the last position. */
  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    const at = lossPositions(batch);
    const h = op.l2Normalize(gatherAt(this.#encode(batch, ctx), lossIndex(at)));
    const main = configuredItemLoss(
      op.scale(h, 1 / this.cfg.temperature),
      this.#itemTable(ctx),
      at,
      this.cfg,
      ctx,
    );
    return { total: main, parts: { main } };
  }

  /** Cosine scores (the reference's full_sort_predict; τ does not change the ranking). */
  scoreAll(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return op.matmul(this.forward(batch, ctx), this.#itemTable(ctx), false, true);
  }

  scoreParts(batch: SequenceBatch, ctx: ForwardContext): { users: Tensor; items: Tensor } {
    return { users: this.forward(batch, ctx), items: this.#itemTable(ctx) };
  }
}
