/**
 * MostPopular's graph: the stored counts broadcast to every row. It reads no history, so its only
 * input is item_seq_len, which carries the batch size.
 */
import type { MostPopular } from "../../models/pop.ts";
import type { GraphWriter } from "../graph_writer.ts";
import { attr } from "../onnx_graph.ts";
import type { SequenceInputs } from "../sequence_graph.ts";

export function popGraph(w: GraphWriter, io: SequenceInputs, m: MostPopular): string {
  const counts = w.weight("item_count", m.counts);
  const shape = w.op("Concat", [io.batchVec, w.i64([m.cfg.numItems + 1])], {
    axis: attr.int(0),
  });
  return w.op("Expand", [counts, shape]);
}
