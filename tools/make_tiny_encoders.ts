/**
 * Writes the tiny ONNX encoders the tests run through onnxruntime: a BERT-shaped text encoder,
 * an image encoder and a WordPiece vocabulary, all in fixtures/encoders/. Weights are random
 * from a fixed seed, so a rerun writes the same bytes (a test checks this).
 *
 *   deno run -A tools/make_tiny_encoders.ts [OUT_DIR]
 *
 * Text encoder (inputs input_ids, attention_mask, token_type_ids: int64 [batch, seq]):
 *   emb = word_embeddings[input_ids] + token_type_embeddings[token_type_ids]
 *   ctx = sum_j mask_j * emb_j / sum_j mask_j          (masked mean over the sequence)
 *   last_hidden_state = tanh((emb + ctx) @ dense_w + dense_b)     [batch, seq, 32]
 * The context term makes every position, [CLS] included, depend on the whole text, as in BERT,
 * and padding changes nothing. Image encoder (pixel_values float32 [batch, 3, 32, 32]):
 *   image_embeds = flatten(pixel_values) @ proj_w + proj_b          [batch, 8]
 */
import { join } from "node:path";
import { attr, OnnxGraphBuilder, tensor } from "../core/export/onnx_graph.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { Rng } from "../core/random.ts";

export const TEXT_HIDDEN = 32;
export const IMAGE_SIZE = 32;
export const IMAGE_DIM = 8;
const SEED = 20260101;

const SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const PUNCTUATION = [..."!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"];
const LETTERS = [..."abcdefghijklmnopqrstuvwxyz"];
const DIGITS = [..."0123456789"];
// Pieces from the original BERT tokenizer tests ("unwanted running" -> un ##want ##ed runn ##ing).
const BERT_TEST_PIECES = ["want", "##want", "##ed", "wa", "un", "runn", "##ing", "##aff", "##able"];
const WORDS = `the a an and or of for with to in on by from new set pack kit size oz ml fl
hello world cafe naive resume
beauty lip lips ##stick stick gloss balm liner eye eyes ##liner shadow ##shadow mascara brow
face facial cream ##cream lotion serum oil oils mask ##mask toner cleanser wash scrub soap
skin ##care care hair ##spray spray shampoo conditioner gel ##gel wax comb brush ##brush
nail nails polish ##polish coat base top clear matte glossy shine shimmer glitter
red pink nude coral berry plum rose black brown white gold silver blue green purple
dry oily normal sensitive daily night day anti aging age wrinkle moist ##ur ##izer ##izing
vitamin ##c ##e natural organic argan coconut shea butter aloe tea tree lavender mint vanilla
scent ##ed fresh free sulfate paraben fragrance travel mini full deluxe sample
long lasting water ##proof waterproof volume curl ##ing straight smooth soft repair
men women unisex professional salon spa bath body hand foot feet
toy toys game games play ##er player puzzle doll car ##s kids baby home kitchen
中 文 日 本`.split(/\s+/).filter((w) => w !== "");

/** The fixture vocabulary, one token per line; ids are line numbers from 0. */
export function tinyVocab(): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (
    const t of [
      ...SPECIAL,
      ...PUNCTUATION,
      ...DIGITS,
      ...LETTERS,
      ...LETTERS.map((l) => "##" + l),
      ...DIGITS.map((d) => "##" + d),
      ...BERT_TEST_PIECES,
      ...WORDS,
    ]
  ) {
    if (!seen.has(t)) {
      seen.add(t);
      out.push(t);
    }
  }
  return out;
}

