/**
 * SASRec (Kang & McAuley 2018) as RecBole 1.2.1 implements it: item + learned position
 * embeddings, LayerNorm, dropout, a post-LN transformer encoder, the output at the last valid
 * position, and dot-product scores against the item embedding table. Loss: CE over all items
 * (RecBole's default) or BCE with one sampled negative (paper Eq. 18), at the last position of
 * each prefix (RecBole) or at every position of a window (the original SASRec; trainMode).
 */
import { Embedding, LayerNorm } from "../nn/layers.ts";
import { Module } from "../nn/module.ts";
import type { ForwardContext, SamplingDistribution } from "../nn/context.ts";
import {
  causalPaddingMask,
  type EncoderConfig,
  paddingMask,
  TransformerEncoder,
} from "../nn/transformer.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { type Tensor, tensor } from "../tensor.ts";
import { type LossPositions, lossPositions, type SequenceBatch } from "./batch.ts";
import type { LossOutput, SequentialModel } from "./model.ts";

/** The next-item loss settings of a model's config (configuredItemLoss reads them). */
export interface ItemLossConfig {
  loss: LossKind;
  negatives?: number;
  gbceT?: number;
  /** gbce / sampled: negatives per position, or one draw shared by the micro-batch. */
  negativeSharing?: "position" | "batch";
  /** CE over all items: "auto" (plain for small catalogs, in item blocks above), 0, or block size. */
  ceChunkItems?: op.CeChunkSetting;
  /** CE over all items: the precision of its products with the item table. */
  ceProducts?: op.CeProducts;
}

/** SASRec's config, which the models built on its encoder and losses extend. */
export interface SasrecConfig extends EncoderConfig, ItemLossConfig {
  numItems: number;
  maxLen: number;
  /** SASRec's scoring table: the input item embedding (absent, "tied") or one of its own. */
  outputEmbedding?: "tied" | "separate";
}

/** Flat indices of each row's last valid position in a [B, L] layout. */
export function lastPositions(batch: SequenceBatch): Tensor {
  const idx = new Int32Array(batch.size);
  for (let b = 0; b < batch.size; b++) idx[b] = b * batch.len + batch.lengths[b] - 1;
  return tensor(idx, [batch.size], "i32");
}

/** Gathers rows of h [B, L, d] at flat [B * L] positions `at` [N]: [N, d]. */
export function gatherAt(h: Tensor, at: Tensor): Tensor {
  const [size, len, d] = h.shape;
  return op.embedding(op.reshape(h, [size * len, d]), at);
}

/** The parts of a model that runs SASRec's encoder over an item table it computes itself. */
export interface TableEncoderParts {
  readonly positionEmbedding: Embedding;
  readonly norm: LayerNorm;
  readonly encoder: TransformerEncoder;
  readonly cfg: { hiddenDropout: number };
}

/**
 * SASRec's path over the batch's item embeddings `rows` [B, L, d]: + positions -> LayerNorm ->
 * dropout -> causal encoder. Returns every step's output [B, L, d].
 */
export function encodeRows(
  m: TableEncoderParts,
  batch: SequenceBatch,
  rows: Tensor,
  ctx: ForwardContext,
): Tensor {
  const h0 = encoderInput(m, batch, rows, ctx);
  return m.encoder.forward(h0, causalPaddingMask(batch.items, batch.size, batch.len), ctx);
}

/** The encoder's input: rows + positions -> LayerNorm -> dropout. */
function encoderInput(
  m: TableEncoderParts,
  batch: SequenceBatch,
  rows: Tensor,
  ctx: ForwardContext,
): Tensor {
  const x = m.norm.addForward(rows, m.positionEmbedding.forward(positionIds(batch)));
  return op.dropout(x, m.cfg.hiddenDropout, ctx.rng.nextU32(), ctx.training);
}

/** Each row's last valid step (lengths - 1), on the host. */
function lastSteps(batch: Pick<SequenceBatch, "lengths">): Int32Array {
  return Int32Array.from(batch.lengths, (n) => n - 1);
}

/**
 * `encoder`'s output at each row's last valid step, [B, d]: its last layer runs on those steps
 * alone (TransformerEncoder.forwardAt), the values a full pass gives there, and in training with
 * the full pass's dropout masks at those steps. A loss or score that reads that step alone skips
 * the last layer's work at every other step. `mask`: the batch's causalPaddingMask, when the
 * caller has made it.
 */
