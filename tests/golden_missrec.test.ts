/**
 * Golden parity of MISSRec against the PyTorch reference (tools/torch/missrec_ref.py, after
 * gimpong/MM23-MISSRec, its encoder/decoder checked against torch.nn.Transformer): the transductive
 * fine-tuning loss (fused text / image / ID logits + γ × interest regulariser) with every
 * parameter gradient, and the pre-training loss with a given item-drop view; interests given,
 * some images missing (their stored rows are garbage here: the model must zero-fill them).
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import type { ItemSide } from "../core/models/item_side.ts";
import { Missrec, type MissrecConfig } from "../core/models/missrec.ts";
import { loadStateDict } from "../core/nn/state.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { type Golden, loadGolden } from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

function itemSide(g: Golden): ItemSide {
  const text = g.tensors.text_table;
  const image = g.tensors.image_table;
  const n = text.shape[0];
  const present = Uint8Array.from(g.tensors.image_present.data);
  const imageData = Float32Array.from(image.data);
  const dim = image.shape[1];
  for (let i = 0; i < n; i++) if (!present[i]) imageData.fill(9, i * dim, (i + 1) * dim);
  return {
    numItems: n - 1,
    text: {
      dim: text.shape[1],
      data: Float32Array.from(text.data),
      mask: new Uint8Array(n).fill(1),
    },
    image: { dim, data: imageData, mask: present },
    itemCategory: new Int32Array(n),
    numCategories: 1,
  };
}

function build(g: Golden, stage: "pretrain" | "finetune", prefix = ""): Missrec {
  const m = g.meta as Record<string, number>;
  const cfg: MissrecConfig = {
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
    stage,
    mode: "transductive",
    modalities: ["text", "image"],
    itemFusion: "dynamic_shared",
    temperature: m.temperature,
    lambda: m.lam,
    gamma: m.gamma,
    interestRatio: 0.5,
    kmeansIters: 5,
    itemDropRatio: 0.2,
    itemDropCoefficient: 0.9,
    fixEncoder: true,
  };
  const model = new Missrec(cfg, itemSide(g), new Rng(1));
  const params = new Map(
    model.namedParameters().map(([name]) => {
      const t = g.tensors[name];
      assert.ok(t, `fixture lacks ${prefix}${name}`);
      return [name, { shape: t.shape, data: Float32Array.from(t.data) }];
    }),
  );
  loadStateDict(model, params);
  giveInterests(g, model);
  return model;
}

/** The fixture's interests (eval() drops them: the model rediscovers its own). */
function giveInterests(g: Golden, model: Missrec): void {
  model.setInterests(
    Float32Array.from(g.tensors.interest_centroids.data),
    new Map([
      ["text", Int32Array.from(g.tensors.text_interest.data)],
      ["image", Int32Array.from(g.tensors.image_interest.data)],
    ]),
  );
}

function batchOf(g: Golden): SequenceBatch {
  const seq = g.tensors.item_seq;
  const [b, l] = seq.shape;
  return {
    size: b,
    len: l,
    items: Int32Array.from(seq.data),
    lengths: Int32Array.from(g.tensors.item_seq_len.data),
    times: new Float32Array(b * l),
    users: new Int32Array(b),
    targets: Int32Array.from(g.tensors.pos_items.data),
  };
}

function checkGrads(g: Golden, model: Missrec, prefix: string): void {
  for (const [name, p] of model.namedParameters()) {
    const want = g.tensors[`${prefix}grad.${name}`];
    assert.ok(want, `fixture lacks ${prefix}grad.${name}`);
    assert.ok(p.grad, `no gradient for ${name}`);
    assertClose(`${prefix}grad.${name}`, p.grad.toFloat32(), want.data, 1e-3, 1e-5);
  }
}

Deno.test("golden: missrec interest tokens, fine-tuning loss, gradients and scores match PyTorch", () => {
  const g = loadGolden("missrec");
  const batch = batchOf(g);
  withBackend(new JsBackend(), () => {
    const model = build(g, "finetune");
    const { ids, width } = model.interestTokens(batch.items, batch.size, batch.len);
    assert.equal(width, g.tensors.interest_ids.shape[1]);
    assert.deepEqual([...ids], [...g.tensors.interest_ids.data]);
    const nParams = model.namedParameters().length;
    assert.equal(nParams, Object.keys(g.tensors).filter((k) => k.startsWith("grad.")).length);
    tidy(() => {
      const out = model.loss(batch, { training: true, rng: new Rng(0) });
      assertClose("main", [out.parts.main.item()], g.tensors.main_loss.data);
      assertClose("interest_reg", [out.parts.interest_reg.item()], g.tensors.interest_reg.data);
      assertClose("loss", [out.total.item()], g.tensors.loss.data);
      backward(out.total);
    });
    checkGrads(g, model, "");
    model.eval();
    giveInterests(g, model);
    tidy(() => {
      const ctx = { training: false, rng: new Rng(0) };
      assertClose("seq_output", model.forward(batch, ctx).toFloat32(), g.tensors.seq_output.data);
      assertClose(
        "scores",
        model.scoreAll(batch, ctx).toFloat32(),
        g.tensors.logits.data,
        1e-4,
        1e-4,
      );
    });
  });
});

Deno.test("golden: missrec pre-training loss (seq-item + λ seq-seq + γ R) and gradients match PyTorch", () => {
  const g = loadGolden("missrec");
  const batch = batchOf(g);
  withBackend(new JsBackend(), () => {
    const model = build(g, "pretrain", "pre.");
    assert.equal(model.itemEmbedding, null);
    tidy(() => {
      const view = {
        items: Int32Array.from(g.tensors.aug_seq.data),
        lengths: Int32Array.from(g.tensors.aug_len.data),
      };
      const out = model.pretrainLoss(batch, view, { training: true, rng: new Rng(0) });
      assertClose("seq_item", [out.parts.seq_item.item()], g.tensors["pre.seq_item"].data);
      assertClose("seq_seq", [out.parts.seq_seq.item()], g.tensors["pre.seq_seq"].data);
      assertClose("reg", [out.parts.interest_reg.item()], g.tensors["pre.interest_reg"].data);
      assertClose("loss", [out.total.item()], g.tensors["pre.loss"].data);
      backward(out.total);
    });
    checkGrads(g, model, "pre.");
  });
});
