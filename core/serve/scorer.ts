/**
 * What evaluation and serving need from a model: scores of every item for a padded batch. The
 * engine answers synchronously; an exported graph on onnxruntime answers asynchronously, so the
 * interface is async and both runtimes share the ranking, metric and top-k code.
 */
import type { SequenceBatch } from "../models/batch.ts";
import type { ModalityWeights, SequentialModel } from "../models/model.ts";
import { Rng } from "../random.ts";
import { noGrad, tidy } from "../tensor.ts";
import { FrozenValues } from "../nn/context.ts";

export interface BatchScorer {
  readonly runtime: "engine" | "ort";
  /** Row-major [batch.size, numItems + 1] scores (column 0 is padding). */
  scoreAll(batch: SequenceBatch): Promise<Float32Array>;
  /** Per-step modality weights, when the runtime and model provide them. */
  explain?(batch: SequenceBatch): ModalityWeights | null;
  /** Frees runtime resources (sessions). */
  close?(): Promise<void>;
}

/** The engine model in eval mode (dropout off), one tidy scope per batch. */
export function engineScorer(model: SequentialModel): BatchScorer {
  const frozen = new FrozenValues(); // item tables, built by the first batch
  const ctx = { training: false, rng: new Rng(0), frozen };
  model.eval();
  return {
    runtime: "engine",
    close: () => Promise.resolve(frozen.dispose()),
    scoreAll: (batch) =>
      Promise.resolve(noGrad(() => tidy(() => model.scoreAll(batch, ctx).toFloat32()))),
    explain: (batch) => model.explain ? noGrad(() => tidy(() => model.explain!(batch, ctx))) : null,
  };
}
