/**
 * Peak memory of a training run, estimated from its configuration and the dataset's sizes before
 * the first step, so a run that cannot fit stops at once with the key to change instead of
 * failing in its first step (or, worse, in its first validation after an epoch of work).
 *
 * peak = resident + max(training step, evaluation batch), with
 * - resident: parameters, their gradients and Adam's two moments (4 floats a parameter), and the
 *   item feature tables a model uploads (text, image);
 * - training step: the micro-batch's activations kept for backward (padded tokens x floats per
 *   token, from the model's shape, times its memoryFactor) plus the loss's own tensors: full CE's
 *   [positions x items] logits, or its [positions x block] scratch when chunked; the sampled
 *   losses' [positions x (1 + negatives) x d] candidate rows and their gradient;
 * - evaluation: one batch's forward pass and its [users x items] scores (or [users x 8192] block),
 *   plus the packed item table where the backend fuses scoring and ranking.
 *
 * The per-token constants were fitted to the wasm arena's measured peaks (docs/scale.md lists
 * measured against estimated); they round up, so the estimate errs above the real peak.
 */
import type { Backend } from "../backend.ts";
import type { TrainConfig } from "../config.ts";
import { formatBytes, ResourceError } from "../errors.ts";
import { DEFAULT_BLOCK_ITEMS } from "../eval/block_rank.ts";
import { ranksInBlocks } from "../eval/evaluate.ts";
import { ceBlockItems } from "../ops/linear_ce.ts";

const F32 = 4;

/** Sizes of the dataset and model the estimate needs. */
export interface MemoryInputs {
  numItems: number;
  /** Floats of all parameters (item table included). */
  params: number;
  /** Floats of the feature tables the model keeps on the backend (text, image). */
  features: number;
  /** The model's activation weight relative to SASRec (SequentialModel.memoryFactor). */
  memoryFactor: number;
  /**
   * Prefix training of a model whose loss reads the last step alone (SequentialModel.lastStepLoss):
   * its encoder's last layer keeps only keys and values a token.
   */
  lastStepLoss: boolean;
  /**
   * Floats of the item table's packed copy that evaluation ranks with where the backend fuses
   * scoring and ranking (Backend.rankPackFloats; 0 elsewhere).
   */
  rankPackFloats?: number;
  /** The backend's wholeScoresBytes, as evaluation takes it (ranksInBlocks). */
  wholeScoresBytes?: number;
  /** Padded tokens per micro-batch (trainer's microBatchTokens; 0 = no split). */
  microTokens: number;
  /** Longest training history: min(maxLen, longest user's training items - 1). */
  trainLen: number;
  /** Padded tokens and loss positions of the heaviest training micro-batch. */
  trainTokens: number;
  lossPositions: number;
  /** Padded tokens of evaluation's largest batch, and its longest history. */
  evalTokens: number;
  evalLen: number;
}

/**
 * Sizes for the estimate from the dataset's sequences. Training: a micro-batch padded to the
 * longest history; in prefix training a batch of short rows splits into fewer micro-batches, so
 * one holds up to batchSize loss positions; in window training its positions are the valid
 * tokens of its rows, at most those of the longest windows. Evaluation sorts users by history
 * length as core/eval/evaluate.ts does (batches pad only to their own longest history).
 */
export function sequenceSizes(
  src: { numUsers: number; seqOffsets: Int32Array },
  cfg: Pick<TrainConfig, "maxLen" | "batchSize" | "evalBatchSize" | "trainMode">,
  microTokens: number,
  padsTo = 0,
): Omit<
  MemoryInputs,
  "numItems" | "params" | "features" | "memoryFactor" | "lastStepLoss" | "microTokens"
> {
  const { maxLen, batchSize, evalBatchSize } = cfg;
  const windows: number[] = [];
  const hist: number[] = [];
  for (let u = 0; u < src.numUsers; u++) {
    const n = src.seqOffsets[u + 1] - src.seqOffsets[u];
    // Rows as the model runs them: at least padsTo long (SequentialModel.padsTo).
    if (n >= 4) windows.push(Math.max(padsTo, Math.min(maxLen, n - 3)));
    // The test example's history (n - 1 items) is the longer of the two splits'.
    if (n >= 2) hist.push(Math.max(padsTo, Math.min(maxLen, n - 1)));
  }
  windows.sort((a, b) => b - a);
  const trainLen = Math.max(1, windows[0] ?? 1);
  const split = microTokens > 0 && batchSize * trainLen > microTokens;
  let trainTokens: number;
  let lossPositions: number;
  if (cfg.trainMode === "window") {
    const rows = Math.min(
      windows.length || 1,
      split ? Math.max(1, Math.floor(microTokens / trainLen)) : batchSize,
    );
    trainTokens = rows * trainLen;
    lossPositions = 0;
    for (let r = 0; r < rows && r < windows.length; r++) lossPositions += windows[r];
    lossPositions = Math.max(1, lossPositions);
  } else {
    trainTokens = split ? microTokens : batchSize * trainLen;
    lossPositions = Math.min(batchSize, trainTokens);
  }
  hist.sort((a, b) => a - b);
  let evalTokens = 0;
  for (let from = 0; from < hist.length; from += evalBatchSize) {
    const to = Math.min(hist.length, from + evalBatchSize);
    evalTokens = Math.max(evalTokens, (to - from) * hist[to - 1]);
  }
  const evalLen = hist.length ? hist[hist.length - 1] : 1;
  return { trainLen, trainTokens, lossPositions, evalTokens, evalLen };
}

