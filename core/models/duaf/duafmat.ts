/**
 * DuAF-MAT: multimodal item representations (ID, text, image), DuAF user- and time-aware fusion,
 * MAT-MoE reconstruction of missing visual embeddings, a SASRec encoder, and multi-scale
 * contrastive learning (CSCL + VSCL). L = L_main + λ1 L_CSCL + λ2 L_VSCL (+ λ_adv L_gen), Eq. 23.
 *
 * Item tables. Each modality m has a table E^m [numItems+1, d]: the ID embedding, and the frozen
 * text/image features through trainable Linear projections. Missing visual rows are filled by
 * MAT-MoE (a fresh noise draw per step in training; at inference the mean of the generated
 * samples the critic accepts, cached until the model trains again), or — with MAT-MoE off — by
 * zeros, fixed random vectors or the mean of present rows. Train-time modality dropout treats a
 * present image as missing with probability `modalityDropout`, which is what teaches the
 * generators to stand in for real images.
 *
 * Sequence. e_i^m = E^m[item_i] + P_i (Eq. 2); h_i = DuAF(e_i^m, e_time_i, q_i) (fusion.ts), then
 * LayerNorm, dropout and the transformer; s_u is the output at the last step. Items are scored by
 * dot product with the mean of their modality vectors ("fused") or the ID embedding ("id"). The
 * main loss is taken at s_u (one per prefix), or in window training at every step's output; the
 * contrastive and adversarial terms are per sequence (s_u, pooled modality sequences) in both.
 *
 * Update schedule. The main Adam updates everything except the critic. After each main step the
 * critic takes `criticSteps` steps of its own Adam on real vs generated pairs (generators frozen),
 * with the gradient penalty of mat_moe.ts.
 */
import type { DuafConfig } from "../../config.ts";
import { type ForwardContext, frozenOr } from "../../nn/context.ts";
import { Embedding, LayerNorm, Linear } from "../../nn/layers.ts";
import { Module } from "../../nn/module.ts";
import { causalPaddingMask, TransformerEncoder } from "../../nn/transformer.ts";
import * as op from "../../ops/mod.ts";
import { Adam } from "../../optim/adam.ts";
import { Rng } from "../../random.ts";
import { backward, keep, noGrad, type Tensor, tensor, tidy } from "../../tensor.ts";
import { lossPositions, rowShare, type SequenceBatch } from "../batch.ts";
import type { ItemFeatures, ItemSide } from "../item_side.ts";
import type { LossOutput, ModalityWeights, Reconstruction, SequentialModel } from "../model.ts";
import {
  configuredItemLoss,
  encodeLastSteps,
  gatherAt,
  gatherLast,
  lossIndex,
  positionIds,
  type SasrecConfig,
} from "../sasrec.ts";
import { infoNce } from "./contrastive.ts";
import { averageFusion, fuseModalities, prefixMean, ProjectedFusion } from "./fusion.ts";
import { hideImages, meanRows, nearestByText } from "./hidden_images.ts";
import { Critic, criticLoss, generatorLoss, MoeGenerator } from "./mat_moe.ts";
import { TimeEmbedding, timeGaps } from "./time_embedding.ts";
import { buildSimilarityIndex, type SimilarityIndex, virtualSequences } from "./vscl.ts";

export interface DuafMatConfig extends SasrecConfig {
  /** Learning rate of the critic's optimizer (the main one is the trainer's). */
  lr: number;
  duaf: DuafConfig;
}

type ModalityName = "id" | "text" | "image";

/** One forward pass's item tables [numItems+1, d]; real/synthetic are the visual parts. */
interface ItemTables {
  id: Tensor;
  text: Tensor | null;
  image: Tensor | null;
  real: Tensor | null;
  synthetic: Tensor | null;
}

