/**
 * IISAN (Fu, Ge, Ma, Xu, Wang, Zhang, Chen, Jose; SIGIR 2024, "IISAN: Efficiently Adapting
 * Multimodal Representation for Sequential Recommendation with Decoupled PEFT") in its cached
 * form, as the authors' code implements it (github.com/GAIR-Lab/IISAN, Code_Cached/model/
 * model.py IISANAdaptedMModel and ModelMM, modules.py AdapterBlock). The frozen backbones' layer
 * states are cached once per item (preprocess --image-layers, --*-layer-features; docs/
 * features.md): training never runs a backbone, it only adapts their hidden states.
 *
 * Per modality m (text t, image v) with cached layer states h^m_1..h^m_K (k = 1..K):
 *   layer projection      x^m_k = P^m_k h^m_k                      to the side width D (ours, below)
 *   intra-modal SAN       s^m_0 = 0
 *                         α^m_k = σ(γ^m_k / 0.1),  γ^m_k = 0 at start   (the paper's gated fusion)
 *                         s^m_k = A^m_k(α^m_k x^m_k + (1 - α^m_k) s^m_{k-1})
 *   adapter block         A(x) = x + W_up act(W_down x + b_down) + b_up,  W_* ~ N(0, 0.01²)
 *   inter-modal SAN       u_0 = 0,  β_k = σ(δ_k / 0.1)
 *                         u_k = A^mm_k(u_{k-1} + β_k x^v_k + (1 - β_k) x^t_k)
 *   modality outputs      e^m = W^m_down (F^m s^m_K + c^m) + b^m,  e^mm = W_down (F u_K + c) + b
 *                         (fc_cv/fc_bert/fc_mm then cv_pre_fc/bert_pre_fc/fc_mm_down)
 *   item embedding        e_i = W_c [e^v_i; e^t_i; e^mm_i] + b_c     (com_dense, "intra_inter")
 *   sequence encoder      h = Trm(drop(LN(e_{s_t} + P_t))),  s_u = h at the last step
 *   scores                y_i = s_u · e_i
 * The reference's LayerDrop keeps every other backbone layer (side_adapter_*_list "1,3,5,7,9,11"
 * plus the embedding output); here the kept layers are the ones cached (--image-layers K picks K
 * evenly spaced blocks), so the side networks have one step per cached layer.
 *
 * Differences from the reference, and why:
 * - Layer projection P^m_k: BERT-base and ViT-B states are all 768 wide, so the reference's side
 *   network runs at 768. Cached MobileNetV2 block outputs have different widths (16..1280) and
 *   TF-IDF/GloVe text is 64..100 wide, so each layer is first projected to the side width D
 *   (iisanSideDim). Users with equal-width BERT/ViT states still get the projection.
 * - Text layers: TF-IDF + SVD and GloVe have no layers; without text layer states the text tower
 *   runs with one step over the dataset's text features (docs/features.md). When the modalities
 *   have different layer counts, inter step k (of K = max K_m) takes layer floor(k K_m / K) of
 *   each (0-based), so the last step always sees both modalities' last layers.
 * - A missing modality: its intra SAN and the inter SAN are left out (with a notice) and
 *   com_dense takes what remains. Items without a modality's features keep zero layer states.
 * - Loss: the reference trains with an in-batch softmax over the batch's items with popularity
 *   debiasing (logits - log pop). Here the shared next-item loss runs over item embeddings
 *   computed from the adapted features of every item: `loss=ce` (default) is exact softmax over
 *   all items; `loss=sampled` with `negativeSampling=popularity` (popularity-drawn negatives,
 *   logits minus log q) is the closest counterpart of the reference's debiased in-batch softmax.
 * - Initialisation: projections, fc, fc_down and com_dense at PyTorch's default Linear scale
 *   (the reference leaves them at torch's defaults), adapters N(0, 0.01²) as the reference's.
 * - Encoder: the shared SASRec transformer (GELU, LayerNorm eps layerNormEps) instead of the
 *   reference's user encoder (ReLU feed-forward, eps 1e-6).
 */
