/**
 * IISAN's inference graph. The item side is baked in: the item table (intra- and inter-modal side
 * adapted networks over the cached layer states, com_dense) as the model computes it in eval
 * mode, so the graph holds no layer states. It then runs SASRec's path over that table:
 * items + positions -> LayerNorm -> encoder -> last step -> dot with the table.
 */
import type { Iisan } from "../../models/iisan.ts";
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

export function iisanGraph(w: GraphWriter, io: SequenceInputs, m: Iisan): string {
  const table = m.inferenceTable();
  const x = w.op("Add", [
    lookupItems(io, w.weight("item_table", table)),
    positionEmbeddings(io, m.positionEmbedding, "position_embedding.weight"),
  ]);
  const h0 = w.layerNorm(flatten(io, x, m.cfg.hidden), m.norm, "LayerNorm");
  const h = transformerEncoder(io, m.encoder, h0, causalPaddingMask(io), "trm_encoder");
  return scoreItems(io, gatherLast(io, h), table, "item_table");
}
