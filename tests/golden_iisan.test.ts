/**
 * Golden parity of IISAN against tools/torch/iisan_ref.py: item table, sequence output, CE loss
 * and every parameter gradient, over two modalities with different layer counts and widths (the
 * inter-modal side network's layer alignment included).
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { Iisan } from "../core/models/iisan.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import {
  assertGoldenGrads,
  assertGoldenParamCount,
  goldenBatch,
  goldenEncoder,
  goldenItemSide,
  loadGolden,
  loadGoldenParams,
} from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

Deno.test("golden: iisan item table, forward, loss and every gradient match PyTorch", () => {
  const g = loadGolden("iisan");
  const m = g.meta as Record<string, number> & { image_widths: number[]; text_widths: number[] };
  const batch = goldenBatch(g);
  const numItems = m.n_items - 1;
  const items = goldenItemSide(numItems, {
    textLayers: { widths: m.text_widths, data: Float32Array.from(g.tensors.text_layers.data) },
    imageLayers: { widths: m.image_widths, data: Float32Array.from(g.tensors.image_layers.data) },
  });
  withBackend(new JsBackend(), () => {
    const model = new Iisan(
      {
        ...goldenEncoder(g),
        sideDim: m.side_dim,
        adapterDown: m.adapter_down,
        adapterActivation: "relu",
        gateTemperature: m.gate_temperature,
      },
      items,
      new Rng(1),
    );
    assert.deepEqual(model.layerCounts(), { image: 3, text: 2 });
    assertGoldenParamCount(model, g);
    loadGoldenParams(model, g);
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
