/**
 * The inference graph of a trained model as ONNX bytes: the model's own graph (from
 * core/export/models/), the `scores` output [batch, numItems + 1] and, on request, a TopK head.
 * Everything item-side (embeddings, frozen features, counts) is baked in as initializers, so the
 * file alone serves recommendations. Dropout is off (inference), exactly as `scoreAll` in eval mode.
 *
 * Metadata (ModelProto.metadata_props) ties the file to the run it came from; `duaf eval/recommend
 * --runtime ort` refuse a file whose checkpoint or dataset differ.
 */
import { Bert4rec } from "../models/bert4rec.ts";
import { Difsr } from "../models/difsr.ts";
import { DuafMat } from "../models/duaf/duafmat.ts";
import { Fdsa } from "../models/fdsa.ts";
import { Gru4rec } from "../models/gru4rec.ts";
import { Lrurec } from "../models/lrurec.ts";
import { Iisan } from "../models/iisan.ts";
import { M3srec } from "../models/m3srec.ts";
import type { SequentialModel } from "../models/model.ts";
import { Nova } from "../models/nova.ts";
import { MostPopular } from "../models/pop.ts";
import { Unisrec } from "../models/unisrec.ts";
import { Sasrec } from "../models/sasrec.ts";
import { Tedrec } from "../models/tedrec.ts";
import { GraphWriter } from "./graph_writer.ts";
import { bert4recGraph } from "./models/bert4rec.ts";
import { duafmatGraph, duafUsesTime } from "./models/duafmat.ts";
import { fdsaGraph } from "./models/fdsa.ts";
import { gru4recGraph } from "./models/gru4rec.ts";
import { lrurecGraph } from "./models/lrurec.ts";
import { iisanGraph } from "./models/iisan.ts";
import { m3srecGraph } from "./models/m3srec.ts";
import { popGraph } from "./models/pop.ts";
import { unisrecGraph } from "./models/unisrec.ts";
import { sasrecGraph } from "./models/sasrec.ts";
import { difsrGraph, novaGraph } from "./models/side_info.ts";
import { tedrecGraph } from "./models/tedrec.ts";
import { attr } from "./onnx_graph.ts";
import { markedFile } from "../io/output_guard.ts";
import { noGrad, tidy } from "../tensor.ts";
import { declareInputs, type InputName, type SequenceInputs } from "./sequence_graph.ts";

/** Opset 17: LayerNormalization is a standard op from 17 on; every maintained runtime has it. */
/**
 * An exported graph as the output guard sees it: ModelProto field 2 (producer_name, tag 0x12)
 * set to "duaf" near the start of the file.
 */
export const ONNX_FILE = markedFile("ONNX model", "\x12\x04duaf");

export const ONNX_OPSET = 17;

/** Metadata keys written into every exported file. */
export const META = {
  version: "duaf_version",
  model: "model_kind",
  dataset: "dataset_sha256",
  checkpoint: "checkpoint_sha256",
  origin: "time_origin_unix_s",
  maxLen: "max_seq_len",
  numItems: "num_items",
  inputs: "inputs",
  topk: "topk",
} as const;

export interface ExportInfo {
  version: string;
  modelKind: string;
  datasetSha256: string;
  checkpointSha256: string;
  /** Timestamp origin in unix seconds: `timestamps` are (t - origin) / 86400. */
  origin: number;
  maxLen: number;
  numItems: number;
}

export interface ExportOptions {
  /** Adds topk_scores / topk_items over items 1..numItems (padding is never returned). */
  topk?: number;
}

export interface ExportedGraph {
  bytes: Uint8Array;
  inputs: InputName[];
  outputs: string[];
}

interface ModelExporter {
  inputs: readonly InputName[];
  build(w: GraphWriter, io: SequenceInputs, info: ExportInfo): string;
}

