/**
 * TedRec's inference graph: item_seq padded to maxLen (the engine's transform length), the MoE
 * text adaptor over the baked-in text features, the frequency-domain fusion as MatMuls with the
 * constant DFT matrices of core/ops/dft.ts (ONNX MatMul broadcasts [K, L] @ [B, L, d], so the
 * sequence axis needs no transpose), the SASRec encoder, and cosine scores against the
 * unit-length item table (computed at export time).
 */
import type { Tedrec } from "../../models/tedrec.ts";
import * as op from "../../ops/mod.ts";
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
  unflatten,
} from "../sequence_graph.ts";
import { padded } from "./side_info.ts";

/** A row-major [rows, cols] matrix transposed. */
function transposed(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

export function tedrecGraph(w: GraphWriter, src: SequenceInputs, m: Tedrec): string {
  const d = m.cfg.hidden;
  const len = m.cfg.maxLen;
  const io = padded(src, len);
  const a = m.adaptor;

  // The text sequence through the adaptor: Σ_i g_i W_i (x - b_i), flat [B * L, d].
  const x = lookupItems(io, w.weight("item_text_features", m.textTable)); // [B, L, d_text]
  const gates = w.op("Softmax", [w.op("MatMul", [x, w.weight("moe_adaptor.w_gate", a.wGate)])], {
    axis: attr.int(-1),
  });
  let textFlat = "";
  a.experts.items.forEach((e, i) => {
    const p = `moe_adaptor.experts.${i}`;
    const shifted = w.op("Sub", [x, w.weight(`${p}.bias`, e.bias)]);
    const y = w.linear(flatten(io, shifted, e.lin.inFeatures), e.lin, `${p}.lin`);
    const g = w.op("Slice", [gates, w.i64([i]), w.i64([i + 1]), w.i64([2])]);
    const term = w.op("Mul", [flatten(io, g, 1), y]);
    textFlat = i === 0 ? term : w.op("Add", [textFlat, term]);
  });
  const text = unflatten(io, textFlat, [d]);
  const item = lookupItems(io, w.weight("item_embedding.weight", m.itemEmbedding.weight));

  // Spectra along the sequence axis: [K, L] @ [B, L, d] -> [B, K, d].
  const dft = op.dftMatrices(len, "ortho");
  const k = dft.bins;
  const fRe = w.table("dft.forward_re", [k, len], transposed(dft.forwardRe, len, k));
  const fIm = w.table("dft.forward_im", [k, len], transposed(dft.forwardIm, len, k));
  const iRe = w.table("dft.inverse_re", [len, k], transposed(dft.inverseRe, k, len));
  const iIm = w.table("dft.inverse_im", [len, k], transposed(dft.inverseIm, k, len));
  const spectrum = (t: string) => ({ re: w.op("MatMul", [fRe, t]), im: w.op("MatMul", [fIm, t]) });
  const product = (p: { re: string; im: string }, q: { re: string; im: string }) => ({
    re: w.op("Sub", [w.op("Mul", [p.re, q.re]), w.op("Mul", [p.im, q.im])]),
    im: w.op("Add", [w.op("Mul", [p.re, q.im]), w.op("Mul", [p.im, q.re])]),
  });
  const inverse = (p: { re: string; im: string }) =>
    flatten(io, w.op("Add", [w.op("MatMul", [iRe, p.re]), w.op("MatMul", [iIm, p.im])]), d);
  const cw = m.complexWeight.toFloat32(); // [1, K, d, 2]
  const filter = {
    re: w.table("complex_weight.re", [k, d], cw.filter((_, j) => j % 2 === 0)),
    im: w.table("complex_weight.im", [k, d], cw.filter((_, j) => j % 2 === 1)),
  };
  const idSpec = spectrum(item);
  const itemConv = inverse(product(idSpec, filter));
  const fusionConv = inverse(product(spectrum(text), idSpec));
  const gated = (t: string, gate: typeof m.itemGating, name: string) =>
    w.op("Mul", [t, w.op("Sigmoid", [w.linear(t, gate, name)])]);
  const fused = w.op("Mul", [
    w.op("Add", [
      gated(itemConv, m.itemGating, "item_gating"),
      gated(fusionConv, m.fusionGating, "fusion_gating"),
    ]),
    w.f32([2], []),
  ]);

  const pos = positionEmbeddings(io, m.positionEmbedding, "position_embedding.weight");
  const h0 = w.layerNorm(
    flatten(io, w.op("Add", [unflatten(io, fused, [d]), pos]), d),
    m.norm,
    "LayerNorm",
  );
  const h = transformerEncoder(io, m.encoder, h0, causalPaddingMask(io), "trm_encoder");
  const last = gatherLast(io, h);
  const norm = w.op("Sqrt", [
    w.op("Add", [
      w.op("ReduceSum", [w.op("Mul", [last, last]), w.i64([-1])], { keepdims: attr.int(1) }),
      w.f32([1e-12], []),
    ]),
  ]);
  const table = op.l2Normalize(m.itemEmbedding.weight);
  const items = w.table("item_embedding.unit", [...table.shape], table.toFloat32());
  return w.op("Gemm", [w.op("Div", [last, norm]), items], { transB: attr.int(1) });
}