function normalArray(rng: Rng, n: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

const DOC = "tiny random test encoder for duaf (tools/make_tiny_encoders.ts); not a trained model";

/** The text encoder's ONNX bytes for a vocabulary of `vocabSize` tokens. */
export function buildTinyTextEncoder(vocabSize: number): Uint8Array {
  const rng = new Rng(SEED);
  const h = TEXT_HIDDEN;
  const g = new OnnxGraphBuilder("tiny_text_encoder");
  for (const name of ["input_ids", "attention_mask", "token_type_ids"]) {
    g.input(name, "int64", ["batch", "sequence"]);
  }
  g.initializer(
    "word_embeddings",
    tensor("float32", [vocabSize, h], normalArray(rng, vocabSize * h, 0.5)),
  );
  g.initializer("token_type_embeddings", tensor("float32", [2, h], normalArray(rng, 2 * h, 0.5)));
  g.initializer("dense_w", tensor("float32", [h, h], normalArray(rng, h * h, 1 / Math.sqrt(h))));
  g.initializer("dense_b", tensor("float32", [h], normalArray(rng, h, 0.1)));
  g.initializer("axis_last", tensor("int64", [1], [-1]));
  g.initializer("axis_seq", tensor("int64", [1], [1]));

  g.node("Gather", ["word_embeddings", "input_ids"], ["word_emb"]);
  g.node("Gather", ["token_type_embeddings", "token_type_ids"], ["type_emb"]);
  g.node("Add", ["word_emb", "type_emb"], ["emb"]);
  g.node("Cast", ["attention_mask"], ["mask_f"], { to: attr.int(1) }); // 1 = FLOAT
  g.node("Unsqueeze", ["mask_f", "axis_last"], ["mask3"]);
  g.node("Mul", ["emb", "mask3"], ["emb_masked"]);
  g.node("ReduceSum", ["emb_masked", "axis_seq"], ["emb_sum"], { keepdims: attr.int(1) });
  g.node("ReduceSum", ["mask3", "axis_seq"], ["mask_count"], { keepdims: attr.int(1) });
  g.node("Div", ["emb_sum", "mask_count"], ["context"]);
  g.node("Add", ["emb", "context"], ["mixed"]);
  g.node("MatMul", ["mixed", "dense_w"], ["dense"]);
  g.node("Add", ["dense", "dense_b"], ["dense_biased"]);
  g.node("Tanh", ["dense_biased"], ["last_hidden_state"]);
  g.output("last_hidden_state", "float32", ["batch", "sequence", h]);
  return g.toBytes({ opset: 17, docString: DOC });
}

/** The image encoder's ONNX bytes. */
export function buildTinyImageEncoder(): Uint8Array {
  const rng = new Rng(SEED + 1);
  const n = 3 * IMAGE_SIZE * IMAGE_SIZE;
  const g = new OnnxGraphBuilder("tiny_image_encoder");
  g.input("pixel_values", "float32", ["batch", 3, IMAGE_SIZE, IMAGE_SIZE]);
  g.initializer(
    "proj_w",
    tensor("float32", [n, IMAGE_DIM], normalArray(rng, n * IMAGE_DIM, 1 / Math.sqrt(n))),
  );
  g.initializer("proj_b", tensor("float32", [IMAGE_DIM], normalArray(rng, IMAGE_DIM, 0.1)));
  g.node("Flatten", ["pixel_values"], ["flat"], { axis: attr.int(1) });
  g.node("MatMul", ["flat", "proj_w"], ["proj"]);
  g.node("Add", ["proj", "proj_b"], ["image_embeds"]);
  g.output("image_embeds", "float32", ["batch", IMAGE_DIM]);
  return g.toBytes({ opset: 17, docString: DOC });
}

/** Every fixture file by name. */
export function tinyEncoderFiles(): Map<string, Uint8Array> {
  const vocab = tinyVocab();
  return new Map([
    ["vocab.txt", new TextEncoder().encode(vocab.join("\n") + "\n")],
    ["tiny_text_encoder.onnx", buildTinyTextEncoder(vocab.length)],
    ["tiny_image_encoder.onnx", buildTinyImageEncoder()],
  ]);
}

if (import.meta.main) {
  const dir = Deno.args[0] ?? "fixtures/encoders";
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, bytes] of tinyEncoderFiles()) {
    await writeFileAtomic(join(dir, name), bytes);
    console.log(`${join(dir, name)}  ${bytes.length} bytes`);
  }
}
