// Scoring runs SASRec's last layer at each row's last step only: the same sequence vectors as
// the whole encoder's output gathered there, to the bit on the wasm kernels.
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { gatherLast, Sasrec } from "../core/models/sasrec.ts";
import { Rng } from "../core/random.ts";
import { noGrad, tidy, withBackend } from "../core/tensor.ts";
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
