/**
 * Exporting a trained run: the identity metadata (checkpoint and dataset hashes, timestamp
 * origin) and, for external checks, a JSON of sample inputs with the engine's scores that
 * tools/check_onnx.mjs compares against any ONNX runtime.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { UsageError } from "../errors.ts";
import { markedFile } from "../io/output_guard.ts";
import { Rng } from "../random.ts";
import { noGrad, tidy } from "../tensor.ts";
import { makeBatch, splitExamples } from "../models/examples.ts";
import type { SequenceBatch } from "../models/batch.ts";
import type { OpenRun } from "../train/run.ts";
import { VERSION } from "../version.ts";
import { canExport, type ExportedGraph, exportOnnx, type ExportOptions } from "./onnx_export.ts";
import type { InputName } from "./sequence_graph.ts";

/** sha256 of the run's best-model checkpoint: what an exported graph was made from. */
export async function checkpointSha256(runDir: string): Promise<string> {
  const path = join(runDir, "model.safetensors");
  try {
    return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UsageError(`${path}: checkpoint missing`);
    throw e;
  }
}

/** Why a model kind has no graph, where that is a design limit rather than work not yet done. */
const NO_EXPORT: Record<string, string> = {
  missrec: "its interest tokens are the sorted unique k-means interests of each history, a " +
    "per-row set of data-dependent size; score it with duaf recommend; see docs/export.md",
};

/** Builds the graph of an opened run (openRun has already checked the checkpoint). */
export async function exportRun(
  run: OpenRun,
  runDir: string,
  opts: ExportOptions = {},
): Promise<ExportedGraph> {
  if (!canExport(run.model)) {
    const why = NO_EXPORT[run.model.kind];
    throw new UsageError(
      `${runDir}: model ${run.model.kind} has no ONNX export ${why ? `(${why})` : "yet"}`,
    );
  }
  const cfg = run.manifest.config;
  return exportOnnx(run.model, {
    version: VERSION,
    modelKind: cfg.model,
    datasetSha256: run.manifest.dataset.manifestSha256,
    checkpointSha256: await checkpointSha256(runDir),
    origin: run.origin,
    maxLen: cfg.maxLen,
    numItems: run.dataset.numItems,
  }, opts);
}

/** The graph inputs a batch provides, as plain arrays (int64 inputs as numbers). */
export function batchInputs(
  batch: SequenceBatch,
  names: readonly InputName[],
): Record<string, { dims: number[]; data: number[] }> {
  const out: Record<string, { dims: number[]; data: number[] }> = {};
  for (const name of names) {
    if (name === "item_seq") out[name] = { dims: [batch.size, batch.len], data: [...batch.items] };
    if (name === "item_seq_len") out[name] = { dims: [batch.size], data: [...batch.lengths] };
    if (name === "timestamps") {
      out[name] = { dims: [batch.size, batch.len], data: [...batch.times] };
    }
  }
  return out;
}

export interface CheckData {
  format: "duaf-onnx-check";
  model: string;
  /** Allowed |ort - engine| relative to the largest |engine score| of the row. */
  tolerance: number;
  /** Top-k lists compared (ties within the tolerance aside). */
  k: number;
  inputs: Record<string, { dims: number[]; data: number[] }>;
  scores: { dims: number[]; data: number[] };
}

/** Engine scores of the first `users` test-split users, with the graph inputs that produce them. */
/** The --check-data JSON as the output guard sees it. */
export const CHECK_DATA_FILE = markedFile("check-data file", '"format":"duaf-onnx-check"');

export function checkData(run: OpenRun, inputs: readonly InputName[], users = 16): CheckData {
  const cfg = run.manifest.config;
  const ex = splitExamples(run.dataset, "test");
  const n = Math.min(users, ex.users.length);
  if (n === 0) throw new UsageError("--check-data: the dataset has no test users");
  const batch = makeBatch(run.dataset, ex, null, 0, n, cfg.maxLen, run.origin, null);
  const ctx = { training: false, rng: new Rng(0) };
  const scores = noGrad(() => tidy(() => run.model.scoreAll(batch, ctx).toFloat32()));
  return {
    format: "duaf-onnx-check",
    model: cfg.model,
    tolerance: 1e-4,
    k: 10,
    inputs: batchInputs(batch, inputs),
    scores: { dims: [n, run.dataset.numItems + 1], data: [...scores] },
  };
}
