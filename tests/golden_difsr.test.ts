/**
 * Golden parity of NOVA and DIF-SR (every fusion, attributes category + text) against the PyTorch
 * reference modules in tools/torch/difsr_ref.py: sequence output, loss (DIF-SR's attribute loss
 * included) and every parameter gradient.
 */
import { JsBackend } from "../core/backends/js.ts";
import { Difsr } from "../core/models/difsr.ts";
import { Nova } from "../core/models/nova.ts";
import type { SideAttribute } from "../core/models/side_attributes.ts";
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

for (const kind of ["nova", "difsr"] as const) {
  for (const fusion of ["sum", "concat", "gate"] as const) {
    Deno.test(`golden: ${kind} (${fusion}) forward, loss and every gradient match PyTorch`, () => {
      const g = loadGolden(kind);
      const m = g.meta as Record<string, unknown>;
      const num = (k: string) => m[k] as number;
      const batch = goldenBatch(g);
      const enc = { ...goldenEncoder(g), attributes: m.attributes as SideAttribute[] };
      const items = goldenItemSide(enc.numItems, {
        text: goldenFeatures(g, "text"),
        itemCategory: Int32Array.from(g.tensors.item_category.data),
        numCategories: num("n_categories"),
      });
      const prefix = `${fusion}/`;
      withBackend(new JsBackend(), () => {
        const model: Nova | Difsr = kind === "nova"
          ? new Nova({ ...enc, fusion }, items, new Rng(1))
          : new Difsr(
            {
              ...enc,
              fusion,
              attributeHidden: num("attribute_hidden_size"),
              lambdas: m.lambdas as number[],
            },
            items,
            new Rng(1),
          );
        assertGoldenParamCount(
          model,
          g,
          (k) =>
            k.startsWith(prefix) && !k.startsWith(`${prefix}grad.`) &&
            !["seq_output", "loss", "main_loss", "attr_category"].includes(k.slice(prefix.length)),
        );
        loadGoldenParams(model, g, prefix);
        const ctx = { training: false, rng: new Rng(0) };
        tidy(() => {
          const out = model.forward(batch, ctx);
          assertClose("seq_output", out.toFloat32(), g.tensors[`${prefix}seq_output`].data);
          const { total, parts } = model.loss(batch, ctx);
          assertClose("loss", [total.item()], g.tensors[`${prefix}loss`].data);
          if (kind === "difsr") {
            assertClose("main", [parts.main.item()], g.tensors[`${prefix}main_loss`].data);
            const want = g.tensors[`${prefix}attr_category`].data;
            assertClose("attr_category", [parts.attr_category.item()], want);
          }
          backward(total);
        });
        assertGoldenGrads(model, g, prefix);
      });
    });
  }
}
