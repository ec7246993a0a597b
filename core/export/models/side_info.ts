/**
 * Inference graphs of NOVA and DIF-SR. Attribute embeddings are item-side: each attribute's
 * [numItems + 1, width] table (category embedding, or the projected text row) is computed by the
 * engine at export time and baked in, so the graph gathers it by item like the ID table.
 * DIF-SR's concat / gate fusions mix every key column: the graph pads item_seq to maxLen first,
 * as the engine does.
 */
import type { Difsr } from "../../models/difsr.ts";
import type { Nova } from "../../models/nova.ts";
import type { AttributeEmbedding } from "../../models/side_attributes.ts";
import type { Linear } from "../../nn/layers.ts";
import type { DifLayer } from "../../nn/side_attention.ts";
import type { TransformerLayer } from "../../nn/transformer.ts";
import type { GraphWriter } from "../graph_writer.ts";
import { attr } from "../onnx_graph.ts";
import {
  attentionProbs,
  attentionTail,
  causalPaddingMask,
  flatten,
  gatherLast,
  lookupItems,
  positionEmbeddings,
  scoreItems,
  type SequenceInputs,
  splitHeads,
} from "../sequence_graph.ts";

/** Each attribute's item table gathered at the sequence: [B, L, width]. */
function attributeRows(io: SequenceInputs, attrs: readonly AttributeEmbedding[]): string[] {
  return attrs.map((a, j) => {
    const t = a.itemTable();
    return lookupItems(
      io,
      io.w.table(`attribute_embeddings.${j}.items`, [...t.shape], t.toFloat32()),
    );
  });
}

/** Raw scores q k^T of one stream, flat x [B * L, in]: [B, h, L, L]. */
function streamScores(
  io: SequenceInputs,
  x: string,
  [q, k]: [Linear, Linear],
  h: number,
  [qName, kName]: [string, string],
): string {
  const dh = q.outFeatures / h;
  const w = io.w;
  return w.op("MatMul", [
    splitHeads(io, w.linear(x, q, qName), h, dh),
    splitHeads(io, w.linear(x, k, kName), h, dh, true),
  ]);
}

/** The value half and the feed-forward block of a NOVA / DIF-SR layer; h and the result flat. */
function finishLayer(
  io: SequenceInputs,
  layer: TransformerLayer | DifLayer,
  scores: string,
  h: string,
  mask: string,
  p: string,
): string {
  const att = layer.attention;
  const nh = att.cfg.heads;
  const dh = att.cfg.hidden / nh;
  const probs = attentionProbs(io, scores, mask, dh);
  const v = splitHeads(io, io.w.linear(h, att.value, `${p}.multi_head_attention.value`), nh, dh);
  return attentionTail(io, layer, probs, v, h, p);
}

export function novaGraph(w: GraphWriter, io: SequenceInputs, m: Nova): string {
  const d = m.cfg.hidden;
  const item = lookupItems(io, w.weight("item_embedding.weight", m.itemEmbedding.weight));
  const pos = w.op("Expand", [
    positionEmbeddings(io, m.positionEmbedding, "position_embedding.weight"),
    w.op("Shape", [item]),
  ]);
  const features = [item, pos, ...attributeRows(io, m.attributeEmbeddings.items)].map((f) =>
    flatten(io, f, d)
  );
  let fused: string;
  if (m.concatLayer) {
    fused = w.linear(
      w.op("Concat", features, { axis: attr.int(-1) }),
      m.concatLayer,
      "concat_layer",
    );
  } else if (m.gate) {
    // [B * L, n, d]; gates σ(f w) [B * L, n, 1]; Σ_k g_k f_k.
    const stack = w.op("Concat", features.map((f) => w.op("Unsqueeze", [f, w.i64([1])])), {
      axis: attr.int(1),
    });
    const gates = w.op("Sigmoid", [
      w.op("MatMul", [stack, w.op("Transpose", [w.weight("gate.weight", m.gate.weight)])]),
    ]);
    fused = w.op("ReduceSum", [w.op("Mul", [stack, gates]), w.i64([1])], { keepdims: attr.int(0) });
  } else {
    fused = features.slice(1).reduce((acc, f) => w.op("Add", [acc, f]), features[0]);
  }
  const side = w.layerNorm(fused, m.norm, "LayerNorm");
  let h = w.layerNorm(features[0], m.norm, "LayerNorm");
  const mask = causalPaddingMask(io);
  m.encoder.layer.items.forEach((layer, i) => {
    const p = `trm_encoder.layer.${i}`;
    const att = layer.attention;
    const a = `${p}.multi_head_attention`;
    const scores = streamScores(io, side, [att.query, att.key], m.cfg.heads, [
      `${a}.query`,
      `${a}.key`,
    ]);
    h = finishLayer(io, layer, scores, h, mask, p);
  });
  return scoreItems(io, gatherLast(io, h), m.itemEmbedding.weight, "item_embedding.weight");
}

