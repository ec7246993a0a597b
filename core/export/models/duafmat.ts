/**
 * DuAF-MAT's inference graph. The item side is baked in: one [numItems + 1, d] table per modality
 * as the model computes it in eval mode (ID embeddings, projected text, projected images with
 * missing rows filled by MAT-MoE's accepted generated mean) and the scoring table. The graph
 * then does what the engine does per request:
 *
 *   e_i^m = E^m[item_i] + P_i                                    (Eq. 2)
 *   Δt_i = max(0, t_i - t_{i-1}) inside the history, 0 at i = 1 and on padding
 *   e_time = W2 [W1 log(Δt + 1) + b1; sin/cos(α t + β) interleaved] + b2     (Eq. 3-6)
 *   q_i = mean_{j <= i} of the average-fused (or ID) embeddings  (fusion.ts)
 *   ω_i = softmax_m <q_i, tanh(e_i^m + e_time_i)>, h_i = Σ_m ω_i^m e_i^m    (Eq. 7-8)
 *   LayerNorm -> transformer -> last step -> dot with the scoring table.
 *
 * Without fusion (the -DuAF ablation, or a single modality) h is the average of the modalities and
 * the graph does not read timestamps. With fusion it also outputs `modality_weights` [B, L, M].
 */
import type { DuafMat } from "../../models/duaf/duafmat.ts";
import type { GraphWriter } from "../graph_writer.ts";
import { attr } from "../onnx_graph.ts";
import {
  causalPaddingMask,
  flatten,
  gatherLast,
  lookupItems,
  positionEmbeddings,
  positionRange,
  type SequenceInputs,
  transformerEncoder,
  unflatten,
} from "../sequence_graph.ts";

/** Whether the graph reads timestamps (the time-aware fusion is on). */
export function duafUsesTime(m: DuafMat): boolean {
  return m.time !== null;
}

/** Σ x_m / M as the engine's averageFusion: sum in order, then scale. */
function average(w: GraphWriter, xs: string[]): string {
  let sum = xs[0];
  for (let i = 1; i < xs.length; i++) sum = w.op("Add", [sum, xs[i]]);
  return xs.length === 1 ? sum : w.op("Mul", [sum, w.f32([1 / xs.length], [])]);
}

/** e_time [B, L, d] from timestamps [B, L] (days since origin). */
function timeEmbedding(w: GraphWriter, io: SequenceInputs, m: DuafMat): string {
  const te = m.time!;
  const t = io.timestamps!;
  const d = m.cfg.hidden;
  const k = te.timeDim / 2;
  // Δt: t minus t shifted right by one step (first step minus itself = 0), masked to history.
  const first = w.op("Slice", [t, w.i64([0]), w.i64([1]), w.i64([1])]);
  const upToLast = w.op("Slice", [t, w.i64([0]), w.i64([-1]), w.i64([1])]);
  const prev = w.op("Concat", [first, upToLast], { axis: attr.int(1) });
  const inHistory = w.op("Cast", [
    w.op("Less", [
      w.op("Unsqueeze", [positionRange(io), w.i64([0])]),
      w.op("Unsqueeze", [io.seqLen, w.i64([1])]),
    ]),
  ], { to: attr.int(1) }); // [B, L] float
  const gaps = w.op("Mul", [
    w.op("Max", [w.op("Sub", [t, prev]), w.f32([0], [])]),
    inHistory,
  ]);
  const logGap = w.op("Log", [w.op("Add", [gaps, w.f32([1], [])])]);
  const inter = w.linear(
    w.op("Reshape", [logGap, w.i64([-1, 1])]),
    te.interval,
    "time_embedding.interval",
  );
  const angle = w.op("Add", [
    w.op("Mul", [w.op("Unsqueeze", [t, w.i64([2])]), w.weight("time_embedding.alpha", te.alpha)]),
    w.weight("time_embedding.beta", te.beta),
  ]); // [B, L, k]
  const pair = w.op("Concat", [
    w.op("Unsqueeze", [w.op("Sin", [angle]), w.i64([3])]),
    w.op("Unsqueeze", [w.op("Cos", [angle]), w.i64([3])]),
  ], { axis: attr.int(3) }); // [B, L, k, 2]: sin/cos interleaved
  const ts = w.op("Reshape", [pair, w.i64([-1, 2 * k])]);
  const time = w.linear(
    w.op("Concat", [inter, ts], { axis: attr.int(1) }),
    te.combine,
    "time_embedding.combine",
  );
  return unflatten(io, time, [d]);
}