export function encodeLastSteps(
  encoder: TransformerEncoder,
  x: Tensor,
  batch: SequenceBatch,
  ctx: ForwardContext,
  mask: Tensor = causalPaddingMask(batch.items, batch.size, batch.len),
): Tensor {
  return encoder.forwardAt(
    x,
    mask,
    paddingMask(batch.items, batch.size, batch.len),
    lastPositions(batch),
    ctx,
    ctx.training ? lastSteps(batch) : undefined,
  );
}

/** encodeRows' output at each row's last valid step only, [B, d] (encodeLastSteps). */
export function encodeRowsLast(
  m: TableEncoderParts,
  batch: SequenceBatch,
  rows: Tensor,
  ctx: ForwardContext,
): Tensor {
  return encodeLastSteps(m.encoder, encoderInput(m, batch, rows, ctx), batch, ctx);
}

/** The sequence vectors [B, d] of encodeOverTable at each row's last valid step (encodeRowsLast). */
export function encodeLastOverTable(
  m: TableEncoderParts,
  batch: SequenceBatch,
  table: Tensor,
  ctx: ForwardContext,
): Tensor {
  const items = tensor(batch.items, [batch.size, batch.len], "i32");
  return encodeRowsLast(m, batch, op.embedding(table, items), ctx);
}

/**
 * encodeOverTable's outputs at the loss positions `at` [N, d]: every step's in window training,
 * in prefix training the last step's through encodeLastOverTable.
 */
export function encodeAtLoss(
  m: TableEncoderParts,
  batch: SequenceBatch,
  table: Tensor,
  at: LossPositions,
  ctx: ForwardContext,
): Tensor {
  if (!batch.positionTargets) return encodeLastOverTable(m, batch, table, ctx);
  return gatherAt(encodeOverTable(m, batch, table, ctx), lossIndex(at));
}

/** scoreParts of a model that scores over an item table it builds: s_u and the table. */
export function tableScoreParts(
  m: TableEncoderParts,
  batch: SequenceBatch,
  table: Tensor,
  ctx: ForwardContext,
): { users: Tensor; items: Tensor } {
  return { users: encodeLastOverTable(m, batch, table, ctx), items: table };
}

/** Every item's score for each sequence: users [B, d] @ items [N + 1, d]^T. */
export function dotScores(parts: { users: Tensor; items: Tensor }): Tensor {
  return op.matmul(parts.users, parts.items, false, true);
}

/** encodeRows over rows of `table` [items + 1, d] gathered at the batch's items. */
export function encodeOverTable(
  m: TableEncoderParts,
  batch: SequenceBatch,
  table: Tensor,
  ctx: ForwardContext,
): Tensor {
  const items = tensor(batch.items, [batch.size, batch.len], "i32");
  return encodeRows(m, batch, op.embedding(table, items), ctx);
}

/** Gathers rows of h [B, L, d] at each sequence's last valid position: [B, d]. */
export function gatherLast(h: Tensor, batch: SequenceBatch): Tensor {
  return gatherAt(h, lastPositions(batch));
}

/** The loss positions' flat indices as a tensor, for gatherAt. */
export function lossIndex(at: LossPositions): Tensor {
  return tensor(at.index, [at.index.length], "i32");
}

/** The last shapes' position ids: a training step asks for the same few shapes every time. */
const positionCache: { size: number; len: number; ids: Int32Array }[] = [];
const POSITION_CACHE_SIZE = 4;

/** Position index of every slot of a [B, L] batch: 0..L-1 on each row. */
export function positionIds(batch: Pick<SequenceBatch, "size" | "len">): Tensor {
  const { size, len } = batch;
  let hit = positionCache.find((c) => c.size === size && c.len === len);
  if (!hit) {
    // One row 0..len-1, then doubling copies: a batch shape is new at most steps (batches are
    // bucketed by length), and a per-element modulo cost more than the rest of the batch setup.
    const ids = new Int32Array(size * len);
    for (let j = 0; j < len; j++) ids[j] = j;
    for (let done = len; done < ids.length; done *= 2) {
      ids.copyWithin(done, 0, Math.min(done, ids.length - done));
    }
    hit = { size, len, ids };
    positionCache.unshift(hit);
    positionCache.length = Math.min(positionCache.length, POSITION_CACHE_SIZE);
  }
  // tensor() hands the array to the backend, which copies it: the cached array stays unchanged.
  return tensor(hit.ids, [size, len], "i32");
}

