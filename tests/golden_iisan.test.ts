/**
 * Golden parity of IISAN against tools/torch/iisan_ref.py: item table, sequence output, CE loss
 * and every parameter gradient, over two modalities with different layer counts and widths (the
 * inter-modal side network's layer alignment included).
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { Iisan } from "../core/models/iisan.ts";
import type { ItemSide } from "../core/models/item_side.ts";
import { loadStateDict } from "../core/nn/state.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { assertGoldenGrads, loadGolden } from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

Deno.test("golden: iisan item table, forward, loss and every gradient match PyTorch", () => {
  const g = loadGolden("iisan");
  const m = g.meta as Record<string, number> & { image_widths: number[]; text_widths: number[] };
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
  const items: ItemSide = {
    numItems,
    text: null,
    image: null,
    textLayers: { widths: m.text_widths, data: Float32Array.from(g.tensors.text_layers.data) },
    imageLayers: { widths: m.image_widths, data: Float32Array.from(g.tensors.image_layers.data) },
    itemCategory: new Int32Array(numItems + 1),
    numCategories: 1,
  };
  withBackend(new JsBackend(), () => {
    const model = new Iisan(
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
        sideDim: m.side_dim,
        adapterDown: m.adapter_down,
        adapterActivation: "relu",
        gateTemperature: m.gate_temperature,
      },
      items,
      new Rng(1),
    );
    assert.deepEqual(model.layerCounts(), { image: 3, text: 2 });
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
      assertClose("item_table", model.itemTable().toFloat32(), g.tensors.item_table.data);
      assertClose("seq_output", model.forward(batch, ctx).toFloat32(), g.tensors.seq_output.data);
      const { total } = model.loss(batch, ctx);
      assertClose("loss", [total.item()], g.tensors.loss.data);
      backward(total);
    });
    assertGoldenGrads(model, g);
  });
});
