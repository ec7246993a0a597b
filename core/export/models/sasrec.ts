/** SASRec's inference graph: items + positions -> LayerNorm -> encoder -> last step -> scores. */
import type { Sasrec } from "../../models/sasrec.ts";
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

export function sasrecGraph(w: GraphWriter, io: SequenceInputs, m: Sasrec): string {
  const items = w.weight("item_embedding.weight", m.itemEmbedding.weight);
  const x = w.op("Add", [
    lookupItems(io, items),
    positionEmbeddings(io, m.positionEmbedding, "position_embedding.weight"),
  ]);
  const h0 = w.layerNorm(flatten(io, x, m.cfg.hidden), m.norm, "LayerNorm");
  const h = transformerEncoder(io, m.encoder, h0, causalPaddingMask(io), "trm_encoder");
  const seqOut = gatherLast(io, h);
  if (m.outputEmbedding) {
    return scoreItems(io, seqOut, m.outputEmbedding.weight, "output_embedding.weight");
  }
  return scoreItems(io, seqOut, m.itemEmbedding.weight, "item_embedding.weight");
}