/**
 * nextItemLoss with the loss settings of a model's config: loss, ceChunkItems, ceProducts and
 * negatives.
 */
export function configuredItemLoss(
  seqOut: Tensor,
  itemTable: Tensor,
  at: LossPositions,
  cfg: ItemLossConfig,
  ctx: ForwardContext,
): Tensor {
  return nextItemLoss(
    seqOut,
    itemTable,
    at,
    cfg.loss,
    cfg.ceChunkItems,
    negativeSampler(cfg, ctx),
    cfg.ceProducts,
  );
}

/**
 * CE over all items or BCE against one sampled negative, from the sequence outputs [N, d] at the
 * loss positions `at`; the mean over those N positions (per token over the batch, as the
 * original SASRec averages its window loss). CE runs on the materialised logits [N x items] while
 * `ceChunkItems` ("auto": while they fit 256 MiB) allows, and in item blocks otherwise. Both run
 * as op.linearCrossEntropy: the materialised path is its one block of every item, the same bits
 * as crossEntropy(matmul(seqOut, itemTable^T)) in fewer passes over the logits.
 */
export function nextItemLoss(
  seqOut: Tensor,
  itemTable: Tensor,
  at: LossPositions,
  kind: LossKind,
  ceChunkItems: op.CeChunkSetting = "auto",
  sampled?: SampledNegatives,
  ceProducts: op.CeProducts = "fp32",
): Tensor {
  const n = at.targets.length;
  if (kind === "gbce" || kind === "sampled") {
    if (!sampled) throw new Error(`${kind} loss needs a negative sampler`);
    return sampledLoss(seqOut, itemTable, at.targets, kind, sampled);
  }
  const targets = tensor(at.targets, [n], "i32");
  if (kind === "ce") {
    // The plain path is one block of every item: its [N x items] logits are materialised once.
    const items = itemTable.shape[0];
    const block = op.ceBlockItems(n, items, ceChunkItems) || items;
    return op.linearCrossEntropy(seqOut, itemTable, targets, block, ceProducts);
  }
  if (!at.negatives) throw new Error("BCE loss needs sampled negatives");
  const negatives = tensor(at.negatives, [n], "i32");
  const pos = op.sum(op.mul(seqOut, op.embedding(itemTable, targets)), -1);
  const neg = op.sum(op.mul(seqOut, op.embedding(itemTable, negatives)), -1);
  return op.bceWithLogits(pos, neg);
}

/** The next-item losses (config key `loss`). */
export type LossKind = "ce" | "bce" | "gbce" | "sampled";

/** Where gbce / sampled draw their negatives: `count` per position, from `rng`. */
export interface SampledNegatives {
  rng: Rng;
  count: number;
  /** gBCE's calibration t. */
  t: number;
  /** Popularity sampling (negativeSampling); absent or null = uniform over all items. */
  distribution?: SamplingDistribution | null;
  /** One draw of `count` negatives for every position of the call (negativeSharing=batch). */
  shared?: boolean;
}

/** The sampler a model's loss uses, from its config and the step's context. */
export function negativeSampler(
  cfg: { negatives?: number; gbceT?: number; negativeSharing?: "position" | "batch" },
  ctx: ForwardContext,
): SampledNegatives {
  return {
    rng: ctx.rng,
    count: cfg.negatives ?? 256,
    t: cfg.gbceT ?? 0.75,
    distribution: ctx.negatives,
    shared: cfg.negativeSharing === "batch",
  };
}

