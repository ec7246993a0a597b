/**
 * M3SRec's inference graph. The item side is baked in: the fused item table (MoE adaptors over
 * the frozen text/image features, zero fill of missing rows, MoE fusion with the ID embedding) as
 * the model computes it in eval mode. The graph then runs SASRec's path over that table:
 * items + positions -> LayerNorm -> encoder -> last step -> dot with the table.
 */
import type { M3srec } from "../../models/m3srec.ts";
import type { GraphWriter } from "../graph_writer.ts";
import { type SequenceInputs, tableEncoderGraph } from "../sequence_graph.ts";

export function m3srecGraph(_w: GraphWriter, io: SequenceInputs, m: M3srec): string {
  return tableEncoderGraph(io, m);
}
