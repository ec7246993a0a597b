/** Golden parity of SASRec forward and backward against RecBole's PyTorch implementation. */
import assert from "node:assert/strict";
import { Sasrec } from "../core/models/sasrec.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { JsBackend } from "../core/backends/js.ts";
import {
  assertGoldenGrads,
  goldenBatch,
  goldenEncoder,
  loadGolden,
  loadGoldenParams,
} from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

for (const variant of ["sasrec", "sasrec_bce"] as const) {
  Deno.test(`golden: ${variant} forward, loss and every parameter gradient match PyTorch`, () => {
    const g = loadGolden(variant);
    const batch = goldenBatch(g);
    assert.equal(batch.negatives !== undefined, variant === "sasrec_bce", "neg_items");
    withBackend(new JsBackend(), () => {
      const model = new Sasrec({
        ...goldenEncoder(g),
        loss: variant === "sasrec" ? "ce" : "bce",
      }, new Rng(1));
      loadGoldenParams(model, g);
      const ctx = { training: false, rng: new Rng(0) };
      tidy(() => {
        const seqOut = model.forward(batch, ctx);
        assertClose("seq_output", seqOut.toFloat32(), g.tensors.seq_output.data);
        const { total } = model.loss(batch, ctx);
        assertClose("loss", [total.item()], g.tensors.loss.data);
        backward(total);
      });
      assertGoldenGrads(model, g);
    });
  });
}