/**
 * Losses over the target and K negatives drawn from all items (collisions with the target are
 * kept, as gSASRec samples): logits [N, 1 + K], the target in column 0.
 * "sampled": softmax cross-entropy over those columns. "gbce" (gSASRec): per position
 * β·softplus(-s⁺) + Σ softplus(s⁻), β = α(t(1 - 1/α) + 1/α) with α = K / (items - 1), so t = 0 is
 * plain BCE and t = 1 undoes the negative sampling's overconfidence; the mean over positions.
 *
 * Popularity-sampled negatives (q(i) not uniform): "sampled" takes the logQ correction, every
 * column's logit minus log q of its item (Yi et al. 2019; with the target column too, as
 * sampled softmax does), so its gradient is again an estimate of full softmax's. "gbce" keeps
 * its logits and takes α per target from the target's own rate of being drawn, α_i = K·q(i):
 * gSASRec's calibration argument (the optimum σ(s) = βp / (βp + α(1 - p)), calibrated at β = α)
 * holds item by item, and β = α(t(1 - 1/α) + 1/α) = 1 - t + t·α_i.
 *
 * With `shared` negatives every position's row holds the same K items (one draw per call), so the
 * negative logits are one [N, d] x [d, K] product over K gathered rows instead of N·K gathered
 * rows; each position's loss is the same function of its logits, only the draws are correlated.
 */
function sampledLoss(
  seqOut: Tensor,
  itemTable: Tensor,
  targets: Int32Array,
  kind: "gbce" | "sampled",
  s: SampledNegatives,
): Tensor {
  if (s.shared) return sharedSampledLoss(seqOut, itemTable, targets, kind, s);
  const n = targets.length;
  const k = s.count;
  const items = itemTable.shape[0] - 1;
  const q = s.distribution ?? null;
  const idx = new Int32Array(n * (k + 1));
  for (let r = 0; r < n; r++) {
    idx[r * (k + 1)] = targets[r];
    if (q) { for (let j = 1; j <= k; j++) idx[r * (k + 1) + j] = q.draw(s.rng); }
    else for (let j = 1; j <= k; j++) idx[r * (k + 1) + j] = 1 + s.rng.int(items);
  }
  // Each position's target and negatives scored against its output: [N, 1+K].
  let logits = op.gatherDots(itemTable, tensor(idx, [n, k + 1], "i32"), seqOut);
  if (kind === "sampled") {
    if (q) {
      const logQ = new Float32Array(idx.length);
      for (let i = 0; i < idx.length; i++) logQ[i] = q.logProb[idx[i]];
      logits = op.sub(logits, tensor(logQ, [n, k + 1]));
    }
    return op.crossEntropy(logits, tensor(new Int32Array(n), [n], "i32"));
  }
  return gbceOf(op.slice(logits, 1, 0, 1), op.slice(logits, 1, 1, k), targets, items, s);
}

/** gBCE from the target logits [N, 1] and the negatives' [N, K]: the mean over positions. */
function gbceOf(
  posLogits: Tensor,
  negLogits: Tensor,
  targets: Int32Array,
  items: number,
  s: SampledNegatives,
): Tensor {
  const n = targets.length;
  const k = s.count;
  const q = s.distribution ?? null;
  const pos = op.softplus(op.neg(posLogits));
  const neg = op.softplus(negLogits);
  let posTerm: Tensor;
  if (q) {
    const beta = new Float32Array(n);
    for (let r = 0; r < n; r++) beta[r] = 1 - s.t + s.t * k * q.prob[targets[r]];
    posTerm = op.sum(op.mul(op.reshape(pos, [n]), tensor(beta, [n])));
  } else {
    const alpha = k / Math.max(1, items - 1);
    const beta = alpha * (s.t * (1 - 1 / alpha) + 1 / alpha);
    posTerm = op.scale(op.sum(pos), beta);
  }
  return op.scale(op.add(posTerm, op.sum(neg)), 1 / n);
}

/** sampledLoss with one draw of K negatives shared by all N positions (negativeSharing=batch). */
function sharedSampledLoss(
  seqOut: Tensor,
  itemTable: Tensor,
  targets: Int32Array,
  kind: "gbce" | "sampled",
  s: SampledNegatives,
): Tensor {
  const n = targets.length;
  const k = s.count;
  const items = itemTable.shape[0] - 1;
  const q = s.distribution ?? null;
  const negIdx = new Int32Array(k);
  for (let j = 0; j < k; j++) negIdx[j] = q ? q.draw(s.rng) : 1 + s.rng.int(items);
  const posRows = op.embedding(itemTable, tensor(targets, [n], "i32"));
  const posLogits = op.reshape(op.sum(op.mul(seqOut, posRows), -1), [n, 1]);
  const negRows = op.embedding(itemTable, tensor(negIdx, [k], "i32"));
  let negLogits = op.matmul(seqOut, negRows, false, true);
  if (kind === "gbce") return gbceOf(posLogits, negLogits, targets, items, s);
  let target = posLogits;
  if (q) {
    const logQt = new Float32Array(n);
    for (let r = 0; r < n; r++) logQt[r] = q.logProb[targets[r]];
    target = op.sub(posLogits, tensor(logQt, [n, 1]));
    const logQ = new Float32Array(k);
    for (let j = 0; j < k; j++) logQ[j] = q.logProb[negIdx[j]];
    negLogits = op.sub(negLogits, tensor(logQ, [1, k]));
  }
  const logits = op.concat([target, negLogits], 1);
  return op.crossEntropy(logits, tensor(new Int32Array(n), [n], "i32"));
}

