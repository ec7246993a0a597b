/**
 * Golden parity of MISSRec against the PyTorch reference (tools/torch/missrec_ref.py, after
 * gimpong/MM23-MISSRec, its encoder/decoder checked against torch.nn.Transformer): the transductive
 * fine-tuning loss (fused text / image / ID logits + γ × interest regulariser) with every
 * parameter gradient, and the pre-training loss with a given item-drop view; interests given,
 * some images missing (their stored rows are garbage here: the model must zero-fill them).
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import type { ItemSide } from "../core/models/item_side.ts";
import { Missrec, type MissrecConfig } from "../core/models/missrec.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import {
  assertGoldenGrads,
  type Golden,
  goldenBatch,
  goldenEncoder,
  goldenFeatures,
  goldenItemSide,
  loadGolden,
  loadGoldenParams,
} from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

function itemSide(g: Golden): ItemSide {
  const image = goldenFeatures(g, "image");
  const { dim, data, mask } = image;
  for (let i = 0; i < mask.length; i++) if (!mask[i]) data.fill(9, i * dim, (i + 1) * dim);
  return goldenItemSide(mask.length - 1, { text: goldenFeatures(g, "text"), image });
}

function build(g: Golden, stage: "pretrain" | "finetune"): Missrec {
  const m = g.meta as Record<string, number>;
  const { loss: _ce, ...enc } = goldenEncoder(g);
  const cfg: MissrecConfig = {
    ...enc,
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
  loadGoldenParams(model, g);
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

Deno.test("golden: missrec interest tokens, fine-tuning loss, gradients and scores match PyTorch", () => {
  const g = loadGolden("missrec");
  const batch = goldenBatch(g);
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
    assertGoldenGrads(model, g);
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
  const batch = goldenBatch(g);
  withBackend(new JsBackend(), () => {
    const model = build(g, "pretrain");
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
    assertGoldenGrads(model, g, "pre.");
  });
});