/** fusionScore "projected" (fusion.ts): u = W_q [LN(q); LN(e_time)], k^m = W_k^m LN(e^m). */
function projectedScore(
  w: GraphWriter,
  io: SequenceInputs,
  m: DuafMat,
  seqs: string[],
  eTime: string,
  query: string,
): { keys: string; user: string; scale: number } {
  const f = m.projectedFusion!;
  const d = m.cfg.hidden;
  const ln = (x: string, norm: typeof f.keyNorm, name: string) =>
    w.layerNorm(flatten(io, x, d), norm, `fusion.${name}`);
  const both = w.op("Concat", [
    ln(query, f.queryNorm, "query_norm"),
    ln(eTime, f.timeNorm, "time_norm"),
  ], {
    axis: attr.int(1),
  });
  const user = unflatten(io, w.linear(both, f.query, "fusion.query"), [d]);
  const keys = seqs.map((s, i) => {
    const name = `key_${m.modalities[i]}`;
    const k = unflatten(io, w.linear(ln(s, f.keyNorm, "key_norm"), f.keys[i], `fusion.${name}`), [
      d,
    ]);
    return w.op("Unsqueeze", [k, w.i64([2])]);
  });
  return {
    keys: w.op("Concat", keys, { axis: attr.int(2) }),
    user,
    scale: m.cfg.duaf.weightScale / Math.sqrt(d),
  };
}

export function duafmatGraph(w: GraphWriter, io: SequenceInputs, m: DuafMat): string {
  const d = m.cfg.hidden;
  const tables = m.inferenceTables();
  const pos = positionEmbeddings(io, m.positionEmbedding, "position_embedding.weight");
  const names = m.modalities;
  const seqs = tables.modalities.map((table, i) => {
    const name = names[i] === "id" ? "item_embedding.weight" : `item_${names[i]}_table`;
    return w.op("Add", [lookupItems(io, w.weight(name, table)), pos], {}, `e_${names[i]}`);
  });
  let h: string;
  if (m.time) {
    const eTime = timeEmbedding(w, io, m);
    const base = m.cfg.duaf.query === "id" ? seqs[0] : average(w, seqs);
    // Causal running mean over steps: cumulative sum / (i + 1).
    const steps = w.op("Cast", [
      w.op("Add", [positionRange(io), w.i64([1], [])]),
    ], { to: attr.int(1) });
    const query = w.op("Div", [
      w.op("CumSum", [base, w.i64([1], [])]),
      w.op("Unsqueeze", [steps, w.i64([1])]), // [L, 1] broadcasts over [B, L, d]
    ]);
    const stacked = w.op("Concat", seqs.map((s) => w.op("Unsqueeze", [s, w.i64([2])])), {
      axis: attr.int(2),
    }); // [B, L, M, d]
    const { keys, user, scale } = m.projectedFusion
      ? projectedScore(w, io, m, seqs, eTime, query)
      : {
        keys: w.op("Tanh", [w.op("Add", [stacked, w.op("Unsqueeze", [eTime, w.i64([2])])])]),
        user: query,
        scale: m.cfg.duaf.weightScale,
      };
    const dots = w.op("ReduceSum", [
      w.op("Mul", [keys, w.op("Unsqueeze", [user, w.i64([2])])]),
      w.i64([-1]),
    ], { keepdims: attr.int(0) }); // [B, L, M]
    const logits = scale === 1 ? dots : w.op("Mul", [dots, w.f32([scale], [])]);
    const omega = w.op("Softmax", [logits], { axis: attr.int(-1) });
    w.extraOutputs.push({
      name: "modality_weights",
      value: omega,
      shape: ["batch", "seq", names.length],
    });
    h = w.op("ReduceSum", [
      w.op("Mul", [stacked, w.op("Unsqueeze", [omega, w.i64([3])])]),
      w.i64([2]),
    ], { keepdims: attr.int(0) });
  } else h = average(w, seqs);
  const h0 = w.layerNorm(flatten(io, h, d), m.norm, "LayerNorm");
  const out = transformerEncoder(io, m.encoder, h0, causalPaddingMask(io), "trm_encoder");
  const su = gatherLast(io, out);
  // The ID table itself when scoring with IDs (the writer stores each tensor once).
  const score = w.weight("item_score_table", tables.score);
  return w.op("Gemm", [su, score], { transB: attr.int(1) });
}