/** Items that a batch's sequences touch, with real images, capped at `cap` (seeded choice). */
function imageItemsSample(mask: Uint8Array, items: Int32Array, cap: number, rng: Rng): Int32Array {
  const set = new Set<number>();
  for (const i of items) if (i > 0 && mask[i]) set.add(i);
  const list = Int32Array.from(set).sort();
  if (list.length <= cap) return list;
  rng.shuffle(list);
  return list.slice(0, cap).sort();
}

export class DuafMat extends Module implements SequentialModel {
  readonly kind = "duafmat";
  readonly lastStepLoss = true;
  readonly modalities: ModalityName[];
  readonly itemEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  readonly textProjection: Linear | null = null;
  readonly imageProjection: Linear | null = null;
  readonly time: TimeEmbedding | null = null;
  /** The attention-form fusion score (fusionScore "projected"); null = Eq. 7. */
  readonly projectedFusion: ProjectedFusion | null = null;
  readonly norm: LayerNorm;
  readonly encoder: TransformerEncoder;
  readonly generator: MoeGenerator | null = null;
  readonly critic: Critic | null = null;
  readonly criticOptimizer: Adam | null = null;
  readonly notices: string[] = [];

  readonly #text: ItemFeatures | null;
  readonly #image: ItemFeatures | null;
  readonly #textTable: Tensor | null = null;
  readonly #imageTable: Tensor | null = null;
  readonly #textPresent: Tensor | null = null;
  readonly #imagePresent: Tensor | null = null;
  readonly #categories: Tensor;
  readonly #categoryOf: Int32Array;
  readonly #randomFill: Map<ModalityName, Tensor> = new Map();
  /** The content features VSCL samples from, per modality; their indexes are built on first need. */
  readonly #vsclFeatures: Map<ModalityName, ItemFeatures> = new Map();
  readonly #similarity: Map<ModalityName, SimilarityIndex> = new Map();
  #inferenceImages: Tensor | null = null;
  /** Items whose images training never sees (hideImages), and the real features. */
  readonly #hidden: { items: Int32Array; features: ItemFeatures } | null;

