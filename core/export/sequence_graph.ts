/**
 * The pieces every exported sequential model shares: the graph inputs, the shape values derived
 * from them, learned positions, RecBole's causal padding mask, the transformer encoder, the
 * gather at each row's last valid step, and scoring against the item table.
 *
 * Inputs mirror the engine's SequenceBatch (right-padded; batch and seq are dynamic):
 *   item_seq      int64 [batch, seq]  item indices, 0 = padding after the last valid step
 *   item_seq_len  int64 [batch]       valid steps per row (1 .. seq)
 *   timestamps    float [batch, seq]  days since the dataset's first interaction
 * A model declares only the inputs it reads.
 *
 * Hidden states are kept flat, [batch * seq, d], between the embedding sum and the scores: every
 * Linear is then one Gemm with its bias, and only attention reshapes to [B, heads, L, dh].
 */
import type { Embedding, LayerNorm } from "../nn/layers.ts";
import type { FeedForward, TransformerEncoder, ValueAttention } from "../nn/transformer.ts";
import type { Tensor } from "../tensor.ts";
import type { GraphWriter } from "./graph_writer.ts";
import { attr } from "./onnx_graph.ts";

export const INPUT_NAMES = ["item_seq", "item_seq_len", "timestamps"] as const;
export type InputName = typeof INPUT_NAMES[number];

/** Names of the graph inputs and of shape values computed once from them. */
export interface SequenceInputs {
  w: GraphWriter;
  /** int64 [B, L]; absent for models that ignore the history (pop). */
  itemSeq: string | null;
  /** int64 [B]. */
  seqLen: string;
  /** float [B, L] when the model reads times. */
  timestamps: string | null;
  /** int64 [1]: B, for building shapes. */
  batchVec: string;
  /** int64 scalars B and L (L only with item_seq). */
  batch: string;
  seq: string | null;
  /** int64 [1]: L (only with item_seq). */
  seqVec: string | null;
}

export function declareInputs(w: GraphWriter, uses: readonly InputName[]): SequenceInputs {
  const want = (n: InputName) => uses.includes(n);
  const itemSeq = want("item_seq") ? w.g.input("item_seq", "int64", ["batch", "seq"]) : null;
  const seqLen = w.g.input("item_seq_len", "int64", ["batch"]);
  const timestamps = want("timestamps")
    ? w.g.input("timestamps", "float32", ["batch", "seq"])
    : null;
  let batchVec: string;
  let seq: string | null = null;
  let seqVec: string | null = null;
  if (itemSeq) {
    const shape = w.op("Shape", [itemSeq]);
    batchVec = w.op("Slice", [shape, w.i64([0]), w.i64([1])]);
    seqVec = w.op("Slice", [shape, w.i64([1]), w.i64([2])]);
    seq = w.op("Squeeze", [seqVec, w.i64([0])]);
  } else {
    batchVec = w.op("Shape", [seqLen]);
  }
  const batch = w.op("Squeeze", [batchVec, w.i64([0])]);
  return { w, itemSeq, seqLen, timestamps, batchVec, batch, seq, seqVec };
}

function needSeq(io: SequenceInputs): { itemSeq: string; seq: string; seqVec: string } {
  if (!io.itemSeq || !io.seq || !io.seqVec) {
    throw new Error("export: this block needs the item_seq input");
  }
  return { itemSeq: io.itemSeq, seq: io.seq, seqVec: io.seqVec };
}

/** [B, L, d] -> [B * L, d]. */
export function flatten(io: SequenceInputs, x: string, d: number): string {
  return io.w.op("Reshape", [x, io.w.i64([-1, d])]);
}

/** [B * L, ...tail] -> [B, L, ...tail]. */
export function unflatten(io: SequenceInputs, x: string, tail: number[]): string {
  const w = io.w;
  const shape = w.op("Concat", [io.batchVec, needSeq(io).seqVec, w.i64(tail)], {
    axis: attr.int(0),
  });
  return w.op("Reshape", [x, shape]);
}

/** int64 [L]: 0 .. L-1. */
export function positionRange(io: SequenceInputs): string {
  const { seq } = needSeq(io);
  return io.w.op("Range", [io.w.i64([0], []), seq, io.w.i64([1], [])]);
}

/** Learned position embeddings for 0 .. L-1: [L, d] (broadcasts over the batch). */
export function positionEmbeddings(io: SequenceInputs, table: Embedding, name: string): string {
  const w = io.w;
  return w.op("Gather", [w.weight(name, table.weight), positionRange(io)], { axis: attr.int(0) });
}

/** Gathers rows of a table at the item indices: [B, L, d]. */
export function lookupItems(io: SequenceInputs, table: string): string {
  return io.w.op("Gather", [table, needSeq(io).itemSeq], { axis: attr.int(0) });
}

/**
 * RecBole's additive attention mask: 0 where key j <= query i and item j is not padding,
 * -10000 elsewhere; [B, 1, L, L], as core/nn/transformer.ts causalPaddingMask builds it.
 */
export function causalPaddingMask(io: SequenceInputs): string {
  const w = io.w;
  const { itemSeq } = needSeq(io);
  const range = positionRange(io);
  const queries = w.op("Unsqueeze", [range, w.i64([1])]); // [L, 1]
  const keys = w.op("Unsqueeze", [range, w.i64([0])]); // [1, L]
  const causal = w.op("LessOrEqual", [keys, queries]); // [L, L]
  const notPad = w.op("Not", [w.op("Equal", [itemSeq, w.i64([0], [])])]); // [B, L]
  const keyOk = w.op("Unsqueeze", [notPad, w.i64([1, 2])]); // [B, 1, 1, L]
  const allowed = w.op("And", [causal, keyOk]); // [B, 1, L, L]
  return w.op("Where", [allowed, w.f32([0], []), w.f32([-10000], [])], {}, "attention_mask");
}