/** The graph writer for a model, or null when its kind has none. */
function exporterFor(model: SequentialModel): ModelExporter | null {
  if (model instanceof Sasrec) {
    return { inputs: ["item_seq", "item_seq_len"], build: (w, io) => sasrecGraph(w, io, model) };
  }
  if (model instanceof Gru4rec) {
    return {
      inputs: ["item_seq", "item_seq_len"],
      build: (w, io, info) => gru4recGraph(w, io, model, info.maxLen),
    };
  }
  if (model instanceof Lrurec) {
    return {
      inputs: ["item_seq", "item_seq_len"],
      build: (w, io, info) => lrurecGraph(w, io, model, info.maxLen),
    };
  }
  if (model instanceof Fdsa) {
    return { inputs: ["item_seq", "item_seq_len"], build: (w, io) => fdsaGraph(w, io, model) };
  }
  if (model instanceof DuafMat) {
    return {
      inputs: duafUsesTime(model)
        ? ["item_seq", "item_seq_len", "timestamps"]
        : ["item_seq", "item_seq_len"],
      build: (w, io) => duafmatGraph(w, io, model),
    };
  }
  if (model instanceof Nova) {
    return { inputs: ["item_seq", "item_seq_len"], build: (w, io) => novaGraph(w, io, model) };
  }
  if (model instanceof Difsr) {
    return { inputs: ["item_seq", "item_seq_len"], build: (w, io) => difsrGraph(w, io, model) };
  }
  if (model instanceof Tedrec) {
    return { inputs: ["item_seq", "item_seq_len"], build: (w, io) => tedrecGraph(w, io, model) };
  }
  if (model instanceof M3srec) {
    return { inputs: ["item_seq", "item_seq_len"], build: (w, io) => m3srecGraph(w, io, model) };
  }
  if (model instanceof Iisan) {
    return { inputs: ["item_seq", "item_seq_len"], build: (w, io) => iisanGraph(w, io, model) };
  }
  if (model instanceof Bert4rec) {
    return { inputs: ["item_seq", "item_seq_len"], build: (w, io) => bert4recGraph(w, io, model) };
  }
  if (model instanceof Unisrec) {
    return { inputs: ["item_seq", "item_seq_len"], build: (w, io) => unisrecGraph(w, io, model) };
  }
  if (model instanceof MostPopular) {
    return { inputs: ["item_seq_len"], build: (w, io) => popGraph(w, io, model) };
  }
  return null;
}

export function canExport(model: SequentialModel): boolean {
  return exporterFor(model) !== null;
}

export function exportOnnx(
  model: SequentialModel,
  info: ExportInfo,
  opts: ExportOptions = {},
): ExportedGraph {
  const exporter = exporterFor(model);
  if (!exporter) throw new Error(`export: no ONNX graph for model kind ${model.kind}`);
  const w = new GraphWriter(`duaf_${info.modelKind}`);
  const io = declareInputs(w, exporter.inputs);
  // Item tables computed for the export (DuAF-MAT's) are freed once their values are copied.
  const raw = noGrad(() => tidy(() => exporter.build(w, io, info)));
  const cols = info.numItems + 1;
  w.g.node("Identity", [raw], ["scores"]);
  w.g.output("scores", "float32", ["batch", cols]);
  const outputs = ["scores"];
  for (const extra of w.extraOutputs) {
    w.g.node("Identity", [extra.value], [extra.name]);
    w.g.output(extra.name, "float32", extra.shape);
    outputs.push(extra.name);
  }
  let k = 0;
  if (opts.topk !== undefined) {
    // Top k over items 1..numItems: the padding column is cut off and indices shifted back.
    k = Math.min(opts.topk, info.numItems);
    const items = w.op("Slice", ["scores", w.i64([1]), w.i64([cols]), w.i64([1])]);
    const [vals, idx] = w.opN("TopK", [items, w.i64([k])], 2, {
      axis: attr.int(-1),
      largest: attr.int(1),
      sorted: attr.int(1),
    });
    w.g.node("Identity", [vals], ["topk_scores"]);
    w.g.node("Add", [idx, w.i64([1], [])], ["topk_items"]);
    w.g.output("topk_scores", "float32", ["batch", k]);
    w.g.output("topk_items", "int64", ["batch", k]);
    outputs.push("topk_scores", "topk_items");
  }
  const metadata: Record<string, string> = {
    [META.version]: info.version,
    [META.model]: info.modelKind,
    [META.dataset]: info.datasetSha256,
    [META.checkpoint]: info.checkpointSha256,
    [META.origin]: String(info.origin),
    [META.maxLen]: String(info.maxLen),
    [META.numItems]: String(info.numItems),
    [META.inputs]: exporter.inputs.join(","),
    ...(k ? { [META.topk]: String(k) } : {}),
  };
  const bytes = w.g.toBytes({
    opset: ONNX_OPSET,
    producerName: "duaf",
    producerVersion: info.version,
    docString: `duaf ${info.modelKind} inference graph; inputs ${
      exporter.inputs.join(", ")
    } (right-padded, seq <= ${info.maxLen}); see docs/export.md`,
    metadata,
  });
  return { bytes, inputs: [...exporter.inputs], outputs };
}
