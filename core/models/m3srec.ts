/**
 * M3SRec (Bian, Pan, Zhao, Wang, Wang, Wen; CIKM 2023, "Multi-modal Mixture of Experts
 * Representation Learning for Sequential Recommendation"). The authors' code was never released
 * (RUCAIBox/M3SRec holds only a README), so this file follows the abstract and says which parts
 * are inferred.
 *
 * From the abstract: item representations from several modalities (ID, text, image); a
 * "multi-modal mixture-of-experts fusion network" that fuses them; a sequential recommender over
 * the fused items; training tasks that "mimic the goal of the recommendation" by relating the
 * multi-modal sequential context to the target item.
 *
 * As implemented (m = text, image; E^id the ID table; x^m_i item i's frozen features):
 *   modality MoE adaptor   a^m_i = Σ_k g^m_k(x) W^m_k (drop(x^m_i) - b^m_k),
 *                          g^m = softmax(x^m_i w^m_gate)                                (A)
 *                          a^m_i = 0 where item i lacks modality m (zero fill)
 *   MoE fusion             c_i = [E^id_i; a^text_i; a^image_i]
 *                          e_i = Σ_k f_k(c_i) (V_k c_i + v_k),  f = softmax(U c_i + u)   (F)
 *   encoder                h = Trm(drop(LN(e_{s_t} + P_t))),  s_u = h at the last step  (SASRec)
 *   scores                 y_i = s_u · e_i
 *   loss                   L = L_next(h, e) + λ Σ_m InfoNCE_τ(s_u, a^m_target)            (C)
 * (A) is UniSRec's MoE-enhanced adaptor (the same lab's earlier paper; RUCAIBox/UniSRec
 * unisrec.py MoEAdaptorLayer/PWLayer): parametric-whitening experts, softmax gate on the raw
 * features, dropout on the input. UniSRec's noisy gating is left out, so a forward pass draws no
 * gate noise. (F) is our reading of the fusion network at the item level: experts over the
 * concatenated modality vectors with a softmax gate, so every item has one vector and all items
 * are ranked against one table. (C) is the sequence-item contrastive task of UniSRec's
 * pre-training (cosine / τ, in-batch negatives), one per content modality, over sequences whose
 * next item has that modality (per sequence in window training too); trained jointly with the
 * next-item loss rather than as a separate pre-training stage. Same-target rows in a batch stay
 * negatives of each other (UniSRec masks them in pre-training). Defaults (experts 8, adaptor
 * dropout 0.2, τ 0.07) are UniSRec's; λ = 0.1 is ours. A third-party CTR benchmark
 * (hdu-yzl/MMCTR-Bench) reads the fusion network differently, as attention shared across the
 * modality sequences followed by per-modality and cross-modal MoE feed-forward layers over
 * sequence tokens; that form has no per-item vector to rank all items with, so it is not used.
 *
 * Missing modalities are zero-filled after the adaptor, so a missing item's stored features never
 * reach the output (DuAF-MAT's MAT-MoE generates missing images instead). Without an image
 * modality (Beauty) the model runs on ID and text with a notice.
 */
