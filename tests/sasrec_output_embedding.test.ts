// SASRec with gSASRec's separate output table (outputEmbedding=separate): scores and the loss use
// it, the input item table only feeds the encoder, and every other parameter starts as in the
// tied model of the same seed. Its ONNX graph is checked with the other models'
// (export_onnx.test.ts).
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { resolveConfig } from "../core/config.ts";
import { createModel } from "../core/models/registry.ts";
import { Sasrec } from "../core/models/sasrec.ts";
import { UsageError } from "../core/errors.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { assign, backward, noGrad, tidy, withBackend } from "../core/tensor.ts";
import { batch, TINY_ENCODER } from "./helpers/tiny_duaf.ts";

const be = new JsBackend();

function models() {
  return withBackend(be, () => ({
    tied: new Sasrec({ ...TINY_ENCODER }, new Rng(3)),
    separate: new Sasrec({ ...TINY_ENCODER, outputEmbedding: "separate" }, new Rng(3)),
  }));
}

Deno.test("SASRec outputEmbedding=separate: one more table, the others as the tied model's", () => {
  const { tied, separate } = models();
  const t = new Map(tied.namedParameters());
  const s = new Map(separate.namedParameters());
  assert.deepEqual([...s.keys()], [...t.keys(), "output_embedding.weight"]);
  for (const [name, p] of t) assert.deepEqual(s.get(name)!.toFloat32(), p.toFloat32(), name);
  assert.deepEqual(s.get("output_embedding.weight")!.shape, [TINY_ENCODER.numItems + 1, 8]);
  assert.notDeepEqual(
    s.get("output_embedding.weight")!.toFloat32(),
    s.get("item_embedding.weight")!.toFloat32(),
  );
});

Deno.test("SASRec outputEmbedding=separate: scores and the loss use the output table", () => {
  const { tied, separate } = models();
  const b = batch(new Rng(5), 6, 5);
  const ctx = { training: false, rng: new Rng(1) };
  withBackend(be, () => {
    const scores = (m: Sasrec) => noGrad(() => tidy(() => m.scoreAll(b, ctx).toFloat32()));
    const out = separate.outputEmbedding!.weight;
    const want = noGrad(() =>
      tidy(() => op.matmul(separate.forward(b, ctx), out, false, true).toFloat32())
    );
    assert.deepEqual(scores(separate), want);
    assert.notDeepEqual(scores(separate), scores(tied));
    assign(out, new Float32Array(out.size));
    assert.ok(scores(separate).every((v) => v === 0), "scores ignore a zeroed output table");
    assert.ok(scores(tied).some((v) => v !== 0));
    const parts = noGrad(() => separate.scoreParts(b, ctx));
    assert.equal(parts.items, out);

    separate.train();
    tidy(() => backward(separate.loss(b, { training: true, rng: new Rng(2) }).total));
    const norm = (g: typeof out.grad) => noGrad(() => op.sum(op.mul(g!, g!)).item());
    assert.ok(norm(out.grad) > 0, "the loss reaches the output table");
  });
});

Deno.test("outputEmbedding=separate on another model is refused in one line", () => {
  const cfg = resolveConfig(null, ["model=gru4rec", "outputEmbedding=separate"]);
  const items = {
    numItems: 5,
    text: null,
    image: null,
    itemCategory: new Int32Array(6),
    numCategories: 1,
  };
  assert.throws(
    () => createModel(cfg, items, new Rng(1), () => {}),
    (e) =>
      e instanceof UsageError && /applies to model=sasrec \(now model=gru4rec\)/.test(e.message),
  );
});