  constructor(readonly cfg: DuafMatConfig, items: ItemSide, rng: Rng) {
    super();
    const d = cfg.hidden;
    const std = cfg.initStd;
    const dc = cfg.duaf;
    const n = cfg.numItems + 1;
    this.#text = dc.modalities.includes("text") ? items.text : null;
    const image = dc.modalities.includes("image") ? items.image : null;
    const hidden = image && dc.hideImages > 0 ? hideImages(image, dc.hideImages) : null;
    this.#image = hidden?.visible ?? image;
    this.#hidden = hidden ? { items: hidden.items, features: image! } : null;
    this.modalities = [
      "id",
      ...(this.#text ? ["text" as const] : []),
      ...(this.#image ? ["image" as const] : []),
    ];
    if (dc.modalities.includes("text") && !items.text) {
      this.notices.push("duafmat: no text modality in the dataset; using ID only for text");
    }
    if (!this.#image) {
      const off = [dc.matMoe && "MAT-MoE", dc.cscl && "CSCL"].filter(Boolean);
      if (off.length) {
        this.notices.push(`duafmat: no image modality, so ${off.join(" and ")} switched off`);
      }
    }
    this.itemEmbedding = this.child("item_embedding", new Embedding(n, d, rng, std));
    this.positionEmbedding = this.child(
      "position_embedding",
      new Embedding(cfg.maxLen, d, rng, std),
    );
    if (this.#text) {
      this.textProjection = this.child(
        "text_projection",
        new Linear(this.#text.dim, d, rng, { std }),
      );
      this.#textTable = keep(tensor(this.#text.data, [n, this.#text.dim]));
      this.#textPresent = keep(tensor(Float32Array.from(this.#text.mask), [n, 1]));
    }
    if (this.#image) {
      this.imageProjection = this.child(
        "image_projection",
        new Linear(this.#image.dim, d, rng, { std }),
      );
      this.#imageTable = keep(tensor(this.#image.data, [n, this.#image.dim]));
      this.#imagePresent = keep(tensor(Float32Array.from(this.#image.mask), [n, 1]));
    }
    if (dc.fusion && this.modalities.length > 1) {
      this.time = this.child("time_embedding", new TimeEmbedding(dc.timeDim, d, rng, std));
      if (dc.fusionScore === "projected") {
        this.projectedFusion = this.child(
          "fusion",
          new ProjectedFusion(d, this.modalities, rng, cfg.layerNormEps),
        );
      }
    }
    this.norm = this.child("LayerNorm", new LayerNorm(d, cfg.layerNormEps));
    this.encoder = this.child("trm_encoder", new TransformerEncoder(cfg, rng));
    this.#categoryOf = items.itemCategory;
    this.#categories = keep(tensor(items.itemCategory, [n], "i32"));
    if (this.#image && dc.matMoe) {
      const moe = {
        dim: d,
        noiseDim: dc.noiseDim,
        experts: dc.experts,
        expertHidden: dc.expertHidden,
        categories: Math.max(1, items.numCategories),
        categoryDim: dc.categoryDim,
        criticHidden: dc.criticHidden,
        initStd: std,
      };
      this.generator = this.child("mat_moe", new MoeGenerator(moe, rng));
      this.critic = this.child("critic", new Critic(moe, rng));
      this.criticOptimizer = new Adam(this.critic.parameters(), { lr: cfg.lr });
    }
    for (const m of ["text", "image"] as const) {
      const present = m === "text" ? this.#text : this.#image;
      if (!present) continue;
      if (
        dc.missingFill === "random" || (m === "image" && !dc.matMoe && dc.missingFill === "mat")
      ) {
        const v = new Float32Array(n * d);
        for (let i = 0; i < v.length; i++) v[i] = std * rng.normal();
        this.#randomFill.set(m, keep(tensor(v, [n, d])));
      }
      if (dc.vscl) this.#vsclFeatures.set(m, present);
    }
  }

  get needsNegatives(): boolean {
    return this.cfg.loss === "bce";
  }

  /**
   * For the items hidden from training (hideImages): the visual vectors inference uses for them
   * (MAT-MoE's accepted mean, or missingFill), their real features through the trained
   * projection, and two baselines in the same space: the mean of the visible items' vectors, and
   * the vector of the visible item nearest by text features. Null without hidden images.
   */
  reconstruction(): Reconstruction | null {
    if (!this.#hidden || !this.imageProjection || !this.#hidden.items.length) return null;
    const { items, features } = this.#hidden;
    return noGrad(() =>
      tidy(() => {
        const tables = this.#tables({ training: false, rng: new Rng(0) });
        const realAll = this.imageProjection!.forward(
          tensor(features.data, [this.cfg.numItems + 1, features.dim]),
        );
        const ids = tensor(items, [items.length], "i32");
        const visible = this.#image!.mask;
        const neighbour = nearestByText(this.#text, items, visible);
        return {
          dim: this.cfg.hidden,
          items,
          filled: op.embedding(tables.image!, ids).toFloat32(),
          real: op.embedding(realAll, ids).toFloat32(),
          meanOfVisible: meanRows(tables.real!.toFloat32(), visible, this.cfg.hidden),
          textNeighbour: neighbour
            ? op.embedding(tables.real!, tensor(neighbour, [items.length], "i32")).toFloat32()
            : null,
        };
      })
    );
  }

  /** Modality sequences and fusion add ~20% over SASRec; each VSCL view is a second encoder pass. */
  get memoryFactor(): number {
    return 1.2 + (this.cfg.duaf.vscl ? 0.5 * this.#vsclFeatures.size : 0);
  }

  /** The main optimizer's parameters: everything but the critic. */
  trainableParameters(): Tensor[] {
    const criticParams = new Set(this.critic?.parameters() ?? []);
    return this.parameters().filter((p) => !criticParams.has(p));
  }

  auxOptimizers(): Record<string, Adam> {
    return this.criticOptimizer ? { critic: this.criticOptimizer } : {};
  }

  override train(on = true): this {
    super.train(on);
    // Parameters are about to change: the inference-time visual fill must be recomputed.
    this.#inferenceImages?.dispose();
    this.#inferenceImages = null;
    if (on) this.#similarityIndexes();
    return this;
  }

  /**
   * VSCL's nearest-neighbour indexes, built when the model first trains: they take every item's
   * similarity to every other (seconds at 10^4 items, minutes at 10^5), and inference never
   * reads them.
   */
  #similarityIndexes(): SimilarityIndex[] {
    for (const [m, features] of this.#vsclFeatures) {
      if (!this.#similarity.has(m)) {
        this.#similarity.set(m, buildSimilarityIndex(features, this.cfg.duaf.vsclCandidates));
      }
    }
    return [...this.#similarity.values()];
  }

  /** Projected text table [n, d] with missing rows filled. */
  #textRows(): Tensor | null {
    if (!this.textProjection) return null;
    return this.#fill("text", this.textProjection.forward(this.#textTable!), this.#textPresent!);
  }

  /** Present rows kept, absent rows replaced according to `missingFill` (not "mat"). */
  #fill(m: ModalityName, rows: Tensor, present: Tensor): Tensor {
    const kept = op.mul(rows, present);
    const how = this.cfg.duaf.missingFill;
    const random = this.#randomFill.get(m);
    if (random) return op.add(kept, op.mul(random, op.addScalar(op.neg(present), 1)));
    if (how === "mean") {
      const mean = op.div(op.sum(kept, 0, true), op.addScalar(op.sum(present), 1e-6));
      return op.add(kept, op.mul(mean, op.addScalar(op.neg(present), 1)));
    }
    return kept; // "zero" (and "mat" for text, which has no generator)
  }

  /** The row every item would get from missingFill were its image missing: [n, d]. */
  #imageFillRows(rows: Tensor): Tensor {
    const random = this.#randomFill.get("image");
    if (random) return random;
    const none = op.scale(rows, 0);
    if (this.cfg.duaf.missingFill !== "mean") return none;
    const present = this.#imagePresent!;
    const kept = op.mul(rows, present);
    return op.add(none, op.div(op.sum(kept, 0, true), op.addScalar(op.sum(present), 1e-6)));
  }

  /** The generator's condition: the text table when there is one, else the ID table. */
  #condition(textRows: Tensor | null): Tensor {
    return textRows ?? this.itemEmbedding.weight;
  }

  /** Generated visual rows for every item [n, d]: one draw (training) or the accepted mean (eval). */
  #syntheticImages(textRows: Tensor | null, ctx: ForwardContext): Tensor {
    const gen = this.generator!;
    const cond = this.#condition(textRows);
    if (ctx.training) return gen.generate(cond, this.#categories, ctx.rng);
    if (!this.#inferenceImages) {
      this.#inferenceImages = keep(noGrad(() => tidy(() => this.#acceptedMean(cond))));
    }
    return this.#inferenceImages;
  }

  /** e'_v = mean of the S samples with σ(D) > 1/2; all samples where D accepts none. Seeded. */
  #acceptedMean(cond: Tensor): Tensor {
    const s = this.cfg.duaf.inferenceSamples;
    const rng = new Rng(0x6d61); // a fixed stream: inference is a function of the parameters
    const [n, d] = cond.shape;
    const sum = new Float32Array(n * d);
    const all = new Float32Array(n * d);
    const accepted = new Float32Array(n);
    for (let k = 0; k < s; k++) {
      const { sample, ok } = tidy(() => {
        const e = this.generator!.generate(cond, this.#categories, rng);
        return { sample: e.toFloat32(), ok: this.critic!.logit(cond, e).toFloat32() };
      });
      for (let i = 0; i < n; i++) {
        const acc = ok[i] > 0;
        if (acc) accepted[i]++;
        for (let c = 0; c < d; c++) {
          all[i * d + c] += sample[i * d + c];
          if (acc) sum[i * d + c] += sample[i * d + c];
        }
      }
    }
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < d; c++) {
        sum[i * d + c] = accepted[i] ? sum[i * d + c] / accepted[i] : all[i * d + c] / s;
      }
    }
    return tensor(sum, [n, d]);
  }

  /** Per-modality item tables [n, d], plus the real/synthetic visual tables for mixing. */
  #tables(ctx: ForwardContext): ItemTables {
    return frozenOr(ctx, "duafmat.tables", () => this.#makeTables(ctx));
  }

  #makeTables(ctx: ForwardContext): ItemTables {
    const text = this.#textRows();
    let image: Tensor | null = null;
    let real: Tensor | null = null;
    let synthetic: Tensor | null = null;
    if (this.imageProjection) {
      real = this.imageProjection.forward(this.#imageTable!);
      if (this.generator) {
        synthetic = this.#syntheticImages(text, ctx);
        const p = this.#imagePresent!;
        image = op.add(op.mul(real, p), op.mul(synthetic, op.addScalar(op.neg(p), 1)));
      } else {
        image = this.#fill("image", real, this.#imagePresent!);
        // fillDropout: train-time dropped images take the fill's row, as MAT-MoE's take a draw.
        if (ctx.training && this.cfg.duaf.fillDropout) synthetic = this.#imageFillRows(real);
      }
    }
    return { id: this.itemEmbedding.weight, text, image, real, synthetic };
  }

  /** The per-step modality sequences [B, L, d] (Eq. 2), with image modality dropout in training. */
  #sequences(batch: SequenceBatch, ctx: ForwardContext, tables: ItemTables) {
    const idx = tensor(batch.items, [batch.size, batch.len], "i32");
    const pos = this.positionEmbedding.forward(positionIds(batch));
    const seqs: Tensor[] = [op.embeddingAdd(tables.id, idx, pos)];
    if (tables.text) seqs.push(op.embeddingAdd(tables.text, idx, pos));
    if (tables.image) {
      const p = this.cfg.duaf.modalityDropout;
      if (ctx.training && p > 0 && tables.synthetic) {
        // Present images dropped at rate p are replaced by the generators' output.
        const mask = this.#image!.mask;
        const keepMask = new Float32Array(batch.size * batch.len);
        for (let i = 0; i < keepMask.length; i++) {
          keepMask[i] = mask[batch.items[i]] && ctx.rng.uniform() >= p ? 1 : 0;
        }
        const k = tensor(keepMask, [batch.size, batch.len, 1]);
        const real = op.embedding(tables.real!, idx);
        const syn = op.embedding(tables.synthetic, idx);
        const img = op.add(op.mul(real, k), op.mul(syn, op.addScalar(op.neg(k), 1)));
        seqs.push(op.add(img, pos));
      } else seqs.push(op.embeddingAdd(tables.image, idx, pos));
    }
    return seqs;
  }

