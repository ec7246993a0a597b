/**
 * IISAN's inference graph. The item side is baked in: the item table (intra- and inter-modal side
 * adapted networks over the cached layer states, com_dense) as the model computes it in eval
 * mode, so the graph holds no layer states. It then runs SASRec's path over that table:
 * items + positions -> LayerNorm -> encoder -> last step -> dot with the table.
 */
import type { Iisan } from "../../models/iisan.ts";
import type { GraphWriter } from "../graph_writer.ts";
import { type SequenceInputs, tableEncoderGraph } from "../sequence_graph.ts";

export function iisanGraph(_w: GraphWriter, io: SequenceInputs, m: Iisan): string {
  return tableEncoderGraph(io, m);
}
