// The ONNX text encoder path end to end on the tiny fixture model: onnxruntime-web's output,
// pooled by encodeTexts, must match the same network computed directly from the weights stored
// in the .onnx file.
import assert from "node:assert/strict";
import { DataError } from "../core/errors.ts";
import { readOnnxModel } from "../core/export/onnx_graph.ts";
import { loadBertTokenizer } from "../core/features/bert_tokenizer.ts";
import { encodeTexts } from "../core/features/onnx_text.ts";

const dir = new URL("../fixtures/encoders/", import.meta.url).pathname;
const MODEL = dir + "tiny_text_encoder.onnx";
const VOCAB = dir + "vocab.txt";

const model = readOnnxModel(await Deno.readFile(MODEL));
const weight = (name: string) => model.initializers.get(name)!.data as Float32Array;
const wordEmb = weight("word_embeddings");
const typeEmb = weight("token_type_embeddings");
const denseW = weight("dense_w");
const denseB = weight("dense_b");
const H = model.initializers.get("dense_b")!.dims[0];
const tokenizer = await loadBertTokenizer(VOCAB);

/** The tiny encoder's forward pass for one text, in float64, then pooled. */
function reference(text: string, maxLength: number, pooling: "cls" | "mean"): number[] {
  const ids = tokenizer.encode(text, maxLength).ids;
  const emb = ids.map((id) =>
    Array.from({ length: H }, (_, k) => wordEmb[id * H + k] + typeEmb[k])
  );
  const ctx = Array.from({ length: H }, (_, k) => emb.reduce((s, e) => s + e[k], 0) / ids.length);
  const hidden = emb.map((e) =>
    Array.from({ length: H }, (_, j) => {
      let z = denseB[j];
      for (let k = 0; k < H; k++) z += (e[k] + ctx[k]) * denseW[k * H + j];
      return Math.tanh(z);
    })
  );
  if (pooling === "cls") return hidden[0];
  return Array.from({ length: H }, (_, k) => hidden.reduce((s, h) => s + h[k], 0) / ids.length);
}

const TEXTS = [
  "Red lipstick, long lasting (0.15 oz)",
  null,
  "hair spray",
  "   ",
  "UNwanted running shampoo for dry hair with argan oil and vitamin e",
  "中文 nail polish",
];

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number) {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) {
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= tol,
      `index ${i}: ${actual[i]} vs ${expected[i]}`,
    );
  }
}

for (const pooling of ["cls", "mean"] as const) {
  Deno.test(`onnx text: ${pooling} pooling matches the direct computation within 1e-5`, async () => {
    const out = await encodeTexts(MODEL, VOCAB, TEXTS, { pooling, maxLength: 12, batchSize: 4 });
    assert.equal(out.dim, H);
    assert.deepEqual([...out.mask], [1, 0, 1, 0, 1, 1]);
    TEXTS.forEach((t, i) => {
      const got = out.data.subarray(i * H, (i + 1) * H);
      if (t === null || t.trim() === "") assert.ok(got.every((v) => v === 0));
      else assertClose(got, reference(t, 12, pooling), 1e-5);
    });
  });
}

Deno.test("onnx text: batch size and padding do not change a text's vector", async () => {
  const opts = { pooling: "mean" as const, maxLength: 64 };
  const one = await encodeTexts(MODEL, VOCAB, TEXTS, { ...opts, batchSize: 1 });
  const all = await encodeTexts(MODEL, VOCAB, TEXTS, { ...opts, batchSize: 6 });
  assertClose(all.data, one.data, 1e-6);
  // Pooled vectors differ between texts (the encoder is not degenerate).
  assert.ok(Math.abs(one.data[0] - one.data[2 * H]) > 1e-3);
});

Deno.test("onnx text: no texts at all still reports the width", async () => {
  const out = await encodeTexts(MODEL, VOCAB, [null, ""], {
    pooling: "cls",
    maxLength: 8,
    batchSize: 2,
  });
  assert.equal(out.dim, H);
  assert.equal(out.data.length, 2 * H);
  assert.deepEqual([...out.mask], [0, 0]);
});

Deno.test("onnx text: progress sees every present text", async () => {
  const ticks: number[] = [];
  let summary = "";
  const progress = {
    start: (_label: string, total: number | null) => {
      ticks.push(total ?? -1);
      return { tick: (n = 1) => void ticks.push(n), done: (s = "") => void (summary = s) };
    },
    log() {},
  };
  await encodeTexts(MODEL, VOCAB, TEXTS, { pooling: "cls", maxLength: 8, batchSize: 3, progress });
  assert.deepEqual(ticks, [4, 3, 1]);
  assert.equal(summary, `4 texts, dim ${H}`);
});

Deno.test("onnx text: unreadable model or vocabulary is a DataError", async () => {
  const opts = { pooling: "cls" as const, maxLength: 8, batchSize: 2 };
  await assert.rejects(
    encodeTexts(VOCAB, VOCAB, ["x"], opts),
    (e) => e instanceof DataError && e.message.startsWith(`${VOCAB}: not a loadable ONNX model`),
  );
  await assert.rejects(
    encodeTexts(MODEL, dir + "missing_vocab.txt", ["x"], opts),
    (e) =>
      e instanceof DataError && e.message.includes("missing_vocab.txt: cannot read vocabulary"),
  );
  const imageModel = dir + "tiny_image_encoder.onnx";
  await assert.rejects(
    encodeTexts(imageModel, VOCAB, ["x"], opts),
    (e) => e instanceof DataError && e.message.includes("has no input_ids input"),
  );
});

Deno.test("onnx text: a named output that the model lacks is a DataError", async () => {
  await assert.rejects(
    encodeTexts(MODEL, VOCAB, ["hair"], {
      pooling: "cls",
      maxLength: 8,
      batchSize: 1,
      output: "pooler_output",
    }),
    (e) =>
      e instanceof DataError &&
      e.message === `${MODEL}: has no output "pooler_output" (has: last_hidden_state)`,
  );
});
