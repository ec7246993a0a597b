/**
 * BERT4Rec (Sun et al., CIKM 2019) as RecBole 1.2 implements it
 * (recbole/model/sequential_recommender/bert4rec.py, data/transform.py MaskItemSequence).
 *
 * Paper -> code:
 * - Input (Sec. 3.5): h⁰_i = v_i + p_i, item embedding plus learned position, then LayerNorm and
 *   dropout (RecBole). The item table has one extra row, the [mask] token, at id numItems + 1.
 * - Bidirectional Trm layers (Sec. 3.3, Eq. 1-4): the post-LN encoder of core/nn/transformer.ts
 *   with a padding-only mask: every position attends to every non-padding position.
 * - Output layer (Eq. 7): P(v) = softmax(GELU(h^L W^P + b^P) Eᵀ + b^O), with RecBole 1.2's
 *   LayerNorm after the GELU (output_ffn -> GELU -> output_ln) and a bias per item (output_bias,
 *   one per row 0..numItems; row 0 is padding, as RecBole's n_items counts it). E is the input
 *   item table without the [mask] row (shared weights, Sec. 3.5).
 * - Cloze task (Sec. 3.6): each non-padding item is replaced by [mask] with probability
 *   `bert4recMaskRatio`; the loss is CE over all items at the masked positions, mean over them.
 *   With probability `bert4recFtRatio` per batch only each sequence's last item is masked
 *   (RecBole's fine-tuning samples, the paper's "mask the last item" that matches inference).
 * - Inference (Sec. 3.6): [mask] is appended after the last item and its output scores items.
 *
 * Training sequences. The shared trainer hands prefixes (trainMode "prefix": every prefix of a
 * history with its next item) or windows (trainMode "window": each user's last maxLen items with
 * their next items). Either way a training sequence here is the batch row's items followed by
 * its target (batch.targets), the oldest item dropped when that exceeds maxLen, so the target
 * can be masked too; window training's per-position targets are that same sequence shifted, and
 * are not used. "window" is the original BERT4Rec's one sequence per user; "prefix" is RecBole's
 * data (which masks the prefix alone and never sees its target).
 *
 * Deviations from RecBole 1.2, and why:
 * - RecBole's inference always drops the oldest item to fit [mask] (item_seq[:, 1:]), so a
 *   one-item history is scored from [mask] alone; here the oldest item is dropped only when the
 *   history already fills maxLen.
 * - RecBole flags loss positions by `masked_index > 0`, so an item masked at position 0 is hidden
 *   from the input but never a target; here it is a target.
 * - A batch where no item was drawn for masking has each row's last item masked (RecBole would
 *   divide by zero). RecBole's cap of int(maskRatio · maxLen) loss positions per row (the most
 *   recent ones) is kept.
 * - loss = bce draws one uniform negative per masked position (RecBole's BPR draws one not in
 *   the sequence); gbce / sampled draw theirs as every model does (nextItemLoss).
 * - Micro-batches (tokenBudget) each average over their own masked positions and are weighted as
 *   the trainer weights every model's (by their share of the batch's rows or window targets).
 */
import { Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { Module } from "../nn/module.ts";
import type { ForwardContext } from "../nn/context.ts";
import { constant } from "../nn/init.ts";
import { TransformerEncoder } from "../nn/transformer.ts";
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { full, type Tensor, tensor } from "../tensor.ts";
import type { LossPositions, SequenceBatch } from "./batch.ts";
import type { LossOutput, SequentialModel } from "./model.ts";
import {
  configuredItemLoss,
  gatherAt,
  lossIndex,
  positionIds,
  type SasrecConfig,
} from "./sasrec.ts";

export interface Bert4recConfig extends SasrecConfig {
  /** Probability that a training item is replaced by [mask] (RecBole mask_ratio). */
  maskRatio: number;
  /** Probability that a batch masks only each sequence's last item (RecBole ft_ratio). */
  ftRatio: number;
}

/** Right-padded item rows [size, len] with their valid lengths: the encoder's input. */
export interface ItemRows {
  size: number;
  len: number;
  items: Int32Array;
  lengths: Int32Array;
}

/** A masked training batch: the input rows and, at each masked position, the original item. */
export interface MaskedRows {
  input: ItemRows;
  /** Flat [size * len] positions of the loss, with their original items as targets. */
  at: LossPositions;
}

/** Each row's items followed by its target, the oldest item dropped beyond maxLen. */
export function trainingRows(batch: SequenceBatch, maxLen: number): ItemRows {
  const len = Math.min(maxLen, batch.len + 1);
  const items = new Int32Array(batch.size * len);
  const lengths = new Int32Array(batch.size);
  for (let r = 0; r < batch.size; r++) {
    const n = batch.lengths[r];
    const drop = Math.max(0, n + 1 - len);
    const src = r * batch.len;
    for (let j = drop; j < n; j++) items[r * len + j - drop] = batch.items[src + j];
    items[r * len + n - drop] = batch.targets[r];
    lengths[r] = n + 1 - drop;
  }
  return { size: batch.size, len, items, lengths };
}

/** Each row's items with [mask] after the last one, the oldest item dropped beyond maxLen. */
export function inferenceRows(batch: SequenceBatch, maxLen: number, maskToken: number): ItemRows {
  return trainingRows({ ...batch, targets: new Int32Array(batch.size).fill(maskToken) }, maxLen);
}

/**
 * The cloze masking, every draw from `rng`: with probability ftRatio (one draw per batch) each
 * row's last item is masked; otherwise each non-padding item with probability maskRatio, the
 * loss kept at each row's most recent `cap` masked positions. Padding is never masked.
 */
export function maskRows(
  rows: ItemRows,
  rng: Rng,
  maskRatio: number,
  ftRatio: number,
  cap: number,
  maskToken: number,
): MaskedRows {
  const { size, len, lengths } = rows;
  const items = rows.items.slice();
  const index: number[] = [];
  const lastOnly = rng.uniform() < ftRatio;
  if (!lastOnly) {
    const row: number[] = [];
    for (let r = 0; r < size; r++) {
      row.length = 0;
      for (let j = 0; j < lengths[r]; j++) {
        if (rng.uniform() < maskRatio) {
          items[r * len + j] = maskToken;
          row.push(r * len + j);
        }
      }
      index.push(...row.slice(Math.max(0, row.length - cap)));
    }
  }
  if (index.length === 0) {
    for (let r = 0; r < size; r++) {
      const at = r * len + lengths[r] - 1;
      items[at] = maskToken;
      index.push(at);
    }
  }
  const idx = Int32Array.from(index);
  return {
    input: { size, len, items, lengths },
    at: { index: idx, targets: idx.map((i) => rows.items[i]) },
  };
}

/** Additive attention mask [B, 1, 1, L]: 0 on items, -10000 on padding keys (no causal part). */
export function paddingMask(items: Int32Array, size: number, len: number): Tensor {
  const m = new Float32Array(size * len);
  for (let i = 0; i < m.length; i++) m[i] = items[i] === 0 ? -10000 : 0;
  return tensor(m, [size, 1, 1, len]);
}

export class Bert4rec extends Module implements SequentialModel {
  readonly kind = "bert4rec";
  readonly itemEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  readonly encoder: TransformerEncoder;
  readonly norm: LayerNorm;
  readonly outputFfn: Linear;
  readonly outputNorm: LayerNorm;
  /** b^O: one bias per item row 0..numItems. */
  readonly outputBias: Tensor;
  /** The [mask] token's item id. */
  readonly maskToken: number;

  constructor(readonly cfg: Bert4recConfig, rng: Rng) {
    super();
    if (cfg.hidden % cfg.heads !== 0) throw new Error("hidden must be a multiple of heads");
    const std = cfg.initStd;
    this.maskToken = cfg.numItems + 1;
    this.outputBias = this.param("output_bias", constant([cfg.numItems + 1], 0));
    this.itemEmbedding = this.child(
      "item_embedding",
      new Embedding(cfg.numItems + 2, cfg.hidden, rng, std),
    );
    this.positionEmbedding = this.child(
      "position_embedding",
      new Embedding(cfg.maxLen, cfg.hidden, rng, std),
    );
    this.encoder = this.child("trm_encoder", new TransformerEncoder(cfg, rng));
    this.norm = this.child("LayerNorm", new LayerNorm(cfg.hidden, cfg.layerNormEps));
    this.outputFfn = this.child("output_ffn", new Linear(cfg.hidden, cfg.hidden, rng, { std }));
    this.outputNorm = this.child("output_ln", new LayerNorm(cfg.hidden, cfg.layerNormEps));
  }

  get needsNegatives(): boolean {
    return false;
  }

  /** Encoder states of every position [B, L, d] (before the output layer). */
  encode(rows: ItemRows, ctx: ForwardContext): Tensor {
    const { size, len } = rows;
    const ids = tensor(rows.items, [size, len], "i32");
    const x = op.add(
      this.itemEmbedding.forward(ids),
      this.positionEmbedding.forward(positionIds(rows)),
    );
    const h0 = op.dropout(
      this.norm.forward(x),
      this.cfg.hiddenDropout,
      ctx.rng.nextU32(),
      ctx.training,
    );
    return this.encoder.forward(h0, paddingMask(rows.items, size, len), ctx);
  }

  /** Eq. 7's transform GELU(h W^P + b^P), then RecBole's LayerNorm: [N, d] -> [N, d]. */
  outputLayer(h: Tensor): Tensor {
    return this.outputNorm.forward(op.gelu(this.outputFfn.forward(h)));
  }

  /** Output-layer states [N, d] at flat positions `at` of the rows. */
  outputAt(rows: ItemRows, at: Tensor, ctx: ForwardContext): Tensor {
    return this.outputLayer(gatherAt(this.encode(rows, ctx), at));
  }

  /** The same with a ones column [N, d + 1], which meets the bias column of scoringTable. */
  private outputsAt(rows: ItemRows, at: Tensor, ctx: ForwardContext): Tensor {
    const h = this.outputAt(rows, at, ctx);
    return op.concat([h, full([h.shape[0], 1], 1)], 1);
  }

  /** [E; b^O]: the item rows 0..numItems (no [mask]) with their biases, [numItems + 1, d + 1]. */
  scoringTable(): Tensor {
    const n = this.cfg.numItems + 1;
    const e = op.slice(this.itemEmbedding.weight, 0, 0, n);
    return op.concat([e, op.reshape(this.outputBias, [n, 1])], 1);
  }

  /** Loss at the masked positions of an already masked input (the golden test's entry). */
  maskedLoss(masked: MaskedRows, ctx: ForwardContext): Tensor {
    const { at } = masked;
    if (this.cfg.loss === "bce") {
      const negatives = new Int32Array(at.targets.length);
      for (let i = 0; i < negatives.length; i++) negatives[i] = 1 + ctx.rng.int(this.cfg.numItems);
      masked = { ...masked, at: { ...at, negatives } };
    }
    return configuredItemLoss(
      this.outputsAt(masked.input, lossIndex(at), ctx),
      this.scoringTable(),
      masked.at,
      this.cfg,
      ctx,
    );
  }

  /** The cloze loss on the batch's training sequences (items then target), masks from ctx.rng. */
  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput {
    const rows = trainingRows(batch, this.cfg.maxLen);
    const cap = Math.max(1, Math.floor(this.cfg.maskRatio * this.cfg.maxLen));
    const masked = maskRows(
      rows,
      ctx.rng,
      this.cfg.maskRatio,
      this.cfg.ftRatio,
      cap,
      this.maskToken,
    );
    const main = this.maskedLoss(masked, ctx);
    return { total: main, parts: { main } };
  }

  /** Sequence representation [B, d + 1]: the output at the appended [mask], with a ones column. */
  forward(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    const rows = inferenceRows(batch, this.cfg.maxLen, this.maskToken);
    const last = new Int32Array(rows.size);
    for (let r = 0; r < rows.size; r++) last[r] = r * rows.len + rows.lengths[r] - 1;
    return this.outputsAt(rows, tensor(last, [rows.size], "i32"), ctx);
  }

  scoreAll(batch: SequenceBatch, ctx: ForwardContext): Tensor {
    return op.matmul(this.forward(batch, ctx), this.scoringTable(), false, true);
  }

  scoreParts(batch: SequenceBatch, ctx: ForwardContext): { users: Tensor; items: Tensor } {
    return { users: this.forward(batch, ctx), items: this.scoringTable() };
  }
}
