/**
 * duaf as a library: the tensor engine, models, data artifacts, training and evaluation.
 * The CLI (cli/main.ts) is a thin layer over these exports.
 */
export { VERSION } from "./core/version.ts";
export type { Backend, BackendFactory, DType, Storage } from "./core/backend.ts";
export { registerBackend, registeredBackends, selectBackend } from "./core/backends/registry.ts";
export { JsBackend } from "./core/backends/js.ts";
export {
  backward,
  empty,
  getBackend,
  keep,
  noGrad,
  setBackend,
  Tensor,
  tensor,
  tidy,
  withBackend,
  zeros,
} from "./core/tensor.ts";
export * as ops from "./core/ops/mod.ts";
export { Rng } from "./core/random.ts";
export { Module } from "./core/nn/module.ts";
export { Embedding, LayerNorm, Linear } from "./core/nn/layers.ts";
export { Adam, clipGradNorm } from "./core/optim/adam.ts";
export { configKeys, resolveConfig, type TrainConfig, TrainConfigSchema } from "./core/config.ts";
export { type Dataset, loadDataset } from "./core/data/dataset.ts";
export { preprocess } from "./core/data/preprocess.ts";
export { evaluate, evaluateWith } from "./core/eval/evaluate.ts";
export { createModel } from "./core/models/registry.ts";
export type { SequentialModel } from "./core/models/model.ts";
export type { SequenceBatch } from "./core/models/batch.ts";
export { evaluateRun, evaluateRunWith, openRun, runTraining } from "./core/train/run.ts";
export {
  checkSweepOut,
  readSweepManifest,
  runSweep,
  type SweepManifest,
  type SweepOptions,
  sweepPlan,
  type SweepSummary,
} from "./core/sweep/sweep.ts";
export { expandGrid, type Grid, parseGrid, sampleGrid } from "./core/sweep/grid.ts";
export {
  aggregate,
  readResults,
  type ResultLine,
  tableCsv,
  tableMarkdown,
} from "./core/sweep/results.ts";
export { sweepTable } from "./core/sweep/table.ts";
export { exportOnnx, type ExportOptions, ONNX_OPSET } from "./core/export/onnx_export.ts";
export { checkData, exportRun } from "./core/export/export_run.ts";
export { type BatchScorer, engineScorer } from "./core/serve/scorer.ts";
export { OrtScorer } from "./core/serve/ort_scorer.ts";
export { recommendBatch, recommendWith } from "./core/serve/recommend.ts";
export { CheckFailed, DataError, UsageError } from "./core/errors.ts";
export type { Progress } from "./core/progress.ts";
