/**
 * LRURec's inference graph: items -> LayerNorm -> LRU blocks -> last step -> scores + item bias.
 *
 * The recurrence is the engine's formulation (core/models/lrurec.ts): per state channel a causal
 * Toeplitz matrix K[c, t, s] = γ_c λ_c^{t-s} applied by MatMul over [C, L, B], complex as real
 * pairs. K depends on t - s only, so the kernel for the run's maxLen is baked in once and its
 * top-left [L, L] block is sliced for the input's length L (inputs longer than maxLen are not
 * supported: the engine never builds them).
 */
import { lruKernel, type Lrurec } from "../../models/lrurec.ts";
import type { GraphWriter } from "../graph_writer.ts";
import { attr } from "../onnx_graph.ts";
import {
  flatten,
  gatherLast,
  lookupItems,
  type SequenceInputs,
  unflatten,
} from "../sequence_graph.ts";

export function lrurecGraph(w: GraphWriter, io: SequenceInputs, m: Lrurec, maxLen: number): string {
  if (!io.itemSeq || !io.seqVec) throw new Error("export: lrurec reads item_seq");
  const d = m.cfg.hidden;
  const c = 2 * d;
  const table = w.weight("embedding.token.weight", m.embedding.token.weight);
  let h = w.layerNorm(
    flatten(io, lookupItems(io, table), d),
    m.embedding.norm,
    "embedding.layer_norm",
  );
  const ll = w.op("Concat", [io.seqVec, io.seqVec], { axis: attr.int(0) });
  // [B * L, C] <-> [C, L, B]: channels lead for the per-channel products.
  const channelsFirst = (x: string) =>
    w.op("Transpose", [unflatten(io, x, [c])], { perm: attr.ints([2, 1, 0]) });
  const back = (x: string) =>
    flatten(io, w.op("Transpose", [x], { perm: attr.ints([2, 1, 0]) }), c);
  m.model.blocks.items.forEach((block, i) => {
    const p = `model.lru_blocks.${i}`;
    const lru = block.lru;
    const kernel = lruKernel(lru.paramsLog, maxLen);
    const cut = (name: string, k: Float32Array) =>
      w.op("Slice", [
        w.table(`${p}.lru_layer.${name}`, [c, maxLen, maxLen], k),
        w.i64([0, 0]),
        ll,
        w.i64([1, 2]),
      ]);
    const kRe = cut("kernel_re", kernel.re.toFloat32());
    const kIm = cut("kernel_im", kernel.im.toFloat32());
    const uRe = channelsFirst(w.linear(h, lru.inRe, `${p}.lru_layer.in_proj_re`));
    const uIm = channelsFirst(w.linear(h, lru.inIm, `${p}.lru_layer.in_proj_im`));
    const hRe = w.op("Sub", [w.op("MatMul", [kRe, uRe]), w.op("MatMul", [kIm, uIm])]);
    const hIm = w.op("Add", [w.op("MatMul", [kRe, uIm]), w.op("MatMul", [kIm, uRe])]);
    const y = w.op("Sub", [
      w.linear(back(hRe), lru.outRe, `${p}.lru_layer.out_proj_re`),
      w.linear(back(hIm), lru.outIm, `${p}.lru_layer.out_proj_im`),
    ]);
    const mixed = w.layerNorm(w.op("Add", [y, h]), lru.norm, `${p}.lru_layer.layer_norm`);
    const f = `${p}.feed_forward`;
    const inner = w.gelu(w.linear(mixed, block.ffn.w1, `${f}.w_1`));
    h = w.layerNorm(
      w.op("Add", [w.linear(inner, block.ffn.w2, `${f}.w_2`), mixed]),
      block.ffn.norm,
      `${f}.layer_norm`,
    );
  });
  const seqOut = gatherLast(io, h);
  return w.op("Gemm", [seqOut, table, w.weight("model.bias", m.model.bias)], {
    transB: attr.int(1),
  });
}