export interface MemoryTerm {
  /** What it is, for the message ("CE logits [2048 x 12102]"). */
  what: string;
  bytes: number;
  /** What to change when it dominates. */
  advice: string;
}

export interface MemoryEstimate {
  peak: number;
  resident: MemoryTerm;
  activations: MemoryTerm;
  loss: MemoryTerm;
  evaluation: MemoryTerm;
}

/**
 * Floats a padded token keeps for backward in a transformer encoder of this shape (fitted on
 * SASRec: Q, K, V, attention probabilities and their dropout per head, the FFN's inner
 * activations, LayerNorms and residuals, dropout masks).
 */
export function transformerFloatsPerToken(
  cfg: Pick<TrainConfig, "hidden" | "inner" | "heads" | "layers">,
  len: number,
  lastStep = false,
): number {
  const { hidden: d, inner, heads, layers } = cfg;
  const layer = 13 * d + 3 * inner + 3.2 * heads * len;
  // With the last layer at the last step only, a token keeps its keys and values there (and
  // their gradients): 4d, rounded up like the fit.
  return 12 * d + (lastStep ? (layers - 1) * layer + 4 * d : layers * layer) + 64;
}

/**
 * Floats a padded token keeps for backward in the configured model, rows of `len` tokens;
 * `lastStep`: the encoder's last layer runs at each row's last step only (lastStepLoss).
 */
export function floatsPerToken(cfg: TrainConfig, len: number, lastStep = false): number {
  switch (cfg.model) {
    case "gru4rec":
      // Measured 4.8k floats at d = 64, 128 GRU units: gates and states per layer.
      return 12 * cfg.hidden + cfg.gruLayers * 32 * cfg.gruHidden;
    case "fdsa":
      // Two self-attention encoders (items and features) over the same positions.
      return 2 * transformerFloatsPerToken(cfg, len, lastStep);
    default:
      return transformerFloatsPerToken(cfg, len, lastStep);
  }
}

/** Floats a padded token holds in an evaluation forward pass: its scope keeps every output. */
function evalFloatsPerToken(cfg: TrainConfig, len: number): number {
  return 0.9 * floatsPerToken(cfg, len);
}

/**
 * The model's activations relative to SASRec's. DuAF-MAT's memoryFactor counts each VSCL view
 * (one a modality) as 0.5; measured on beauty-mini it costs about 1.2, a second pass of the
 * fused encoder. The estimate takes the measured cost; the trainer's split is left as it is, so
 * runs keep their micro-batches.
 */
