/**
 * Golden parity of M3SRec against tools/torch/m3srec_ref.py: sequence output, next-item loss,
 * contrastive loss, total loss and every parameter gradient, with text and image features and
 * some of each missing.
 */
import { JsBackend } from "../core/backends/js.ts";
import { M3srec } from "../core/models/m3srec.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
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

Deno.test("golden: m3srec forward, losses and every gradient match PyTorch", () => {
  const g = loadGolden("m3srec");
  const m = g.meta as Record<string, number>;
  const batch = goldenBatch(g);
  const numItems = m.n_items - 1;
  const items = goldenItemSide(numItems, {
    text: goldenFeatures(g, "text"),
    image: goldenFeatures(g, "image"),
  });
  withBackend(new JsBackend(), () => {
    const model = new M3srec(
      {
        ...goldenEncoder(g),
        modalities: ["text", "image"],
        experts: m.experts,
        adaptorDropout: 0,
        auxWeight: m.aux_weight,
        temperature: m.temperature,
      },
      items,
      new Rng(1),
    );
    assertGoldenParamCount(model, g);
    loadGoldenParams(model, g);
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
