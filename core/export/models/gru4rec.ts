/**
 * GRU4Rec's inference graph, with the recurrence unrolled over the run's maxLen steps.
 *
 * Why unrolled rather than ONNX Loop or Scan: both need sub-graph attributes and run their body
 * through a per-iteration executor, which in onnxruntime-web costs more than the few small
 * matmuls of a step; an unrolled graph is plain operators that every runtime optimises and fuses,
 * and its size (about 17 nodes per step and layer) is small next to the item table.
 *
 * Dynamic sequence length with a fixed unroll: item_seq is padded inside the graph to maxLen
 * (padding item 0), and each step only moves a row's state while the step is inside that row's
 * history (Where(t < item_seq_len, new, old)). After the last step every row holds its state at
 * its last valid position, which is exactly what the engine gathers; later padding steps, which
 * the engine never computes, are masked out. Inputs longer than maxLen are not supported (the
 * engine never builds them: batches keep the latest maxLen items).
 */
import type { Gru4rec } from "../../models/gru4rec.ts";
import type { GraphWriter } from "../graph_writer.ts";
import { attr } from "../onnx_graph.ts";
import type { SequenceInputs } from "../sequence_graph.ts";

export function gru4recGraph(
  w: GraphWriter,
  io: SequenceInputs,
  m: Gru4rec,
  maxLen: number,
): string {
  if (!io.itemSeq || !io.seq) throw new Error("export: gru4rec reads item_seq");
  const h = m.cfg.hiddenSize;
  const pads = w.op("Concat", [w.i64([0, 0, 0]), w.op("Sub", [w.i64([maxLen]), io.seq])], {
    axis: attr.int(0),
  });
  const padded = w.op("Pad", [io.itemSeq, pads, w.i64([0], [])], { mode: attr.string("constant") });
  const table = w.weight("item_embedding.weight", m.itemEmbedding.weight);
  const e = m.cfg.embeddingSize;
  const x = w.op("Gather", [table, padded], { axis: attr.int(0) }); // [B, T, e]

  const layers = m.gru.layers.map((l, k) => ({
    wIh: w.weight(`gru_layers.weight_ih_l${k}`, l.wIh),
    wHh: w.weight(`gru_layers.weight_hh_l${k}`, l.wHh),
    bIh: l.bIh ? w.weight(`gru_layers.bias_ih_l${k}`, l.bIh) : null,
    bHh: l.bHh ? w.weight(`gru_layers.bias_hh_l${k}`, l.bHh) : null,
  }));
  // y = x W^T (+ b) on [rows, in]: one Gemm.
  const project = (y: string, wt: string, b: string | null) =>
    w.op("Gemm", b ? [y, wt, b] : [y, wt], { transB: attr.int(1) });
  // Layer 0's input projection for every step at once, as the engine does: [B, T, 3H].
  const gi0 = w.op("Reshape", [
    project(w.op("Reshape", [x, w.i64([-1, e])]), layers[0].wIh, layers[0].bIh),
    w.i64([-1, maxLen, 3 * h]),
  ]);
  const zeroState = w.op("ConstantOfShape", [
    w.op("Concat", [io.batchVec, w.i64([h])], { axis: attr.int(0) }),
  ], { value: attr.tensor({ dtype: "float32", dims: [1], data: new Float32Array([0]) }) });
  const state = layers.map(() => zeroState);

  for (let t = 0; t < maxLen; t++) {
    const live = w.op("Unsqueeze", [
      w.op("Less", [w.i64([t], []), io.seqLen]),
      w.i64([1]),
    ]); // [B, 1]
    let input = "";
    layers.forEach((l, k) => {
      const gi = k === 0
        ? w.op("Gather", [gi0, w.i64([t], [])], { axis: attr.int(1) })
        : project(input, l.wIh, l.bIh);
      const gh = project(state[k], l.wHh, l.bHh);
      const sizes = w.i64([2 * h, h]);
      const [giRz, giN] = w.opN("Split", [gi, sizes], 2, { axis: attr.int(1) });
      const [ghRz, ghN] = w.opN("Split", [gh, sizes], 2, { axis: attr.int(1) });
      const rz = w.op("Sigmoid", [w.op("Add", [giRz, ghRz])]);
      const [r, z] = w.opN("Split", [rz, w.i64([h, h])], 2, { axis: attr.int(1) });
      const n = w.op("Tanh", [w.op("Add", [giN, w.op("Mul", [r, ghN])])]);
      // (1 - z) n + z h, written as the engine writes it.
      const next = w.op("Add", [n, w.op("Mul", [z, w.op("Sub", [state[k], n])])]);
      state[k] = w.op("Where", [live, next, state[k]], {}, `gru_l${k}_t${t}`);
      input = state[k];
    });
  }
  const seqOut = w.linear(state[state.length - 1], m.dense, "dense");
  return w.op("Gemm", [seqOut, table], { transB: attr.int(1) });
}
