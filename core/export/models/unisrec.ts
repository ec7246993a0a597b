/**
 * UniSRec's inference graph. In evaluation the MoE adaptor is a fixed function of each item's
 * text vector, so the export bakes its output per item (plus the ID embedding when transductive)
 * into one input table, and the L2-normalised rows of that table into the score table: items +
 * positions -> LayerNorm -> encoder -> last step -> L2 normalise -> cosine scores.
 */
import type { Unisrec } from "../../models/unisrec.ts";
import type { GraphWriter } from "../graph_writer.ts";
import { attr } from "../onnx_graph.ts";
import {
  causalPaddingMask,
  flatten,
  gatherLast,
  lookupItems,
  positionEmbeddings,
  type SequenceInputs,
  transformerEncoder,
} from "../sequence_graph.ts";

export function unisrecGraph(w: GraphWriter, io: SequenceInputs, m: Unisrec): string {
  const tables = m.inferenceTables();
  const x = w.op("Add", [
    lookupItems(io, w.weight("item_input_table", tables.input)),
    positionEmbeddings(io, m.positionEmbedding, "position_embedding.weight"),
  ]);
  const h0 = w.layerNorm(flatten(io, x, m.cfg.hidden), m.norm, "LayerNorm");
  const h = transformerEncoder(io, m.encoder, h0, causalPaddingMask(io), "trm_encoder");
  const s = gatherLast(io, h);
  // s / sqrt(Σ s² + 1e-12), as the engine's l2Normalize.
  const sq = w.op("ReduceSum", [w.op("Mul", [s, s]), w.i64([-1])], { keepdims: attr.int(1) });
  const norm = w.op("Sqrt", [w.op("Add", [sq, w.f32([1e-12], [])])]);
  const user = w.op("Div", [s, norm], {}, "sequence_output");
  return w.op("Gemm", [user, w.weight("item_score_table", tables.score)], {
    transB: attr.int(1),
  });
}
