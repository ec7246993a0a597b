// BERT uncased WordPiece on the fixture vocabulary (fixtures/encoders/vocab.txt). Each expected
// token list is worked out by hand from the BasicTokenizer + greedy longest-match algorithm and
// the pieces that vocabulary holds.
import assert from "node:assert/strict";
import { DataError } from "../core/errors.ts";
import { loadBertTokenizer, parseVocab } from "../core/features/bert_tokenizer.ts";

const VOCAB = new URL("../fixtures/encoders/vocab.txt", import.meta.url).pathname;
const tok = await loadBertTokenizer(VOCAB);
const cased = await loadBertTokenizer(VOCAB, { lowercase: false });

Deno.test("tokenizer: the original BERT test case (un ##want ##ed runn ##ing)", () => {
  assert.deepEqual(tok.tokenize("UNwant\u00E9d,running"), [
    "un",
    "##want",
    "##ed",
    ",",
    "runn",
    "##ing",
  ]);
});

Deno.test("tokenizer: a word with a piece missing from the vocabulary is one [UNK]", () => {
  // "€" is neither punctuation nor in the vocabulary, so "unwanted€" has no full cover.
  assert.deepEqual(tok.tokenize("unwanted\u20AC running"), ["[UNK]", "runn", "##ing"]);
});

Deno.test("tokenizer: greedy longest match takes 'lips' before 'lip'", () => {
  // "lips" is the longest prefix in the vocabulary; only single-letter ## pieces cover "tick".
  assert.deepEqual(tok.tokenize("Lipstick"), ["lips", "##t", "##i", "##c", "##k"]);
  assert.deepEqual(tok.tokenize("eyeliner"), ["eye", "##liner"]);
});

Deno.test("tokenizer: lowercases and strips accents (uncased)", () => {
  assert.deepEqual(tok.tokenize("H\u00E9llo W\u00D6RLD Caf\u00E9 NA\u00CFVE"), [
    "hello",
    "world",
    "cafe",
    "naive",
  ]);
});

Deno.test("tokenizer: splits every punctuation char, ASCII symbols included", () => {
  // BERT counts all non-alphanumeric ASCII ($ + < = > ^ ` | ~ too) as punctuation.
  assert.deepEqual(tok.tokenize("hello,world!!"), ["hello", ",", "world", "!", "!"]);
  assert.deepEqual(tok.tokenize("5$+a=b|c~d"), ["5", "$", "+", "a", "=", "b", "|", "c", "~", "d"]);
  assert.deepEqual(tok.tokenize("oil (8 oz.)"), ["oil", "(", "8", "oz", ".", ")"]);
});

Deno.test("tokenizer: CJK characters become single tokens without spaces", () => {
  assert.deepEqual(tok.tokenize("日本中文"), ["日", "本", "中", "文"]);
  assert.deepEqual(tok.tokenize("tea中"), ["tea", "中"]);
});

Deno.test("tokenizer: control chars are dropped, any whitespace splits", () => {
  assert.deepEqual(tok.tokenize("hello\u0000\tworld\u200B\n  hair"), ["hello", "world", "hair"]);
  assert.deepEqual(tok.tokenize(" \t\n"), []);
});

Deno.test("tokenizer: words over 100 characters are [UNK]", () => {
  const w100 = "a".repeat(100);
  assert.deepEqual(tok.tokenize(w100), ["a", ...Array(99).fill("##a")]);
  assert.deepEqual(tok.tokenize(w100 + "a hair"), ["[UNK]", "hair"]);
});

Deno.test("tokenizer: special tokens written in the text stay whole (BertTokenizerFast)", () => {
  assert.deepEqual(tok.tokenize("[MASK] hair"), ["[MASK]", "hair"]);
});

Deno.test("tokenizer: cased mode keeps case and accents", () => {
  assert.deepEqual(cased.tokenize("Hair hair"), ["[UNK]", "hair"]);
  assert.deepEqual(cased.tokenize("caf\u00E9"), ["[UNK]"]);
  assert.deepEqual(tok.tokenize("caf\u00E9"), ["cafe"]);
});

Deno.test("tokenizer: encode adds [CLS]/[SEP] and truncates to maxLength", () => {
  const vocab = Deno.readTextFileSync(VOCAB).split("\n");
  const id = (t: string) => vocab.indexOf(t);
  const full = tok.encode("unwanted running", 512);
  assert.deepEqual(full.tokens, ["[CLS]", "un", "##want", "##ed", "runn", "##ing", "[SEP]"]);
  assert.deepEqual(full.ids, full.tokens.map(id));
  const cut = tok.encode("unwanted running", 4);
  assert.deepEqual(cut.tokens, ["[CLS]", "un", "##want", "[SEP]"]);
  assert.deepEqual(tok.encode("", 8).tokens, ["[CLS]", "[SEP]"]);
  assert.throws(() => tok.encode("x", 1), RangeError);
});

Deno.test("tokenizer: batches pad with [PAD] and mask the padding", () => {
  const b = tok.encodeBatch(["hair", "red lip gloss"], 16);
  assert.equal(b.batch, 2);
  assert.equal(b.seqLen, 5);
  assert.deepEqual(b.lengths, [3, 5]);
  const pad = BigInt(tok.padId);
  assert.deepEqual([...b.inputIds.slice(0, 5)], [
    BigInt(tok.clsId),
    BigInt(tok.encode("hair", 16).ids[1]),
    BigInt(tok.sepId),
    pad,
    pad,
  ]);
  assert.deepEqual([...b.attentionMask], [1n, 1n, 1n, 0n, 0n, 1n, 1n, 1n, 1n, 1n]);
  assert.deepEqual([...b.tokenTypeIds], Array(10).fill(0n));
});

Deno.test("tokenizer: vocabulary parsing", () => {
  const { vocab, size } = parseVocab("[PAD]\r\n[UNK]\n[CLS]\n[SEP]\nhi\n", "v.txt");
  assert.equal(size, 5);
  assert.equal(vocab.get("[UNK]"), 1);
  assert.equal(vocab.get("hi"), 4);
  assert.throws(
    () => parseVocab("[PAD]\n[UNK]\n[SEP]\n", "v.txt"),
    (e) => e instanceof DataError && e.message === "v.txt: vocabulary has no [CLS] token",
  );
});
