/**
 * BERT4Rec's inference graph: the mask token after each row's last item (the oldest item dropped
 * when the row already fills maxLen, as core/models/bert4rec.ts inferenceRows does), then items +
 * positions -> LayerNorm -> bidirectional encoder -> the mask position -> the output layer
 * (Linear, GELU, LayerNorm) -> scores against the item rows 0..I plus their bias.
 */
import type { Bert4rec } from "../../models/bert4rec.ts";
import type { GraphWriter } from "../graph_writer.ts";
import { attr } from "../onnx_graph.ts";
import {
  flatten,
  gatherLast,
  lookupItems,
  positionEmbeddings,
  type SequenceInputs,
  transformerEncoder,
} from "../sequence_graph.ts";

export function bert4recGraph(w: GraphWriter, io: SequenceInputs, m: Bert4rec): string {
  if (!io.itemSeq || !io.seq) throw new Error("export: bert4rec needs the item_seq input");
  const maxLen = w.i64([m.cfg.maxLen], []);
  const one = w.i64([1], []);
  // [B, L + 1]: the history, one zero column, and the mask token at index item_seq_len.
  const padded = w.op("Pad", [io.itemSeq, w.i64([0, 0, 0, 1])]);
  const cols = w.op("Range", [w.i64([0], []), w.op("Add", [io.seq, one]), one]);
  const atLen = w.op("Equal", [
    w.op("Unsqueeze", [cols, w.i64([0])]),
    w.op("Unsqueeze", [io.seqLen, w.i64([1])]),
  ]);
  const withMask = w.op("Where", [atLen, w.i64([m.maskToken], []), padded]);
  // Keep min(L + 1, maxLen) columns; full rows start one column later (their oldest item goes).
  const len1 = w.op("Add", [io.seqLen, one]);
  const seq = w.op("Min", [w.op("Add", [io.seq, one]), maxLen]);
  const shift = w.op("Cast", [w.op("Greater", [len1, maxLen])], { to: attr.int(7) });
  const take = w.op("Add", [
    w.op("Unsqueeze", [w.op("Range", [w.i64([0], []), seq, one]), w.i64([0])]),
    w.op("Unsqueeze", [shift, w.i64([1])]),
  ]);
  const items = w.op("GatherElements", [withMask, take], { axis: attr.int(1) }, "masked_seq");
  const rows: SequenceInputs = {
    ...io,
    itemSeq: items,
    seqLen: w.op("Min", [len1, maxLen]),
    seq,
    seqVec: w.op("Unsqueeze", [seq, w.i64([0])]),
  };
  // Bidirectional: only padding keys are masked, [B, 1, 1, L'].
  const notPad = w.op("Not", [w.op("Equal", [items, w.i64([0], [])])]);
  const mask = w.op(
    "Where",
    [
      w.op("Unsqueeze", [notPad, w.i64([1, 2])]),
      w.f32([0], []),
      w.f32([-10000], []),
    ],
    {},
    "attention_mask",
  );

  const table = w.weight("item_embedding.weight", m.itemEmbedding.weight);
  const x = w.op("Add", [
    lookupItems(rows, table),
    positionEmbeddings(rows, m.positionEmbedding, "position_embedding.weight"),
  ]);
  const h0 = w.layerNorm(flatten(rows, x, m.cfg.hidden), m.norm, "LayerNorm");
  const h = gatherLast(rows, transformerEncoder(rows, m.encoder, h0, mask, "trm_encoder"));
  const out = w.layerNorm(
    w.gelu(w.linear(h, m.outputFfn, "output_ffn")),
    m.outputNorm,
    "output_ln",
  );
  // Item rows 0..I (the mask row is never a candidate), plus output_bias.
  const candidates = w.op("Slice", [
    table,
    w.i64([0]),
    w.i64([m.cfg.numItems + 1]),
    w.i64([0]),
  ]);
  return w.op("Gemm", [out, candidates, w.weight("output_bias", m.outputBias)], {
    transB: attr.int(1),
  });
}
