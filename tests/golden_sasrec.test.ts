/** Golden parity of SASRec forward and backward against RecBole's PyTorch implementation. */
import { Sasrec } from "../core/models/sasrec.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { JsBackend } from "../core/backends/js.ts";
import { assertGoldenGrads, loadGolden, loadGoldenParams } from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

for (const variant of ["sasrec", "sasrec_bce"] as const) {
  Deno.test(`golden: ${variant} forward, loss and every parameter gradient match PyTorch`, () => {
    const g = loadGolden(variant);
    const m = g.meta as Record<string, number>;
    const seq = g.tensors.item_seq;
    const [b, l] = seq.shape;
    const batch: SequenceBatch = {
      size: b,
      len: l,
      items: Int32Array.from(seq.data),
      lengths: Int32Array.from(g.tensors.item_seq_len.data),
      times: new Float32Array(b * l),
      users: new Int32Array(b),
      targets: Int32Array.from(g.tensors.pos_items.data),
      negatives: g.tensors.neg_items ? Int32Array.from(g.tensors.neg_items.data) : undefined,
    };
    withBackend(new JsBackend(), () => {
      const model = new Sasrec({
        numItems: m.n_items - 1,
        maxLen: m.max_seq_length,
        layers: m.n_layers,
        heads: m.n_heads,
        hidden: m.hidden_size,
        inner: m.inner_size,
        hiddenDropout: 0,
        attnDropout: 0,
        layerNormEps: m.layer_norm_eps,
        initStd: 0.02,
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