  /**
   * s_u, the fusion weights and the modality sequences, and in window training the encoder's
   * output at every step (`out`). In prefix training the loss reads s_u alone, so the last layer
   * runs at each row's last step only (encodeLastSteps).
   */
  #encode(batch: SequenceBatch, ctx: ForwardContext, tables: ItemTables) {
    const { x, omega, seqs } = this.#encoderInput(batch, ctx, tables);
    if (!batch.positionTargets) {
      return { out: null, su: encodeLastSteps(this.encoder, x, batch, ctx), omega, seqs };
    }
    const out = this.encoder.forward(x, causalPaddingMask(batch.items, batch.size, batch.len), ctx);
    return { out, su: gatherLast(out, batch), omega, seqs };
  }

  /** s_u alone (scoring, and VSCL's virtual sequences), the last layer at the last step only. */
  #sequenceVector(batch: SequenceBatch, ctx: ForwardContext, tables: ItemTables): Tensor {
    return encodeLastSteps(this.encoder, this.#encoderInput(batch, ctx, tables).x, batch, ctx);
  }

  /** The fused, normalised encoder input [B, L, d] (Eqs. 2-8), with ω and the sequences. */
  #encoderInput(batch: SequenceBatch, ctx: ForwardContext, tables: ItemTables) {
    const seqs = this.#sequences(batch, ctx, tables);
    let h: Tensor;
    let omega: Tensor | null = null;
    if (this.time) {
      const t = tensor(batch.times, [batch.size, batch.len]);
      const gaps = tensor(timeGaps(batch.times, batch.lengths, batch.size, batch.len), [
        batch.size,
        batch.len,
      ]);
      const eTime = this.time.forward(t, gaps).time;
      const query = prefixMean(this.cfg.duaf.query === "id" ? seqs[0] : averageFusion(seqs));
      const scale = this.cfg.duaf.weightScale;
      ({ h, omega } = this.projectedFusion
        ? this.projectedFusion.forward(seqs, eTime, query, scale)
        : fuseModalities(seqs, eTime, query, scale));
    } else h = averageFusion(seqs);
    const x = op.dropout(
      this.norm.forward(h),
      this.cfg.hiddenDropout,
      ctx.rng.nextU32(),
      ctx.training,
    );
    return { x, omega, seqs };
  }

  /** The table every item is scored against; `tables` must be #tables(ctx). */
  #scoreTable(tables: ItemTables, ctx: ForwardContext): Tensor {
    if (this.cfg.duaf.scoreWith === "id") return tables.id;
    return frozenOr(ctx, "duafmat.score", () =>
      averageFusion(
        [tables.id, tables.text, tables.image].filter((t): t is Tensor => t !== null),
      ));
  }

  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return this.#sequenceVector(batch, ctx, this.#tables(ctx));
  }

  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    const dc = this.cfg.duaf;
    const tables = this.#tables(ctx);
    const { out, su, seqs } = this.#encode(batch, ctx, tables);
    // The next-item loss at the last step (s_u itself), or at every step in window training
    // (trainMode); CSCL, VSCL and the adversarial term below stay one per sequence in both modes.
    const at = lossPositions(batch);
    const main = configuredItemLoss(
      out ? gatherAt(out, lossIndex(at)) : su,
      this.#scoreTable(tables, ctx),
      at,
      this.cfg,
      ctx,
    );
    const parts: Record<string, Tensor> = { main };
    let total = main;
    if (dc.cscl && tables.text && tables.image) {
      // Sequence-level representations per modality: mean over valid steps.
      const w = new Float32Array(batch.size * batch.len);
      for (let r = 0; r < batch.size; r++) {
        for (let i = 0; i < batch.lengths[r]; i++) w[r * batch.len + i] = 1 / batch.lengths[r];
      }
      const wt = tensor(w, [batch.size, batch.len, 1]);
      const pool = (s: Tensor) => op.sum(op.mul(s, wt), 1);
      const cscl = infoNce(pool(seqs[1]), pool(seqs[2]), dc.tau, true);
      parts.cscl = cscl;
      total = op.add(total, op.scale(cscl, dc.lambda1));
    }
    const rows = dc.vscl ? rowShare(batch, dc.vsclRows) : 0;
    if (rows > 0 && this.#vsclFeatures.size) {
      const anchor = op.slice(su, 0, 0, rows);
      const terms: Tensor[] = [];
      for (const idx of this.#similarityIndexes()) {
        const virtual = virtualSequences(batch, rows, idx, {
          rate: dc.poissonRate,
          gamma: dc.gamma,
          temperature: dc.lambdaTemp,
          maxLen: this.cfg.maxLen,
        }, ctx.rng);
        terms.push(infoNce(anchor, this.#sequenceVector(virtual, ctx, tables), dc.tau));
      }
      const vscl = averageFusion(terms);
      parts.vscl = vscl;
      total = op.add(total, op.scale(vscl, dc.lambda2));
    }
    if (this.generator && this.critic && tables.real && dc.lambdaAdv > 0) {
      const ids = imageItemsSample(this.#image!.mask, batch.items, 1024, ctx.rng);
      if (ids.length) {
        const idT = tensor(ids, [ids.length], "i32");
        const cond = op.embedding(this.#condition(tables.text), idT);
        const fake = op.embedding(tables.synthetic!, idT);
        const adv = generatorLoss(this.critic.logit(cond, fake));
        parts.adv = adv;
        total = op.add(total, op.scale(adv, dc.lambdaAdv));
      }
    }
    return { total, parts };
  }

  /** Critic updates on real vs generated pairs of the batch's items with images. */
  afterStep(batch: SequenceBatch, ctx: ForwardContext): Record<string, Tensor> {
    if (!this.generator || !this.critic || !this.criticOptimizer) return {};
    const dc = this.cfg.duaf;
    const ids = imageItemsSample(this.#image!.mask, batch.items, 1024, ctx.rng);
    if (!ids.length) return {};
    let last: Tensor | null = null;
    for (let s = 0; s < dc.criticSteps; s++) {
      this.criticOptimizer.zeroGrad();
      last?.dispose();
      last = tidy(() => {
        const idT = tensor(ids, [ids.length], "i32");
        const { cond, real, fake } = noGrad(() => {
          const text = this.#textRows();
          const c = op.embedding(this.#condition(text), idT);
          return {
            cond: c,
            real: op.embedding(this.imageProjection!.forward(this.#imageTable!), idT),
            fake: this.generator!.generate(
              c,
              tensor(ids.map((i) => this.#categoryOf[i]), [ids.length], "i32"),
              ctx.rng,
            ),
          };
        });
        const eps = tensor(Float32Array.from({ length: ids.length }, () => ctx.rng.uniform()), [
          ids.length,
          1,
        ]);
        const loss = op.add(
          criticLoss(this.critic!.logit(cond, real), this.critic!.logit(cond, fake)),
          op.scale(this.critic!.gradientPenalty(dc.gpOn, cond, real, fake, eps), dc.lambdaGp),
        );
        backward(loss);
        this.criticOptimizer!.step();
        return loss;
      });
    }
    this.criticOptimizer.zeroGrad();
    return last ? { critic: last } : {};
  }

  /**
   * The item-side tables inference uses, for `duaf export` to bake into the graph: one
   * [numItems + 1, d] table per entry of `modalities` (missing visual rows already filled by
   * MAT-MoE's accepted mean) and the scoring table. Eval mode; the caller owns the scope.
   */
  inferenceTables(): { modalities: Tensor[]; score: Tensor } {
    const ctx = { training: false, rng: new Rng(0) };
    const tables = this.#tables(ctx);
    const modalities = [tables.id, tables.text, tables.image].filter((t): t is Tensor =>
      t !== null
    );
    return { modalities, score: this.#scoreTable(tables, ctx) };
  }

  scoreAll(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    const { users, items } = this.scoreParts(batch, ctx);
    return op.matmul(users, items, false, true);
  }

  scoreParts(batch: SequenceBatch, ctx: ForwardContext): { users: Tensor; items: Tensor } {
    const tables = this.#tables(ctx);
    return {
      users: this.#sequenceVector(batch, ctx, tables),
      items: this.#scoreTable(tables, ctx),
    };
  }

  explain(batch: SequenceBatch, ctx: ForwardContext): ModalityWeights {
    const names = [...this.modalities];
    const m = names.length;
    const omega = tidy(() => {
      const { omega } = this.#encode(batch, ctx, this.#tables(ctx));
      return omega ? omega.toFloat32() : null;
    });
    return {
      modalities: names,
      imagePresent: this.#image?.mask,
      perRow(row: number, length: number) {
        const out: Record<string, number>[] = [];
        for (let i = 0; i < length; i++) {
          const rec: Record<string, number> = {};
          names.forEach((n, k) => {
            rec[n] = omega ? Number(omega[(row * batch.len + i) * m + k].toFixed(6)) : 1 / m;
          });
          out.push(rec);
        }
        return out;
      },
    };
  }
}
