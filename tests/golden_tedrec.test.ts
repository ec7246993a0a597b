/**
 * Golden parity of TedRec against the PyTorch reference (tools/torch/tedrec_ref.py, torch.fft):
 * the text adaptor, the frequency-domain fusion, the sequence output and scores in evaluation,
 * and in training mode (dropout 0, the gate noise fixed by the fixture) the loss and every
 * parameter gradient. Row 2 of the batch is mostly padding, which the transform sees.
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { sliceBatch } from "../core/models/examples.ts";
import { Tedrec } from "../core/models/tedrec.ts";
import type { ForwardContext } from "../core/nn/context.ts";
import { Rng } from "../core/random.ts";
import { backward, type Tensor, tensor, tidy, withBackend } from "../core/tensor.ts";
import {
  assertGoldenGrads,
  assertGoldenParamCount,
  goldenBatch,
  goldenEncoder,
  goldenFeatures,
  goldenItemSide,
  loadGolden,
  loadGoldenParams,
} from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

const g = loadGolden("tedrec");
const m = g.meta as Record<string, number>;

/** The reference's draws for the noisy gating instead of ctx.rng's. */
class FixedNoise extends Tedrec {
  override gateNoise(shape: readonly number[], ctx: ForwardContext): Tensor {
    // Batches other than the fixture's (the cut ones below) draw their own.
    if (shape.join() !== g.tensors.gate_noise.shape.join()) return super.gateNoise(shape, ctx);
    return tensor(g.tensors.gate_noise.data, shape);
  }
}

function setup(): { model: Tedrec; batch: SequenceBatch } {
  const batch = goldenBatch(g);
  const enc = goldenEncoder(g);
  const items = goldenItemSide(enc.numItems, { text: goldenFeatures(g, "text") });
  const model = new FixedNoise(
    {
      ...enc,
      temperature: m.temperature,
      experts: m.n_exps,
      adaptorDropout: 0,
      noisyGating: true,
    },
    items,
    new Rng(1),
  );
  assertGoldenParamCount(model, g, (k) => `grad.${k}` in g.tensors);
  loadGoldenParams(model, g);
  return { model, batch };
}

Deno.test("golden: tedrec evaluation forward (text adaptor, fusion, output, scores)", () => {
  withBackend(new JsBackend(), () => {
    const { model, batch } = setup();
    const ctx = { training: false, rng: new Rng(0) };
    tidy(() => {
      const fused = model.fuse(batch, ctx);
      assertClose("eval.fused", fused.toFloat32(), g.tensors["eval.fused"].data);
      const out = model.forward(batch, ctx).toFloat32();
      // The reference's seq_output is not normalised: compare directions.
      const want = g.tensors["eval.seq_output"].data;
      const d = m.hidden_size;
      const unit = new Float32Array(want.length);
      for (let r = 0; r < want.length / d; r++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += want[r * d + j] ** 2;
        for (let j = 0; j < d; j++) unit[r * d + j] = want[r * d + j] / Math.sqrt(s);
      }
      assertClose("eval.seq_output (unit)", out, unit);
      const scores = model.scoreAll(batch, ctx).toFloat32();
      assertClose("eval.scores", scores, g.tensors["eval.scores"].data);
    });
  });
});

Deno.test("golden: tedrec on a batch shorter than maxLen (the encoder runs at its length)", () => {
  withBackend(new JsBackend(), () => {
    const { model, batch } = setup();
    const ctx = { training: false, rng: new Rng(0) };
    // The mostly padded row alone, cut to its own length: the fusion still transforms it at
    // maxLen, the encoder runs on its real positions only, and its scores are the reference's.
    const row = batch.size - 1, len = batch.lengths[row];
    assert.ok(len < batch.len, "the fixture's last row is shorter than max_seq_length");
    const cut: SequenceBatch = {
      ...sliceBatch(batch, row, row + 1),
      len,
      items: batch.items.slice(row * batch.len, row * batch.len + len),
      times: new Float32Array(len),
    };
    const n = m.n_items;
    tidy(() => {
      assertClose(
        "eval.scores (last row, cut)",
        model.scoreAll(cut, ctx).toFloat32(),
        g.tensors["eval.scores"].data.slice(row * n, (row + 1) * n),
      );
    });
  });
});

Deno.test("tedrec: training on a cut batch equals training on it widened to maxLen", () => {
  withBackend(new JsBackend(), () => {
    const { model, batch } = setup();
    const row = batch.size - 1, len = batch.lengths[row];
    const cut: SequenceBatch = {
      ...sliceBatch(batch, row, row + 1),
      len,
      items: batch.items.slice(row * batch.len, row * batch.len + len),
      times: new Float32Array(len),
    };
    const wide = sliceBatch(batch, row, row + 1);
    const lossAndGrads = (b: SequenceBatch) => {
      for (const p of model.parameters()) p.grad = null;
      const loss = tidy(() => {
        const { total } = model.loss(b, { training: true, rng: new Rng(5) });
        backward(total);
        return total.item();
      });
      return { loss, grads: model.parameters().map((p) => p.grad!.toFloat32()) };
    };
    const a = lossAndGrads(cut), b = lossAndGrads(wide);
    assertClose("loss", [a.loss], [b.loss]);
    a.grads.forEach((gr, i) => assertClose(`grad ${i}`, gr, b.grads[i]));
  });
});

Deno.test("golden: tedrec training loss (noisy gates) and every parameter gradient", () => {
  withBackend(new JsBackend(), () => {
    const { model, batch } = setup();
    const ctx = { training: true, rng: new Rng(0) };
    tidy(() => {
      const fused = model.fuse(batch, ctx);
      assertClose("fused", fused.toFloat32(), g.tensors.fused.data);
      const { total } = model.loss(batch, ctx);
      assertClose("loss", [total.item()], g.tensors.loss.data);
      backward(total);
    });
    assertGoldenGrads(model, g);
    // The gate noise reaches w_noise: its gradient is not identically zero.
    const wNoise = g.tensors["grad.moe_adaptor.w_noise"].data;
    assert.ok(wNoise.some((v) => Math.abs(v) > 1e-4));
  });
});
