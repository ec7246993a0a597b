/** The contract between sequential models and the shared trainer/evaluator. */
import type { Module } from "../nn/module.ts";
import type { ForwardContext } from "../nn/context.ts";
import type { Tensor } from "../tensor.ts";
import type { Adam } from "../optim/adam.ts";
import type { SequenceBatch } from "./batch.ts";

export interface LossOutput {
  /** The scalar that is differentiated. */
  total: Tensor;
  /** Named scalar parts for logging (main, cscl, vscl, adv, ...). */
  parts: Record<string, Tensor>;
}

/** Frozen per-item content features: (numItems + 1) * dim values, row 0 = padding. */
export interface ContentFeatures {
  dim: number;
  data: Float32Array;
}

/** The slice of a dataset that statistics-only models count from (SequenceSource has it). */
export interface InteractionSequences {
  numUsers: number;
  numItems: number;
  /** numUsers + 1 offsets into seqItems. */
  seqOffsets: Int32Array;
  /** Every user's items in chronological order. */
  seqItems: Int32Array;
}

/**
 * What a model's `reconstruction()` returns for the items whose images were hidden from training:
 * row-major [items, dim] vectors.
 */
export interface Reconstruction {
  dim: number;
  items: Int32Array;
  filled: Float32Array;
  real: Float32Array;
  /** One [dim] vector: the same guess for every hidden item. */
  meanOfVisible: Float32Array;
  /** Null without a text modality. */
  textNeighbour: Float32Array | null;
}

export interface SequentialModel extends Module {
  readonly kind: string;
  /**
   * false for statistics-only models (MostPopular): they have no gradient to follow, so the
   * trainer calls `fit` once on the training data instead of running optimizer steps.
   * Absent means true.
   */
  readonly trainable?: boolean;
  /** Statistics-only models: computes their state from the training split of `src`. */
  fit?(src: InteractionSequences): void;
  /**
   * Activation memory per padded token relative to SASRec; the trainer divides its token budget
   * by it so every model's micro-batches peak at about the same memory. Absent means 1.
   */
  readonly memoryFactor?: number;
  /**
   * In prefix training the loss reads each row's last step alone, and the encoder's last layer
   * runs at that step only (TransformerEncoder.forwardAt): the memory estimate then counts that
   * layer's keys and values a token instead of the whole layer. Absent means false.
   */
  readonly lastStepLoss?: boolean;
  /**
   * The length the model widens every row to (TedRec transforms whole maxLen sequences): the
   * trainer's micro-batches and the memory estimate count rows at this length at least.
   */
  readonly padsTo?: number;
  /** Whether the trainer must sample one negative per example (BCE loss). */
  readonly needsNegatives: boolean;
  loss(batch: SequenceBatch, ctx: ForwardContext): LossOutput;
  /** Scores of every item (column 0 is padding) for each batch row: [size, numItems + 1]. */
  scoreAll(batch: SequenceBatch, ctx: ForwardContext): Tensor;
  /**
   * The two factors of scoreAll when scores are dot products: sequence vectors [size, d] and the
   * item table [numItems + 1, d]. Evaluation then ranks in item blocks, never holding all scores.
   */
  scoreParts?(batch: SequenceBatch, ctx: ForwardContext): { users: Tensor; items: Tensor };
  /** Missing-modality reconstruction of images hidden from training (DuAF-MAT, hideImages). */
  reconstruction?(): Reconstruction | null;
  /** Per-step modality fusion weights, for explanations (DuAF-MAT). */
  explain?(batch: SequenceBatch, ctx: ForwardContext): ModalityWeights;
  /**
   * Called once parameters were loaded from another run (--init-from, and again on --resume of
   * such a run): a model may fix some of them for fine-tuning. Returns a line to print, or null.
   */
  initialized?(loaded: ReadonlySet<string>): string | null;
  /** Parameters for the main optimizer when some are updated separately (the critic). */
  trainableParameters?(): Tensor[];
  /** Extra optimizers a model steps itself (saved in checkpoints for exact resumption). */
  auxOptimizers?(): Record<string, Adam>;
  /**
   * Optional extra update after the main optimizer step (adversarial critic steps). Returns
   * scalar losses to log, outside any scope: the caller disposes them. They stay on the backend,
   * so the update does not wait for the device.
   */
  afterStep?(batch: SequenceBatch, ctx: ForwardContext): Record<string, Tensor>;
}

/** Fusion weights of each modality at each history step. */
export interface ModalityWeights {
  modalities: string[];
  /**
   * Per item (index 0 = padding): 1 where the image the model fused is real, 0 where it was
   * generated (missing, or hidden from training). Absent without an image modality.
   */
  imagePresent?: Uint8Array;
  /** The weights of row r's first `length` steps, one record per step. */
  perRow(row: number, length: number): Record<string, number>[];
}
