/**
 * Golden parity of NOVA and DIF-SR (every fusion, attributes category + text) against the PyTorch
 * reference modules in tools/torch/difsr_ref.py: sequence output, loss (DIF-SR's attribute loss
 * included) and every parameter gradient.
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { Difsr } from "../core/models/difsr.ts";
import type { ItemSide } from "../core/models/item_side.ts";
import { Nova } from "../core/models/nova.ts";
import type { SideAttribute } from "../core/models/side_attributes.ts";
import { loadStateDict } from "../core/nn/state.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { loadGolden } from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

for (const kind of ["nova", "difsr"] as const) {
  for (const fusion of ["sum", "concat", "gate"] as const) {
    Deno.test(`golden: ${kind} (${fusion}) forward, loss and every gradient match PyTorch`, () => {
      const g = loadGolden(kind);
      const m = g.meta as Record<string, unknown>;
      const num = (k: string) => m[k] as number;
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
      const numItems = num("n_items") - 1;
      const textDim = num("text_dim");
      const items: ItemSide = {
        numItems,
        text: {
          dim: textDim,
          data: Float32Array.from(g.tensors.text_table.data),
          mask: new Uint8Array(numItems + 1).fill(1),
        },
        image: null,
        itemCategory: Int32Array.from(g.tensors.item_category.data),
        numCategories: num("n_categories"),
      };
      const enc = {
        numItems,
        maxLen: num("max_seq_length"),
        layers: num("n_layers"),
        heads: num("n_heads"),
        hidden: num("hidden_size"),
        inner: num("inner_size"),
        hiddenDropout: 0,
        attnDropout: 0,
        layerNormEps: num("layer_norm_eps"),
        initStd: 0.02,
        loss: "ce" as const,
        attributes: m.attributes as SideAttribute[],
      };
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
        const fixtureParams = Object.keys(g.tensors).filter((k) =>
          k.startsWith(prefix) && !k.startsWith(`${prefix}grad.`) &&
          !["seq_output", "loss", "main_loss", "attr_category"].includes(k.slice(prefix.length))
        );
        assert.equal(model.namedParameters().length, fixtureParams.length, "parameter count");
        loadStateDict(
          model,
          new Map(
            model.namedParameters().map(([name]) => {
              const t = g.tensors[prefix + name];
              assert.ok(t, `fixture lacks ${prefix}${name}`);
              return [name, { shape: t.shape, data: Float32Array.from(t.data) }];
            }),
          ),
        );
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
        for (const [name, p] of model.namedParameters()) {
          const want = g.tensors[`${prefix}grad.${name}`];
          assert.ok(want, `fixture lacks ${prefix}grad.${name}`);
          assertClose(`grad.${name}`, p.grad!.toFloat32(), want.data, 1e-3, 1e-5);
        }
      });
    });
  }
}
