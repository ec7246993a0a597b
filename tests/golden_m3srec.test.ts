/**
 * Golden parity of M3SRec against tools/torch/m3srec_ref.py: sequence output, next-item loss,
 * contrastive loss, total loss and every parameter gradient, with text and image features and
 * some of each missing.
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import type { ItemSide } from "../core/models/item_side.ts";
import { M3srec } from "../core/models/m3srec.ts";
import { loadStateDict } from "../core/nn/state.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { assertGoldenGrads, loadGolden } from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

Deno.test("golden: m3srec forward, losses and every gradient match PyTorch", () => {
  const g = loadGolden("m3srec");
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
  };
  const numItems = m.n_items - 1;
  const features = (name: "text" | "image") => ({
    dim: m[`${name}_dim`],
    data: Float32Array.from(g.tensors[`${name}_table`].data),
    mask: Uint8Array.from(g.tensors[`${name}_present`].data),
  });
  const items: ItemSide = {
    numItems,
    text: features("text"),
    image: features("image"),
    itemCategory: new Int32Array(numItems + 1),
    numCategories: 1,
  };
  withBackend(new JsBackend(), () => {
    const model = new M3srec(
      {
        numItems,
        maxLen: m.max_seq_length,
        layers: m.n_layers,
        heads: m.n_heads,
        hidden: m.hidden_size,
        inner: m.inner_size,
        hiddenDropout: 0,
        attnDropout: 0,
        layerNormEps: m.layer_norm_eps,
        initStd: 0.02,
        loss: "ce",
        modalities: ["text", "image"],
        experts: m.experts,
        adaptorDropout: 0,
        auxWeight: m.aux_weight,
        temperature: m.temperature,
      },
      items,
      new Rng(1),
    );
    const fixtureParams = Object.keys(g.tensors).filter((k) =>
      k.includes(".") && !k.startsWith("grad.")
    );
    assert.equal(model.namedParameters().length, fixtureParams.length, "parameter count");
    loadStateDict(
      model,
      new Map(
        model.namedParameters().map(([name]) => {
          const t = g.tensors[name];
          assert.ok(t, `fixture lacks ${name}`);
          return [name, { shape: t.shape, data: Float32Array.from(t.data) }];
        }),
      ),
    );
    const ctx = { training: false, rng: new Rng(0) };
    tidy(() => {
      assertClose("seq_output", model.forward(batch, ctx).toFloat32(), g.tensors.seq_output.data);
      const { total, parts } = model.loss(batch, ctx);
      assertClose("main", [parts.main.item()], g.tensors.main_loss.data);
      assertClose("aux", [parts.aux.item()], g.tensors.aux_loss.data);
      assertClose("loss", [total.item()], g.tensors.loss.data);
      backward(total);
    });
    assertGoldenGrads(model, g);
  });
});