/**
 * Scores as dot products of the sequence representation with the item embedding table,
 * s_u · E^T: the scoring half of SASRec and of the models built like it.
 */
export abstract class ItemDotModel extends Module {
  abstract readonly cfg: ItemLossConfig;
  abstract readonly itemEmbedding: Embedding;
  /** Sequence representation [B, d]. */
  abstract forward(batch: SequenceBatch, ctx: ForwardContext): Tensor;

  get needsNegatives(): boolean {
    return this.cfg.loss === "bce";
  }

  /** The table scores are dot products with: the item embedding, unless a model has its own. */
  get outputTable(): Tensor {
    return this.itemEmbedding.weight;
  }

  scoreAll(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return op.matmul(this.forward(batch, ctx), this.outputTable, false, true);
  }

  scoreParts(batch: SequenceBatch, ctx: ForwardContext): { users: Tensor; items: Tensor } {
    return { users: this.forward(batch, ctx), items: this.outputTable };
  }

  /**
   * Registers RecBole's `item_embedding` [numItems + 1, d] and `position_embedding` [maxLen, d],
   * N(0, initStd), drawn from rng in that order.
   */
  protected itemAndPositionEmbeddings(cfg: SasrecConfig, rng: Rng): [Embedding, Embedding] {
    const { hidden: d, initStd: std } = cfg;
    return [
      this.child("item_embedding", new Embedding(cfg.numItems + 1, d, rng, std)),
      this.child("position_embedding", new Embedding(cfg.maxLen, d, rng, std)),
    ];
  }
}

export class Sasrec extends ItemDotModel implements SequentialModel {
  readonly kind = "sasrec";
  readonly lastStepLoss = true;
  readonly itemEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  readonly encoder: TransformerEncoder;
  readonly norm: LayerNorm;
  /** gSASRec's separate output table (outputEmbedding "separate"), else null: scores are tied. */
  readonly outputEmbedding: Embedding | null;

  constructor(readonly cfg: SasrecConfig, rng: Rng) {
    super();
    [this.itemEmbedding, this.positionEmbedding] = this.itemAndPositionEmbeddings(cfg, rng);
    this.encoder = this.child("trm_encoder", new TransformerEncoder(cfg, rng));
    this.norm = this.child("LayerNorm", new LayerNorm(cfg.hidden, cfg.layerNormEps));
    // Drawn last, so every other parameter starts as in a tied model of the same seed.
    this.outputEmbedding = cfg.outputEmbedding === "separate"
      ? this.child(
        "output_embedding",
        new Embedding(cfg.numItems + 1, cfg.hidden, rng, cfg.initStd),
      )
      : null;
  }

  override get outputTable(): Tensor {
    return this.outputEmbedding?.weight ?? this.itemEmbedding.weight;
  }

  /** Hidden states of every position [B, L, d]. */
  encode(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return encodeOverTable(this, batch, this.itemEmbedding.weight, ctx);
  }

  /**
   * Sequence representation [B, d]: the output at the last valid position. Outside training the
   * last layer runs at that position only (the same values; see encodeRowsLast).
   */
  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return encodeLastOverTable(this, batch, this.itemEmbedding.weight, ctx);
  }

  /** Next-item loss at the last position, or at every position in window training. */
  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    const at = lossPositions(batch);
    const h = encodeAtLoss(this, batch, this.itemEmbedding.weight, at, ctx);
    const main = configuredItemLoss(h, this.outputTable, at, this.cfg, ctx);
    return { total: main, parts: { main } };
  }
}
