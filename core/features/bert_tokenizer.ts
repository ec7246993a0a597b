/**
 * BERT WordPiece tokenization from a vocab.txt, as Hugging Face's BertTokenizerFast does it:
 * clean control characters, put spaces around CJK characters, lowercase and strip accents
 * (uncased), split on whitespace and punctuation, then greedy longest-match WordPiece with "##"
 * continuations; a word longer than 100 characters or with an unmatched piece becomes [UNK].
 *
 * The algorithm itself comes from @huggingface/tokenizers (the pure-JS port of the Rust
 * `tokenizers` crate): we build the tokenizer.json that BertTokenizerFast would build from the
 * same vocab.txt and add truncation, [CLS]/[SEP] and batch padding here.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { DataError } from "../errors.ts";

const SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] as const;
const REQUIRED = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] as const;

export interface BertTokenizerOptions {
  /** Uncased models (bert-base-uncased) lowercase and strip accents; default true. */
  lowercase?: boolean;
}

/** Token ids of one text, with [CLS] first and [SEP] last. */
export interface Encoded {
  ids: number[];
  tokens: string[];
}

/** A padded batch in the layout BERT ONNX exports take (int64, [batch, seqLen], row-major). */
export interface EncodedBatch {
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  tokenTypeIds: BigInt64Array;
  batch: number;
  seqLen: number;
  /** Tokens of each text including [CLS] and [SEP] (the unpadded length). */
  lengths: number[];
}

export class BertTokenizer {
  readonly #tok: Tokenizer;
  readonly vocabSize: number;
  readonly padId: number;
  readonly unkId: number;
  readonly clsId: number;
  readonly sepId: number;

  constructor(vocab: Map<string, number>, vocabSize: number, opts: BertTokenizerOptions = {}) {
    const lowercase = opts.lowercase ?? true;
    const id = (t: string) => vocab.get(t)!;
    this.padId = id("[PAD]");
    this.unkId = id("[UNK]");
    this.clsId = id("[CLS]");
    this.sepId = id("[SEP]");
    this.vocabSize = vocabSize;
    const json = {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: SPECIALS.filter((t) => vocab.has(t)).map((t) => ({
        id: id(t),
        content: t,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
      normalizer: {
        type: "BertNormalizer",
        clean_text: true,
        handle_chinese_chars: true,
        strip_accents: null, // follows `lowercase`, as in BertTokenizerFast
        lowercase,
      },
      pre_tokenizer: { type: "BertPreTokenizer" },
      post_processor: null,
      decoder: { type: "WordPiece", prefix: "##", cleanup: true },
      model: {
        type: "WordPiece",
        unk_token: "[UNK]",
        continuing_subword_prefix: "##",
        max_input_chars_per_word: 100,
        vocab: Object.fromEntries(vocab),
      },
    };
    this.#tok = new Tokenizer(json, {});
  }

  /** WordPiece tokens of `text`, without [CLS]/[SEP]. */
  tokenize(text: string): string[] {
    return this.#tok.tokenize(text);
  }

  /** [CLS] tokens [SEP], keeping the first maxLength - 2 word pieces. */
  encode(text: string, maxLength: number): Encoded {
    if (!(maxLength >= 2)) throw new RangeError(`maxLength must be at least 2, got ${maxLength}`);
    const enc = this.#tok.encode(text, { add_special_tokens: false });
    const keep = Math.min(enc.ids.length, maxLength - 2);
    return {
      ids: [this.clsId, ...enc.ids.slice(0, keep), this.sepId],
      tokens: ["[CLS]", ...enc.tokens.slice(0, keep), "[SEP]"],
    };
  }

  /** Encodes texts and pads them with [PAD] to the longest in the batch. */
  encodeBatch(texts: readonly string[], maxLength: number): EncodedBatch {
    return this.pad(texts.map((t) => this.encode(t, maxLength)));
  }

  /** Pads encoded texts with [PAD] to the longest of them. */
  pad(encoded: readonly Encoded[]): EncodedBatch {
    const seqLen = Math.max(2, ...encoded.map((e) => e.ids.length));
    const n = encoded.length * seqLen;
    const inputIds = new BigInt64Array(n).fill(BigInt(this.padId));
    const attentionMask = new BigInt64Array(n);
    encoded.forEach((e, b) => {
      for (let j = 0; j < e.ids.length; j++) {
        inputIds[b * seqLen + j] = BigInt(e.ids[j]);
        attentionMask[b * seqLen + j] = 1n;
      }
    });
    // Single-segment input: every token type is 0.
    const tokenTypeIds = new BigInt64Array(n);
    const lengths = encoded.map((e) => e.ids.length);
    return { inputIds, attentionMask, tokenTypeIds, batch: encoded.length, seqLen, lengths };
  }
}

/**
 * Parses vocab.txt (one token per line; the line number, from 0, is the id), as
 * transformers' load_vocab does. [PAD], [UNK], [CLS] and [SEP] must be present.
 * The embedding table has one row per line, so the vocabulary size is the line count.
 */
export function parseVocab(
  text: string,
  file: string,
): { vocab: Map<string, number>; size: number } {
  const lines = text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const vocab = new Map<string, number>();
  // A repeated token keeps its last id, as in transformers.
  lines.forEach((line, i) => vocab.set(line.endsWith("\r") ? line.slice(0, -1) : line, i));
  for (const t of REQUIRED) {
    if (!vocab.has(t)) throw new DataError(file, null, null, `vocabulary has no ${t} token`);
  }
  return { vocab, size: lines.length };
}

/** Loads a BERT vocab.txt as a tokenizer. */
export async function loadBertTokenizer(
  vocabPath: string,
  opts: BertTokenizerOptions = {},
): Promise<BertTokenizer> {
  let text: string;
  try {
    text = await Deno.readTextFile(vocabPath);
  } catch (e) {
    throw new DataError(vocabPath, null, null, `cannot read vocabulary: ${(e as Error).message}`);
  }
  const { vocab, size } = parseVocab(text, vocabPath);
  return new BertTokenizer(vocab, size, opts);
}