/** Flat [B * L, h * dh] -> [B, h, L, dh] (perm [0, 2, 1, 3]) or keys [B, h, dh, L]. */
export function splitHeads(io: SequenceInputs, x: string, h: number, dh: number, keys = false) {
  const perm = keys ? [0, 2, 3, 1] : [0, 2, 1, 3];
  return io.w.op("Transpose", [unflatten(io, x, [h, dh])], { perm: attr.ints(perm) });
}

/** softmax(scores / sqrt(dh) + mask) over the keys, scores the raw q k^T [B, h, L, L]. */
export function attentionProbs(io: SequenceInputs, scores: string, mask: string, dh: number) {
  const w = io.w;
  const logits = w.op("Add", [w.op("Mul", [scores, w.f32([1 / Math.sqrt(dh)], [])]), mask]);
  return w.op("Softmax", [logits], { axis: attr.int(-1) });
}

/** A transformer layer's attention output and feed-forward block (ValueAttention, FeedForward). */
export interface AttentionLayer {
  readonly attention: ValueAttention;
  readonly ffn: FeedForward;
}

/**
 * The rest of the layer `p` after the attention probabilities: probs [B, h, L, L] mix the values
 * v [B, h, L, dh]; dense, LayerNorm(+ h), then the feed-forward block. h and the result flat.
 */
export function attentionTail(
  io: SequenceInputs,
  layer: AttentionLayer,
  probs: string,
  v: string,
  h: string,
  p: string,
): string {
  const w = io.w;
  const att = layer.attention;
  const a = `${p}.multi_head_attention`;
  const context = flatten(
    io,
    w.op("Transpose", [w.op("MatMul", [probs, v])], { perm: attr.ints([0, 2, 1, 3]) }),
    att.cfg.hidden,
  );
  const attended = w.layerNorm(
    w.op("Add", [w.linear(context, att.dense, `${a}.dense`), h]),
    att.norm,
    `${a}.LayerNorm`,
  );
  const f = `${p}.feed_forward`;
  const inner = w.gelu(w.linear(attended, layer.ffn.dense1, `${f}.dense_1`));
  return w.layerNorm(
    w.op("Add", [w.linear(inner, layer.ffn.dense2, `${f}.dense_2`), attended]),
    layer.ffn.norm,
    `${f}.LayerNorm`,
  );
}

/**
 * The encoder of core/nn/transformer.ts (post-LN blocks, exact GELU), dropout off.
 * x and the result are flat [B * L, d].
 */
export function transformerEncoder(
  io: SequenceInputs,
  enc: TransformerEncoder,
  x: string,
  mask: string,
  name: string,
): string {
  const w = io.w;
  let h = x;
  enc.layer.items.forEach((layer, i) => {
    const p = `${name}.layer.${i}`;
    const att = layer.attention;
    const nh = att.cfg.heads;
    const dh = att.cfg.hidden / nh;
    const a = `${p}.multi_head_attention`;
    const q = splitHeads(io, w.linear(h, att.query, `${a}.query`), nh, dh);
    const kT = splitHeads(io, w.linear(h, att.key, `${a}.key`), nh, dh, true);
    const v = splitHeads(io, w.linear(h, att.value, `${a}.value`), nh, dh);
    const probs = attentionProbs(io, w.op("MatMul", [q, kT]), mask, dh);
    h = attentionTail(io, layer, probs, v, h, p);
  });
  return h;
}

/** Rows of flat states h [B * L, d] at each sequence's last valid step: [B, d]. */
export function gatherLast(io: SequenceInputs, h: string): string {
  const w = io.w;
  const { seq } = needSeq(io);
  const rows = w.op("Range", [w.i64([0], []), io.batch, w.i64([1], [])]);
  const flatIdx = w.op("Add", [w.op("Mul", [rows, seq]), w.op("Sub", [io.seqLen, w.i64([1], [])])]);
  return w.op("Gather", [h, flatIdx], { axis: attr.int(0) }, "last_state");
}

/** Dot products of sequence representations [B, d] with every item row: [B, numItems + 1]. */
export function scoreItems(io: SequenceInputs, seqOut: string, itemTable: Tensor, name: string) {
  return io.w.op("Gemm", [seqOut, io.w.weight(name, itemTable)], { transB: attr.int(1) });
}

/** The parts of a model that runs SASRec's encoder over an item table it computes itself. */
export interface TableEncoder {
  inferenceTable(): Tensor;
  readonly positionEmbedding: Embedding;
  readonly norm: LayerNorm;
  readonly encoder: TransformerEncoder;
  readonly cfg: { hidden: number };
}

/**
 * SASRec's path over a baked item table (the model's eval-mode table, an initializer
 * `item_table`): items + positions -> LayerNorm -> encoder -> last step -> dot with the table.
 */
export function tableEncoderGraph(io: SequenceInputs, m: TableEncoder): string {
  const w = io.w;
  const table = m.inferenceTable();
  const x = w.op("Add", [
    lookupItems(io, w.weight("item_table", table)),
    positionEmbeddings(io, m.positionEmbedding, "position_embedding.weight"),
  ]);
  const h0 = w.layerNorm(flatten(io, x, m.cfg.hidden), m.norm, "LayerNorm");
  const h = transformerEncoder(io, m.encoder, h0, causalPaddingMask(io), "trm_encoder");
  return scoreItems(io, gatherLast(io, h), table, "item_table");
}
