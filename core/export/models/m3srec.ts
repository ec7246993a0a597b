/**
 * M3SRec's inference graph. The item side is baked in: the fused item table (MoE adaptors over
 * the frozen text/image features, zero fill of missing rows, MoE fusion with the ID embedding) as
 * the model computes it in eval mode. The graph then runs SASRec's path over that table:
 * items + positions -> LayerNorm -> encoder -> last step -> dot with the table.
 */
import type { M3srec } from "../../models/m3srec.ts";
import type { GraphWriter } from "../graph_writer.ts";
import {
  causalPaddingMask,
  flatten,
  gatherLast,
  lookupItems,
  positionEmbeddings,
  scoreItems,
  type SequenceInputs,
  transformerEncoder,
} from "../sequence_graph.ts";

export function m3srecGraph(w: GraphWriter, io: SequenceInputs, m: M3srec): string {
  const table = m.inferenceTable();
  const x = w.op("Add", [
    lookupItems(io, w.weight("item_table", table)),
    positionEmbeddings(io, m.positionEmbedding, "position_embedding.weight"),
  ]);
  const h0 = w.layerNorm(flatten(io, x, m.cfg.hidden), m.norm, "LayerNorm");
  const h = transformerEncoder(io, m.encoder, h0, causalPaddingMask(io), "trm_encoder");
  return scoreItems(io, gatherLast(io, h), table, "item_table");
}