import { type ForwardContext, frozenOr } from "../nn/context.ts";
import { constant } from "../nn/init.ts";
import { Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { Module, ModuleList } from "../nn/module.ts";
import { TransformerEncoder } from "../nn/transformer.ts";
import * as op from "../ops/mod.ts";
import { Rng } from "../random.ts";
import { keep, type Tensor, tensor } from "../tensor.ts";
import { lossPositions, type SequenceBatch } from "./batch.ts";
import { infoNce } from "./duaf/contrastive.ts";
import type { ItemFeatures, ItemSide } from "./item_side.ts";
import type { LossOutput, SequentialModel } from "./model.ts";
import {
  configuredItemLoss,
  dotScores,
  encodeLastOverTable,
  encodeOverTable,
  gatherAt,
  gatherLast,
  lossIndex,
  type SasrecConfig,
  tableScoreParts,
} from "./sasrec.ts";

export type M3srecModality = "text" | "image";

export interface M3srecConfig extends SasrecConfig {
  modalities: M3srecModality[];
  experts: number;
  adaptorDropout: number;
  auxWeight: number;
  temperature: number;
}

/** UniSRec's parametric whitening expert: W (x - b), no output bias. */
class WhiteningExpert extends Module {
  readonly bias: Tensor;
  readonly lin: Linear;
  constructor(inDim: number, outDim: number, rng: Rng, std: number) {
    super();
    this.bias = this.param("bias", constant([inDim], 0));
    this.lin = this.child("lin", new Linear(inDim, outDim, rng, { std, bias: false }));
  }
  forward(x: Tensor): Tensor {
    return this.lin.forward(op.sub(x, this.bias));
  }
}

/** Σ_k gate_k · expert_k over experts' [n, d] outputs. */
function mixExperts(outs: Tensor[], gate: Tensor): Tensor {
  const [n, d] = outs[0].shape;
  const stacked = op.concat(outs.map((o) => op.reshape(o, [n, 1, d])), 1); // [n, K, d]
  return op.reshape(op.matmul(op.reshape(gate, [n, 1, outs.length]), stacked), [n, d]);
}

/** (A): the MoE adaptor of one modality's frozen features. */
export class MoeAdaptor extends Module {
  readonly experts: ModuleList<WhiteningExpert>;
  readonly wGate: Tensor;
  constructor(inDim: number, outDim: number, experts: number, rng: Rng, std: number) {
    super();
    this.experts = this.child(
      "experts",
      new ModuleList(
        Array.from({ length: experts }, () => new WhiteningExpert(inDim, outDim, rng, std)),
      ),
    );
    // UniSRec starts the gate at zero: every expert weighs 1/K until training moves it.
    this.wGate = this.param("w_gate", constant([inDim, experts], 0));
  }
  /** Gate weights [n, K] of raw features x [n, in]. */
  gate(x: Tensor): Tensor {
    return op.softmax(op.matmul(x, this.wGate));
  }
  forward(x: Tensor, dropout: number, ctx: ForwardContext): Tensor {
    const dropped = op.dropout(x, dropout, ctx.rng.nextU32(), ctx.training);
    return mixExperts(this.experts.items.map((e) => e.forward(dropped)), this.gate(x));
  }
}

/** (F): experts over the concatenated modality vectors, gated per item. */
export class MoeFusion extends Module {
  readonly experts: ModuleList<Linear>;
  readonly gateLayer: Linear;
  constructor(inDim: number, outDim: number, experts: number, rng: Rng, std: number) {
    super();
    this.experts = this.child(
      "experts",
      new ModuleList(
        Array.from({ length: experts }, () => new Linear(inDim, outDim, rng, { std })),
      ),
    );
    this.gateLayer = this.child("gate", new Linear(inDim, experts, rng, { std }));
  }
  gate(c: Tensor): Tensor {
    return op.softmax(this.gateLayer.forward(c));
  }
  forward(c: Tensor): Tensor {
    return mixExperts(this.experts.items.map((e) => e.forward(c)), this.gate(c));
  }
}

interface Content {
  name: M3srecModality;
  features: ItemFeatures;
  /** [n, dim] frozen rows. */
  table: Tensor;
  /** [n, 1] 1 = present. */
  present: Tensor;
  adaptor: MoeAdaptor;
}

/** One forward pass's item tables: adapted modalities [n, d] and the fused table [n, d]. */
export interface M3srecTables {
  adapted: Map<M3srecModality, Tensor>;
  fused: Tensor;
}

export class M3srec extends Module implements SequentialModel {
  readonly kind = "m3srec";
  readonly lastStepLoss = true;
  readonly itemEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  readonly textAdaptor: MoeAdaptor | null = null;
  readonly imageAdaptor: MoeAdaptor | null = null;
  readonly fusion: MoeFusion;
  readonly norm: LayerNorm;
  readonly encoder: TransformerEncoder;
  readonly modalities: ("id" | M3srecModality)[];
  readonly notices: string[] = [];
  readonly #content: Content[] = [];
  /** The fused table while the module is in eval mode: evaluation scores it once, not per batch. */

  constructor(readonly cfg: M3srecConfig, items: ItemSide, rng: Rng) {
    super();
    const d = cfg.hidden;
    const std = cfg.initStd;
    const n = cfg.numItems + 1;
    this.itemEmbedding = this.child("item_embedding", new Embedding(n, d, rng, std));
    this.positionEmbedding = this.child(
      "position_embedding",
      new Embedding(cfg.maxLen, d, rng, std),
    );
    for (const name of ["text", "image"] as const) {
      if (!cfg.modalities.includes(name)) continue;
      const features = items[name];
      if (!features) {
        this.notices.push(`m3srec: no ${name} modality in the dataset; running without it`);
        continue;
      }
      const adaptor = this.child(
        `${name}_adaptor`,
        new MoeAdaptor(features.dim, d, cfg.experts, rng, std),
      );
      if (name === "text") this.textAdaptor = adaptor;
      else this.imageAdaptor = adaptor;
      this.#content.push({
        name,
        features,
        table: keep(tensor(features.data, [n, features.dim])),
        present: keep(tensor(Float32Array.from(features.mask), [n, 1])),
        adaptor,
      });
    }
    this.modalities = ["id", ...this.#content.map((c) => c.name)];
    this.fusion = this.child(
      "fusion",
      new MoeFusion(this.modalities.length * d, d, cfg.experts, rng, std),
    );
    this.norm = this.child("LayerNorm", new LayerNorm(d, cfg.layerNormEps));
    this.encoder = this.child("trm_encoder", new TransformerEncoder(cfg, rng));
  }

  get needsNegatives(): boolean {
    return this.cfg.loss === "bce";
  }

  /** The MoE adaptors run over every item's features each step. */
  get memoryFactor(): number {
    return 1.2;
  }

  /** The fused table for scoring: built once per evaluation (ctx.frozen), else every call. */
  #scoringTable(ctx: ForwardContext): Tensor {
    if (this.training) return this.tables(ctx).fused;
    return frozenOr(ctx, "m3srec.fused", () => this.tables(ctx).fused);
  }

  /** Adapted modality tables (missing rows zero) and the fused item table, all [n, d]. */
  tables(ctx: ForwardContext): M3srecTables {
    const adapted = new Map<M3srecModality, Tensor>();
    for (const c of this.#content) {
      const rows = c.adaptor.forward(c.table, this.cfg.adaptorDropout, ctx);
      adapted.set(c.name, op.mul(rows, c.present));
    }
    const parts = [this.itemEmbedding.weight, ...adapted.values()];
    const fused = this.fusion.forward(parts.length === 1 ? parts[0] : op.concat(parts, 1));
    return { adapted, fused };
  }

  /** Gate weights of every item: each adaptor's [n, K] and the fusion's [n, K]. */
  gates(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const c of this.#content) out[c.name] = c.adaptor.gate(c.table);
    const ctx = { training: false, rng: new Rng(0) };
    const adapted = this.#content.map((c) => op.mul(c.adaptor.forward(c.table, 0, ctx), c.present));
    const parts = [this.itemEmbedding.weight, ...adapted];
    out.fusion = this.fusion.gate(parts.length === 1 ? parts[0] : op.concat(parts, 1));
    return out;
  }

  /** Hidden states of every position [B, L, d] over the fused item table. */
  encode(batch: SequenceBatch, table: Tensor, ctx: ForwardContext): Tensor {
    return encodeOverTable(this, batch, table, ctx);
  }

  /** Sequence representation s_u [B, d]. */
  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return encodeLastOverTable(this, batch, this.#scoringTable(ctx), ctx);
  }

  /**
   * (C): Σ_m InfoNCE between s_u [B, d] and the adapted modality-m vectors of the rows' targets,
   * over rows whose target has modality m. Per sequence in both training modes, as UniSRec's
   * sequence-item task: window training would otherwise contrast every position with every other.
   */
  #contrastive(
    su: Tensor,
    targets: Int32Array,
    adapted: Map<M3srecModality, Tensor>,
  ): Tensor | null {
    let total: Tensor | null = null;
    for (const c of this.#content) {
      const rows: number[] = [];
      for (let r = 0; r < targets.length; r++) if (c.features.mask[targets[r]]) rows.push(r);
      if (rows.length < 2) continue; // one pair has no in-batch negative
      const keepRows = tensor(Int32Array.from(rows), [rows.length], "i32");
      const items = tensor(Int32Array.from(rows, (r) => targets[r]), [rows.length], "i32");
      const term = infoNce(
        op.embedding(su, keepRows),
        op.embedding(adapted.get(c.name)!, items),
        this.cfg.temperature,
      );
      total = total ? op.add(total, term) : term;
    }
    return total;
  }

  /** Next-item loss (last position, or every position in window training) + λ (C). */
  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    const { adapted, fused } = this.tables(ctx);
    const at = lossPositions(batch);
    // Prefix training reads s_u alone: the encoder's last layer runs at the last step only.
    const hidden = batch.positionTargets ? this.encode(batch, fused, ctx) : null;
    const su = hidden ? gatherLast(hidden, batch) : encodeLastOverTable(this, batch, fused, ctx);
    const main = configuredItemLoss(
      hidden ? gatherAt(hidden, lossIndex(at)) : su,
      fused,
      at,
      this.cfg,
      ctx,
    );
    const aux = this.cfg.auxWeight > 0 ? this.#contrastive(su, batch.targets, adapted) : null;
    if (!aux) return { total: main, parts: { main } };
    return { total: op.add(main, op.scale(aux, this.cfg.auxWeight)), parts: { main, aux } };
  }

  scoreAll(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return dotScores(this.scoreParts(batch, ctx));
  }

  scoreParts(batch: SequenceBatch, ctx: ForwardContext): { users: Tensor; items: Tensor } {
    return tableScoreParts(this, batch, this.#scoringTable(ctx), ctx);
  }

  /** The fused item table as inference computes it (no dropout), for export. */
  inferenceTable(): Tensor {
    return this.tables({ training: false, rng: new Rng(0) }).fused;
  }
}
