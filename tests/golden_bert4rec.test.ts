/**
 * Golden parity of BERT4Rec against the PyTorch reference (tools/torch/bert4rec_ref.py, RecBole
 * 1.2's model): the output layer at fixed masked positions, the cloze loss, every parameter
 * gradient, and the inference path's input (mask token appended) and scores.
 */
import assert from "node:assert/strict";
import { Bert4rec, inferenceRows } from "../core/models/bert4rec.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { Rng } from "../core/random.ts";
import { backward, tensor, tidy, withBackend } from "../core/tensor.ts";
import { JsBackend } from "../core/backends/js.ts";
import { assertGoldenGrads, goldenEncoder, loadGolden, loadGoldenParams } from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

Deno.test("golden: bert4rec output, cloze loss, gradients and scores match PyTorch", () => {
  const g = loadGolden("bert4rec");
  const m = g.meta as Record<string, number>;
  const masked = g.tensors.masked_item_seq;
  const [b, l] = masked.shape;
  const index = Int32Array.from(g.tensors.masked_index.data);
  const rows = {
    size: b,
    len: l,
    items: Int32Array.from(masked.data),
    lengths: new Int32Array(b),
  };
  const seq = g.tensors.item_seq;
  const batch: SequenceBatch = {
    size: b,
    len: seq.shape[1],
    items: Int32Array.from(seq.data),
    lengths: Int32Array.from(g.tensors.item_seq_len.data),
    times: new Float32Array(b * seq.shape[1]),
    users: new Int32Array(b),
    targets: new Int32Array(b),
  };
  withBackend(new JsBackend(), () => {
    const model = new Bert4rec({
      ...goldenEncoder(g),
      maskRatio: 0.2,
      ftRatio: 0.5,
    }, new Rng(1));
    assert.equal(model.maskToken, m.mask_token);
    loadGoldenParams(model, g);
    const ctx = { training: false, rng: new Rng(0) };
    tidy(() => {
      const want = g.tensors.inference_seq;
      const inf = inferenceRows(batch, model.cfg.maxLen, model.maskToken);
      assert.deepEqual([inf.size, inf.len], want.shape);
      assert.deepEqual([...inf.items], [...want.data]);
      assertClose("scores", model.scoreAll(batch, ctx).toFloat32(), g.tensors.scores.data);

      const at = tensor(index, [index.length], "i32");
      const out = model.outputAt(rows, at, ctx);
      assertClose("masked_output", out.toFloat32(), g.tensors.masked_output.data);
      const targets = Int32Array.from(g.tensors.masked_targets.data);
      const loss = model.maskedLoss({ input: rows, at: { index, targets } }, ctx);
      assertClose("loss", [loss.item()], g.tensors.loss.data);
      backward(loss);
    });
    assertGoldenGrads(model, g);
  });
});
