/**
 * Text features from a user-supplied BERT-style ONNX encoder (e.g. bert-base-uncased exported
 * with `optimum-cli export onnx`) and its vocab.txt.
 *
 * Inputs fed: input_ids, plus attention_mask and token_type_ids when the model declares them
 * (DistilBERT has no token_type_ids). Output used: the one named in the options, else
 * "last_hidden_state" when present, else the first output. A [batch, seq, hidden] output is
 * pooled here: "cls" takes position 0, "mean" averages the positions the attention mask keeps.
 * A [batch, hidden] output is taken as already pooled (sentence-transformers exports).
 *
 * Texts are batched in order of token length so batches carry little padding; BERT's attention
 * mask makes each text's output independent of the padding, so the order changes no result.
 */
import { DataError, UsageError } from "../errors.ts";
import type { Progress } from "../progress.ts";
import { type BertTokenizer, type EncodedBatch, loadBertTokenizer } from "./bert_tokenizer.ts";
import {
  createSession,
  type OrtSession,
  type OrtTensor,
  ortTensor,
  pickOutput,
  runFloat,
} from "./ort.ts";

export interface TextEncodeOptions {
  pooling: "cls" | "mean";
  /** Tokens per text including [CLS] and [SEP]; longer texts are truncated (BERT: 512). */
  maxLength: number;
  batchSize: number;
  progress?: Progress;
  /** Model output to read; default "last_hidden_state" if present, else the first output. */
  output?: string;
  /** false for cased vocabularies; default true (uncased: lowercase and strip accents). */
  lowercase?: boolean;
}

export interface EncodedFeatures {
  dim: number;
  /** texts.length * dim values; rows of missing texts are 0. */
  data: Float32Array;
  /** 1 where the text was encoded, 0 for a null or blank text. */
  mask: Uint8Array;
}

/** Pools one text's [seq, hidden] block of a [batch, seq, hidden] output into `out`. */
export function poolHidden(
  hidden: Float32Array,
  b: number,
  seqLen: number,
  dim: number,
  tokens: number,
  pooling: "cls" | "mean",
  out: Float32Array,
): void {
  const base = b * seqLen * dim;
  if (pooling === "cls") {
    out.set(hidden.subarray(base, base + dim));
    return;
  }
  out.fill(0);
  for (let t = 0; t < tokens; t++) {
    const row = base + t * dim;
    for (let k = 0; k < dim; k++) out[k] += hidden[row + k];
  }
  for (let k = 0; k < dim; k++) out[k] /= tokens;
}

/** Encodes texts (null = missing) into one pooled vector each; rows align with `texts`. */
export async function encodeTexts(
  modelPath: string,
  vocabPath: string,
  texts: (string | null)[],
  opts: TextEncodeOptions,
): Promise<EncodedFeatures> {
  if (!(opts.batchSize >= 1)) {
    throw new UsageError(`batch size must be >= 1, got ${opts.batchSize}`);
  }
  if (!(opts.maxLength >= 2)) {
    throw new UsageError(`max length must be >= 2 ([CLS] and [SEP]), got ${opts.maxLength}`);
  }
  const tokenizer = await loadBertTokenizer(vocabPath, { lowercase: opts.lowercase });
  const session = await createSession(modelPath);
  if (!session.inputNames.includes("input_ids")) {
    throw new DataError(
      modelPath,
      null,
      null,
      `has no input_ids input (has: ${session.inputNames})`,
    );
  }
  try {
    return await encodeWithSession(session, modelPath, tokenizer, texts, opts);
  } finally {
    await session.release();
  }
}

async function encodeWithSession(
  session: OrtSession,
  modelPath: string,
  tokenizer: BertTokenizer,
  texts: (string | null)[],
  opts: TextEncodeOptions,
): Promise<EncodedFeatures> {
  const present = texts.flatMap((t, i) => (t !== null && t.trim() !== "" ? [i] : []));
  const encoded = new Map(present.map((i) => [i, tokenizer.encode(texts[i]!, opts.maxLength)]));
  // Stable sort: equal lengths keep input order, so the batching is deterministic.
  const order = [...present].sort((a, b) =>
    encoded.get(a)!.ids.length - encoded.get(b)!.ids.length
  );
  const mask = new Uint8Array(texts.length);
  const outName = pickOutput(session, modelPath, opts.output, ["last_hidden_state"]);
  const task = opts.progress?.start("encode texts", present.length, "texts");
  let dim = 0;
  let data = new Float32Array(0);

  for (let start = 0; start < order.length; start += opts.batchSize) {
    const idx = order.slice(start, start + opts.batchSize);
    const batch = tokenizer.pad(idx.map((i) => encoded.get(i)!));
    const out = (await runFloat(session, feedsFor(session, batch))).get(outName)!;
    const pooled = out.dims.length === 2;
    if (!(pooled || out.dims.length === 3) || out.dims[0] !== batch.batch) {
      throw new DataError(
        modelPath,
        null,
        outName,
        `output shape [${out.dims}] is neither [batch, seq, hidden] nor [batch, hidden]`,
      );
    }
    if (dim === 0) {
      dim = out.dims[out.dims.length - 1];
      data = new Float32Array(texts.length * dim);
    }
    for (let b = 0; b < idx.length; b++) {
      const row = data.subarray(idx[b] * dim, (idx[b] + 1) * dim);
      if (pooled) row.set(out.data.subarray(b * dim, (b + 1) * dim));
      else {
        poolHidden(out.data, b, batch.seqLen, dim, batch.lengths[b], opts.pooling, row);
      }
      mask[idx[b]] = 1;
    }
    task?.tick(idx.length);
  }
  task?.done(`${present.length} texts, dim ${dim}`);
  if (dim === 0) {
    // No text to encode: run one empty text to learn the output width.
    const probe = tokenizer.encodeBatch([""], opts.maxLength);
    const out = (await runFloat(session, feedsFor(session, probe))).get(outName)!;
    dim = out.dims[out.dims.length - 1];
    data = new Float32Array(texts.length * dim);
  }
  return { dim, data, mask };
}

/** The model inputs for a batch: input_ids, and the optional inputs the model declares. */
function feedsFor(session: OrtSession, batch: EncodedBatch): Record<string, OrtTensor> {
  const dims = [batch.batch, batch.seqLen];
  const feeds: Record<string, OrtTensor> = { input_ids: ortTensor("int64", batch.inputIds, dims) };
  if (session.inputNames.includes("attention_mask")) {
    feeds.attention_mask = ortTensor("int64", batch.attentionMask, dims);
  }
  if (session.inputNames.includes("token_type_ids")) {
    feeds.token_type_ids = ortTensor("int64", batch.tokenTypeIds, dims);
  }
  return feeds;
}