/** The inputs with item_seq right-padded to `len` (concat / gate fusion). */
export function padded(io: SequenceInputs, len: number): SequenceInputs {
  const w = io.w;
  const itemSeq = io.itemSeq!;
  const extra = w.op("Sub", [w.i64([len]), io.seqVec!]);
  const pads = w.op("Concat", [w.i64([0, 0, 0]), extra], { axis: attr.int(0) });
  return {
    ...io,
    itemSeq: w.op("Pad", [itemSeq, pads, w.i64([0], [])]),
    seq: w.i64([len], []),
    seqVec: w.i64([len]),
  };
}

export function difsrGraph(w: GraphWriter, src: SequenceInputs, m: Difsr): string {
  const d = m.cfg.hidden;
  const nh = m.cfg.heads;
  const len = m.cfg.maxLen;
  const io = m.cfg.fusion === "sum" ? src : padded(src, len);
  const item = lookupItems(io, w.weight("item_embedding.weight", m.itemEmbedding.weight));
  const pos = flatten(
    io,
    w.op("Expand", [
      positionEmbeddings(io, m.positionEmbedding, "position_embedding.weight"),
      w.op("Shape", [item]),
    ]),
    d,
  );
  const attrs = attributeRows(io, m.attributeEmbeddings.items).map((a, j) =>
    flatten(io, a, m.attributeEmbeddings.items[j].width)
  );
  let h = w.layerNorm(flatten(io, item, d), m.norm, "LayerNorm");
  const mask = causalPaddingMask(io);
  m.layers.items.forEach((layer, i) => {
    const p = `trm_encoder.layer.${i}`;
    const a = `${p}.multi_head_attention`;
    const att = layer.attention;
    const itemS = streamScores(io, h, [att.query, att.key], nh, [`${a}.query`, `${a}.key`]);
    const posS = streamScores(io, pos, [att.queryP, att.keyP], nh, [
      `${a}.query_p`,
      `${a}.key_p`,
    ]);
    const attrS = attrs.map((x, j) =>
      streamScores(io, x, [att.queryLayers.items[j], att.keyLayers.items[j]], nh, [
        `${a}.query_layers.${j}`,
        `${a}.key_layers.${j}`,
      ])
    );
    const streams = [...attrS, itemS, posS];
    let scores: string;
    const fourD = w.op("Concat", [io.batchVec, w.i64([nh, len, len])], { axis: attr.int(0) });
    if (att.concatFusion) {
      const cat = w.op("Concat", streams, { axis: attr.int(-1) });
      const flat = w.op("Reshape", [cat, w.i64([-1, streams.length * len])]);
      scores = w.op("Reshape", [w.linear(flat, att.concatFusion, `${a}.fusion_layer`), fourD]);
    } else if (att.gateFusion) {
      const s = streams.length;
      const stack = w.op("Concat", streams.map((x) => w.op("Unsqueeze", [x, w.i64([3])])), {
        axis: attr.int(3),
      }); // [B, h, L, S, L]
      const rows = w.op("Reshape", [stack, w.i64([-1, len])]);
      const proj = att.gateFusion.projection;
      const energy = w.linear(
        w.op("Relu", [w.linear(rows, proj.first, `${a}.fusion_layer.projection.0`)]),
        proj.second,
        `${a}.fusion_layer.projection.2`,
      );
      const weights = w.op("Softmax", [w.op("Reshape", [energy, w.i64([-1, 1, s])])], {
        axis: attr.int(-1),
      });
      const mixed = w.op("MatMul", [weights, w.op("Reshape", [stack, w.i64([-1, s, len])])]);
      scores = w.op("Reshape", [mixed, fourD]);
    } else {
      scores = streams.slice(1).reduce((acc, x) => w.op("Add", [acc, x]), streams[0]);
    }
    h = finishLayer(io, layer, scores, h, mask, p);
  });
  return scoreItems(io, gatherLast(io, h), m.itemEmbedding.weight, "item_embedding.weight");
}