function activationFactor(cfg: TrainConfig, memoryFactor: number): number {
  if (cfg.model === "duafmat" && memoryFactor > 1.2) return 1.2 + 2.4 * (memoryFactor - 1.2);
  return memoryFactor;
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

export function estimateTrainingMemory(cfg: TrainConfig, m: MemoryInputs): MemoryEstimate {
  const items = m.numItems + 1;
  const d = cfg.hidden;
  const resident: MemoryTerm = {
    what: `parameters, gradients and Adam state (${fmtInt(m.params)} parameters)` +
      (m.features > 0 ? ` and item features` : ""),
    bytes: F32 * (4 * m.params + m.features),
    advice: `lower hidden (now ${cfg.hidden}) or use --backend cuda where a GPU is`,
  };
  if (cfg.model === "pop") {
    const none = { what: "none", bytes: 0, advice: "" };
    return { peak: resident.bytes, resident, activations: none, loss: none, evaluation: none };
  }
  const tokens = m.trainTokens;
  const positions = m.lossPositions;
  // The model's main pass, plus what its memoryFactor adds over SASRec at full floats a token
  // (DuAF-MAT's fusion and VSCL views, IISAN's and M3SRec's item-side work).
  const full = floatsPerToken(cfg, m.trainLen);
  const main = m.lastStepLoss ? floatsPerToken(cfg, m.trainLen, true) : full;
  const activations: MemoryTerm = {
    what: `activations of ${fmtInt(tokens)} tokens a micro-batch`,
    bytes: F32 * tokens * (main + (activationFactor(cfg, m.memoryFactor) - 1) * full),
    advice: `lower tokenBudget (now ${cfg.tokenBudget === "auto" ? "auto" : cfg.tokenBudget}` +
      `, ${fmtInt(m.microTokens)} tokens) or batchSize (now ${cfg.batchSize})`,
  };
  let loss: MemoryTerm;
  if (cfg.loss === "ce") {
    const block = ceBlockItems(positions, items, cfg.ceChunkItems);
    loss = block === 0
      ? {
        what: `CE logits [${fmtInt(positions)} x ${fmtInt(items)}]`,
        bytes: F32 * positions * items * 1.1,
        advice: `set ceChunkItems=4096 (now ${cfg.ceChunkItems}; CE in item blocks) or loss=gbce`,
      }
      : {
        what: `CE scratch [${fmtInt(positions)} x ${fmtInt(block)}]`,
        bytes: F32 * positions * block * 2,
        advice: `lower ceChunkItems (now ${cfg.ceChunkItems}) or tokenBudget`,
      };
  } else if ((cfg.loss === "gbce" || cfg.loss === "sampled") && cfg.negativeSharing === "batch") {
    const k = cfg.negatives + 1;
    loss = {
      what: `${cfg.loss} shared-negative logits [${fmtInt(positions)} x ${fmtInt(k)}]`,
      bytes: F32 * (positions * k * 4 + positions * d * 2 + k * d * 2),
      advice: `lower negatives (now ${cfg.negatives}), tokenBudget or batchSize`,
    };
  } else if (cfg.loss === "gbce" || cfg.loss === "sampled") {
    const k = cfg.negatives + 1;
    loss = {
      what: `${cfg.loss} candidates [${fmtInt(positions)} x ${fmtInt(k)} x ${d}]`,
      bytes: F32 * positions * k * (2 * d + 8),
      advice: `lower negatives (now ${cfg.negatives}), tokenBudget or batchSize`,
    };
  } else {
    loss = { what: "BCE", bytes: F32 * positions * 4 * d, advice: "lower tokenBudget" };
  }
  const cols = ranksInBlocks(cfg.evalBatchSize, items, m.wholeScoresBytes)
    ? Math.min(items, DEFAULT_BLOCK_ITEMS)
    : items;
  const evaluation: MemoryTerm = {
    what: `evaluation batch of ${cfg.evalBatchSize} users`,
    bytes: F32 * (m.evalTokens * evalFloatsPerToken(cfg, m.evalLen) * m.memoryFactor +
      2 * cfg.evalBatchSize * cols + (m.rankPackFloats ?? 0)),
    advice: `lower evalBatchSize (now ${cfg.evalBatchSize})`,
  };
  const peak = resident.bytes +
    Math.max(activations.bytes + loss.bytes, evaluation.bytes);
  return { peak, resident, activations, loss, evaluation };
}

/** The one stderr line: "memory: estimated peak 1.9 GiB of 4.0 GiB (wasm arena)". */
export function formatEstimate(
  est: MemoryEstimate,
  limit: { bytes: number; what: string } | null,
): string {
  return `memory: estimated peak ${formatBytes(est.peak)}` +
    (limit ? ` of ${formatBytes(limit.bytes)} (${limit.what})` : " (no memory limit known)") +
    `: parameters ${formatBytes(est.resident.bytes)}, training step ` +
    `${formatBytes(est.activations.bytes + est.loss.bytes)} (loss ${formatBytes(est.loss.bytes)}` +
    `), evaluation ${formatBytes(est.evaluation.bytes)}`;
}

/** The largest term of the estimate's peak. */
export function dominantTerm(est: MemoryEstimate): MemoryTerm {
  const train = est.activations.bytes + est.loss.bytes;
  const terms = [est.resident, train >= est.evaluation.bytes ? est.activations : est.evaluation];
  if (train >= est.evaluation.bytes) terms.push(est.loss);
  return terms.reduce((a, b) => (b.bytes > a.bytes ? b : a));
}

/** Throws a one-line ResourceError when the estimate exceeds the backend's limit. */
export function checkMemory(est: MemoryEstimate, backend: Backend): void {
  const limit = backend.memoryLimit?.() ?? null;
  if (!limit || est.peak <= limit.bytes) return;
  const top = dominantTerm(est);
  throw new ResourceError(
    limit.what === "wasm arena" ? "wasm arena memory" : limit.what,
    null,
    `estimated peak ${formatBytes(est.peak)} of ${formatBytes(limit.bytes)}, before the first step`,
    `the largest part is ${top.what}, ${formatBytes(top.bytes)}: ${top.advice}`,
  );
}
