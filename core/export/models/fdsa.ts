/**
 * FDSA's inference graph: the item stream and the text-feature stream (frozen text features baked
 * in as an initializer), each through its own encoder, fused by the concat layer.
 */
import type { Fdsa } from "../../models/fdsa.ts";
import type { GraphWriter } from "../graph_writer.ts";
import { attr } from "../onnx_graph.ts";
import {
  causalPaddingMask,
  flatten,
  gatherLast,
  lookupItems,
  positionEmbeddings,
  scoreItems,
  type SequenceInputs,
  transformerEncoder,
  unflatten,
} from "../sequence_graph.ts";

export function fdsaGraph(w: GraphWriter, io: SequenceInputs, m: Fdsa): string {
  const d = m.cfg.hidden;
  const pos = positionEmbeddings(io, m.positionEmbedding, "position_embedding.weight");
  const mask = causalPaddingMask(io);
  const items = w.weight("item_embedding.weight", m.itemEmbedding.weight);

  const itemSum = flatten(io, w.op("Add", [lookupItems(io, items), pos]), d);
  const itemIn = w.layerNorm(itemSum, m.norm, "LayerNorm");
  const itemOut = gatherLast(
    io,
    transformerEncoder(io, m.itemEncoder, itemIn, mask, "item_trm_encoder"),
  );

  // As in the engine: gather the sequence's feature rows, then project them.
  const text = w.weight("item_text_features", m.textTable);
  const rows = flatten(io, lookupItems(io, text), m.featureProjection.inFeatures);
  const feat = unflatten(io, w.linear(rows, m.featureProjection, "feature_projection"), [d]);
  const featIn = w.layerNorm(flatten(io, w.op("Add", [feat, pos]), d), m.norm, "LayerNorm");
  const featOut = gatherLast(
    io,
    transformerEncoder(io, m.featureEncoder, featIn, mask, "feature_trm_encoder"),
  );

  const fused = w.linear(
    w.op("Concat", [itemOut, featOut], { axis: attr.int(-1) }),
    m.concatLayer,
    "concat_layer",
  );
  const seqOut = w.layerNorm(fused, m.norm, "LayerNorm");
  return scoreItems(io, seqOut, m.itemEmbedding.weight, "item_embedding.weight");
}