import { type ForwardContext, frozenOr } from "../nn/context.ts";
import { constant } from "../nn/init.ts";
import { Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { Module, ModuleList } from "../nn/module.ts";
import { TransformerEncoder } from "../nn/transformer.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { keep, noGrad, type Tensor, tensor } from "../tensor.ts";
import { lossPositions, type SequenceBatch } from "./batch.ts";
import type { ItemLayers, ItemSide } from "./item_side.ts";
import type { LossOutput, SequentialModel } from "./model.ts";
import {
  configuredItemLoss,
  dotScores,
  encodeAtLoss,
  encodeLastOverTable,
  encodeOverTable,
  type SasrecConfig,
  tableScoreParts,
} from "./sasrec.ts";

export interface IisanConfig extends SasrecConfig {
  /** Side network width D. */
  sideDim: number;
  /** Adapter bottleneck width (cv/bert_adapter_down_size). */
  adapterDown: number;
  adapterActivation: "relu" | "gelu";
  /** Temperature of the gates σ(γ / T) (0.1 in the reference). */
  gateTemperature: number;
}

/**
 * The side networks' projections keep PyTorch's default Linear scale (variance 1/(3 fan_in), the
 * reference leaves them at torch's U(±1/√fan_in)): four chained N(0, initStd²) layers would
 * shrink every item embedding to ~1e-6 and train no further.
 */
function torchLinear(inDim: number, outDim: number, rng: Rng): Linear {
  return new Linear(inDim, outDim, rng, { std: 1 / Math.sqrt(3 * inDim) });
}

/** AdapterBlock: x + W_up act(W_down x + b_down) + b_up. */
export class AdapterBlock extends Module {
  readonly down: Linear;
  readonly up: Linear;
  constructor(dim: number, bottleneck: number, readonly act: "relu" | "gelu", rng: Rng) {
    super();
    this.down = this.child("fc_down", new Linear(dim, bottleneck, rng, { std: 1e-2 }));
    this.up = this.child("fc_up", new Linear(bottleneck, dim, rng, { std: 1e-2 }));
  }
  forward(x: Tensor): Tensor {
    const z = this.down.forward(x);
    return op.add(this.up.forward(this.act === "gelu" ? op.gelu(z) : op.relu(z)), x);
  }
}

/** Per-layer projections P_k of one modality's cached layers to the side width. */
export class LayerProjection extends Module {
  readonly proj: ModuleList<Linear>;
  readonly offsets: number[];
  constructor(readonly widths: number[], sideDim: number, rng: Rng) {
    super();
    this.proj = this.child(
      "proj",
      new ModuleList(widths.map((w) => torchLinear(w, sideDim, rng))),
    );
    this.offsets = [];
    let at = 0;
    for (const w of widths) {
      this.offsets.push(at);
      at += w;
    }
  }
  /** x_k [n, D] of the concatenated layer rows [n, Σ widths]. */
  forward(table: Tensor): Tensor[] {
    return this.proj.items.map((p, k) =>
      p.forward(op.slice(table, 1, this.offsets[k], this.widths[k]))
    );
  }
}

/**
 * A side adapted network: one adapter block and one scalar gate per step over the layer states,
 * then fc and fc_down to the model width. The intra- and inter-modal networks differ only in what
 * each step's gate mixes.
 */
abstract class SideNetwork extends Module {
  readonly adapters: ModuleList<AdapterBlock>;
  readonly gates: Tensor[];
  readonly fc: Linear;
  readonly down: Linear;
  constructor(readonly steps: number, cfg: IisanConfig, rng: Rng) {
    super();
    const dim = cfg.sideDim;
    this.adapters = this.child(
      "adapters",
      new ModuleList(
        Array.from(
          { length: steps },
          () => new AdapterBlock(dim, cfg.adapterDown, cfg.adapterActivation, rng),
        ),
      ),
    );
    // One scalar gate logit per step, starting at 0 (σ = 0.5) as the reference's.
    this.gates = Array.from(
      { length: steps },
      (_, k) => this.param(`gates.${k}`, constant([1], 0)),
    );
    this.fc = this.child("fc", torchLinear(dim, dim, rng));
    this.down = this.child("fc_down", torchLinear(dim, cfg.hidden, rng));
  }

  /** σ(gate_k / temperature). */
  protected gate(k: number, temperature: number): Tensor {
    return op.sigmoid(op.scale(this.gates[k], 1 / temperature));
  }
}

/** The intra-modal side adapted network of one modality. */
export class IntraSan extends SideNetwork {
  forward(x: Tensor[], temperature: number): Tensor {
    let s: Tensor | null = null;
    this.adapters.items.forEach((a, k) => {
      const g = this.gate(k, temperature);
      const fused: Tensor = s === null
        ? op.mul(x[k], g) // s_0 = 0
        : op.add(op.mul(x[k], g), op.mul(s, op.addScalar(op.neg(g), 1)));
      s = a.forward(fused);
    });
    return this.down.forward(this.fc.forward(s!));
  }
}

/** The inter-modal side adapted network over both modalities' layers. */
export class InterSan extends SideNetwork {
  forward(image: Tensor[], text: Tensor[], temperature: number): Tensor {
    let u: Tensor | null = null;
    const at = (layers: Tensor[], k: number) => layers[Math.floor(k * layers.length / this.steps)];
    this.adapters.items.forEach((a, k) => {
      const g = this.gate(k, temperature);
      const mix = op.add(op.mul(at(image, k), g), op.mul(at(text, k), op.addScalar(op.neg(g), 1)));
      u = a.forward(u === null ? mix : op.add(u, mix));
    });
    return this.down.forward(this.fc.forward(u!));
  }
}

interface Tower {
  name: "text" | "image";
  layers: ItemLayers;
  /** [n, Σ widths] frozen rows. */
  table: Tensor;
  projection: LayerProjection;
  san: IntraSan;
}

/** Layer states of a modality: the cached layers, else its one feature vector as one layer. */
export function modalityLayers(items: ItemSide, name: "text" | "image"): ItemLayers | null {
  const layers = name === "text" ? items.textLayers : items.imageLayers;
  if (layers) return layers;
  const f = items[name];
  return f ? { widths: [f.dim], data: f.data } : null;
}

export class Iisan extends Module implements SequentialModel {
  readonly kind = "iisan";
  readonly lastStepLoss = true;
  readonly positionEmbedding: Embedding;
  readonly towers: Tower[] = [];
  readonly inter: InterSan | null = null;
  readonly combine: Linear;
  readonly norm: LayerNorm;
  readonly encoder: TransformerEncoder;
  readonly notices: string[] = [];

  constructor(readonly cfg: IisanConfig, items: ItemSide, rng: Rng) {
    super();
    const d = cfg.hidden;
    const std = cfg.initStd;
    const n = cfg.numItems + 1;
    this.positionEmbedding = this.child(
      "position_embedding",
      new Embedding(cfg.maxLen, d, rng, std),
    );
    // Image first: com_dense's input is [image; text; inter] as the reference concatenates it.
    for (const name of ["image", "text"] as const) {
      const layers = modalityLayers(items, name);
      if (!layers) {
        this.notices.push(`iisan: no ${name} modality in the dataset; running without it`);
        continue;
      }
      const width = layers.widths.reduce((a, b) => a + b, 0);
      if (layers.data.length !== n * width) {
        throw new Error(
          `iisan: ${name} layer states hold ${layers.data.length} values, expected ` +
            `(${cfg.numItems} items + 1) x ${width}`,
        );
      }
      const projection = this.child(
        `${name}_proj`,
        new LayerProjection(layers.widths, cfg.sideDim, rng),
      );
      const san = this.child(`${name}_san`, new IntraSan(layers.widths.length, cfg, rng));
      this.towers.push({
        name,
        layers,
        table: keep(tensor(layers.data, [n, width])),
        projection,
        san,
      });
    }
    if (this.towers.length === 0) {
      throw new Error("iisan needs a text or image modality (preprocess with features)");
    }
    if (this.towers.length === 2) {
      const steps = Math.max(...this.towers.map((t) => t.layers.widths.length));
      this.inter = this.child("mm_san", new InterSan(steps, cfg, rng));
    } else {
      this.notices.push("iisan: one modality only; the inter-modal SAN is left out");
    }
    const parts = this.towers.length + (this.inter ? 1 : 0);
    this.combine = this.child("com_dense", torchLinear(parts * d, d, rng));
    this.norm = this.child("LayerNorm", new LayerNorm(d, cfg.layerNormEps));
    this.encoder = this.child("trm_encoder", new TransformerEncoder(cfg, rng));
  }

  get needsNegatives(): boolean {
    return this.cfg.loss === "bce";
  }

  /** The side networks run over every item's layer states each step. */
  get memoryFactor(): number {
    return 1.2;
  }

  /** Layer counts per modality, for the run's notes. */
  layerCounts(): Record<string, number> {
    return Object.fromEntries(this.towers.map((t) => [t.name, t.layers.widths.length]));
  }

  /** Item embeddings e_i of every item [n, d] from the adapted layer states. */
  itemTable(): Tensor {
    const t = this.cfg.gateTemperature;
    const projected = this.towers.map((tw) => tw.projection.forward(tw.table));
    const outs = this.towers.map((tw, i) => tw.san.forward(projected[i], t));
    if (this.inter) outs.push(this.inter.forward(projected[0], projected[1], t));
    return this.combine.forward(outs.length === 1 ? outs[0] : op.concat(outs, 1));
  }

  /** The item table for scoring: built once per evaluation (ctx.frozen), else every call. */
  #scoringTable(ctx: ForwardContext): Tensor {
    if (this.training) return this.itemTable();
    return frozenOr(ctx, "iisan.items", () => this.itemTable());
  }

  /** Hidden states of every position [B, L, d] over the item table. */
  encode(batch: SequenceBatch, table: Tensor, ctx: ForwardContext): Tensor {
    return encodeOverTable(this, batch, table, ctx);
  }

  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return encodeLastOverTable(this, batch, this.#scoringTable(ctx), ctx);
  }

  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    const table = this.itemTable();
    const at = lossPositions(batch);
    const main = configuredItemLoss(
      encodeAtLoss(this, batch, table, at, ctx),
      table,
      at,
      this.cfg,
      ctx,
    );
    return { total: main, parts: { main } };
  }

  scoreAll(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return dotScores(this.scoreParts(batch, ctx));
  }

  scoreParts(batch: SequenceBatch, ctx: ForwardContext): { users: Tensor; items: Tensor } {
    return tableScoreParts(this, batch, this.#scoringTable(ctx), ctx);
  }

  /** The item table as inference computes it, for export. */
  inferenceTable(): Tensor {
    return noGrad(() => this.itemTable());
  }
}
