// Scoring runs SASRec's last layer at each row's last step only: the same sequence vectors as
// the whole encoder's output gathered there, to the bit on the wasm kernels; in training too, with
// the full pass's dropout masks at those steps.
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { lossPositions } from "../core/models/batch.ts";
import {
  configuredItemLoss,
  gatherAt,
  gatherLast,
  lastPositions,
  lossIndex,
  Sasrec,
} from "../core/models/sasrec.ts";
import { causalPaddingMask, paddingMask, TransformerEncoder } from "../core/nn/transformer.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { backward, noGrad, tensor, tidy, withBackend } from "../core/tensor.ts";
import { batch, TINY_ENCODER } from "./helpers/tiny_duaf.ts";

Deno.test("SASRec outside training: the last step alone, the same vectors as the full encoder", async () => {
  const wasm = await WasmBackend.create({ threads: 1 });
  try {
    for (const be of [wasm, new JsBackend()]) {
      for (const layers of [1, 3]) {
        const b = batch(new Rng(5), 9, 7);
        const ctx = { training: false, rng: new Rng(1) };
        const [last, full] = withBackend(be, () => {
          const m = new Sasrec({ ...TINY_ENCODER, layers, maxLen: 7 }, new Rng(3));
          m.eval();
          return noGrad(() =>
            tidy(() => [
              m.forward(b, ctx).toFloat32(),
              gatherLast(m.encode(b, ctx), b).toFloat32(),
            ])
          );
        });
        assert.equal(last.length, 9 * TINY_ENCODER.hidden);
        assert.deepEqual(last, full, `${be.name}, ${layers} layers`);
      }
    }
  } finally {
    wasm.dispose();
  }
});

Deno.test("forwardAt in training: forward's vectors and dropout masks at the last steps, its gradients", async () => {
  const wasm = await WasmBackend.create({ threads: 1 });
  try {
    for (const be of [wasm, new JsBackend()]) {
      for (const layers of [1, 2]) {
        const b = batch(new Rng(7), 9, 7);
        const cfg = { ...TINY_ENCODER, layers, hiddenDropout: 0.3, attnDropout: 0.4 };
        const steps = Int32Array.from(b.lengths, (n) => n - 1);
        const run = (last: boolean) =>
          withBackend(be, () =>
            tidy(() => {
              const enc = new TransformerEncoder(cfg, new Rng(3));
              const r = new Rng(4);
              const x = tensor(
                Float32Array.from({ length: 9 * 7 * cfg.hidden }, () => r.normal()),
                [9, 7, cfg.hidden],
              );
              x.requiresGrad = true;
              const ctx = { training: true, rng: new Rng(1) };
              const mask = causalPaddingMask(b.items, b.size, b.len);
              const out = last
                ? enc.forwardAt(
                  x,
                  mask,
                  paddingMask(b.items, b.size, b.len),
                  lastPositions(b),
                  ctx,
                  steps,
                )
                : gatherLast(enc.forward(x, mask, ctx), b);
              const w = tensor(
                Float32Array.from({ length: out.size }, () => r.normal()),
                out.shape,
              );
              backward(op.sum(op.mul(out, w)));
              return [out.toFloat32(), x.grad!.toFloat32()];
            }));
        const [lastOut, lastGrad] = run(true);
        const [fullOut, fullGrad] = run(false);
        assert.deepEqual(lastOut, fullOut, `${be.name}, ${layers} layers: vectors`);
        // The input's gradient sums its consumers' parts in another order (the queries' part
        // arrives through the gather): equal up to float32 rounding.
        for (let i = 0; i < fullGrad.length; i++) {
          const tol = 1e-6 + 1e-5 * Math.abs(fullGrad[i]);
          assert.ok(
            Math.abs(lastGrad[i] - fullGrad[i]) <= tol,
            `${be.name}, ${layers} layers: grad ${i}`,
          );
        }
        // The masks matter: without the steps' masks the vectors differ.
        const other = withBackend(be, () =>
          tidy(() => {
            const enc = new TransformerEncoder(cfg, new Rng(3));
            const r = new Rng(4);
            const x = tensor(
              Float32Array.from({ length: 9 * 7 * cfg.hidden }, () => r.normal()),
              [9, 7, cfg.hidden],
            );
            const ctx = { training: true, rng: new Rng(1) };
            const shifted = Int32Array.from(steps, (s) => Math.max(0, s - 1));
            return enc.forwardAt(
              x,
              causalPaddingMask(b.items, b.size, b.len),
              paddingMask(b.items, b.size, b.len),
              lastPositions(b),
              ctx,
              shifted,
            ).toFloat32();
          }));
        assert.notDeepEqual(other, fullOut);
      }
    }
  } finally {
    wasm.dispose();
  }
});

Deno.test("SASRec's prefix-mode loss runs the last layer at the last step: the full pass's loss, its gradients", async () => {
  const wasm = await WasmBackend.create({ threads: 1 });
  try {
    for (const be of [wasm, new JsBackend()]) {
      const b = batch(new Rng(7), 9, 7);
      const cfg = { ...TINY_ENCODER, layers: 2, maxLen: 7, hiddenDropout: 0.3, attnDropout: 0.4 };
      // The loss as every step's output gathered at the last step would give it.
      const run = (viaModel: boolean) =>
        withBackend(be, () =>
          tidy(() => {
            const m = new Sasrec(cfg, new Rng(3));
            const ctx = { training: true, rng: new Rng(1) };
            const at = lossPositions(b);
            const loss = viaModel ? m.loss(b, ctx).total : configuredItemLoss(
              gatherAt(m.encode(b, ctx), lossIndex(at)),
              m.itemEmbedding.weight,
              at,
              m.cfg,
              ctx,
            );
            backward(loss);
            return [loss.toFloat32(), ...m.parameters().map((p) => p.grad!.toFloat32())];
          }));
      const [lastLoss, ...lastGrads] = run(true);
      const [fullLoss, ...fullGrads] = run(false);
      assert.deepEqual(lastLoss, fullLoss, `${be.name}: loss`);
      assert.equal(lastGrads.length, fullGrads.length);
      fullGrads.forEach((full, k) => {
        for (let i = 0; i < full.length; i++) {
          const tol = 1e-6 + 1e-5 * Math.abs(full[i]);
          assert.ok(Math.abs(lastGrads[k][i] - full[i]) <= tol, `${be.name}: param ${k}[${i}]`);
        }
      });
    }
  } finally {
    wasm.dispose();
  }
});
