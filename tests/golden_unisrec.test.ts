/**
 * Golden parity of UniSRec against the PyTorch reference (tools/torch/unisrec_ref.py, after
 * RUCAIBox/UniSRec): the transductive fine-tuning loss with its gate noise, every parameter
 * gradient, the eval scores, and the pre-training loss (sequence-item + λ sequence-sequence,
 * item-drop view given) with its gradients.
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { Unisrec, type UnisrecConfig } from "../core/models/unisrec.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import {
  assertGoldenGrads,
  type Golden,
  goldenBatch,
  goldenEncoder,
  loadGolden,
  loadGoldenParams,
} from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

function build(g: Golden, stage: "pretrain" | "finetune"): Unisrec {
  const m = g.meta as Record<string, number>;
  const plm = g.tensors.plm_embedding;
  const cfg: UnisrecConfig = {
    ...goldenEncoder(g),
    stage,
    mode: "transductive",
    experts: m.n_exps,
    adaptorDropout: 0,
    temperature: m.temperature,
    lambda: m.lam,
    itemDropRatio: 0.2,
    itemDropCoefficient: 0.9,
    noisyGating: true,
    fixEncoder: true,
  };
  const model = new Unisrec(cfg, new Rng(1), {
    dim: plm.shape[1],
    data: Float32Array.from(plm.data),
  });
  loadGoldenParams(model, g);
  return model;
}

/** The fixture's gate noise, handed out in the order the reference drew it. */
function noiseQueue(g: Golden, model: Unisrec, names: string[]): void {
  const queue = names.map((n) => g.tensors[n]);
  model.adaptor.noise = (rows, experts) => {
    const t = queue.shift();
    assert.ok(t, "more gate noise drawn than the reference");
    assert.equal(t.data.length, rows * experts);
    return Float32Array.from(t.data);
  };
}

Deno.test("golden: unisrec fine-tuning loss, gradients and scores match PyTorch", () => {
  const g = loadGolden("unisrec");
  const batch = goldenBatch(g);
  withBackend(new JsBackend(), () => {
    const model = build(g, "finetune");
    tidy(() => {
      const scores = model.scoreAll(batch, { training: false, rng: new Rng(0) });
      assertClose("scores", scores.toFloat32(), g.tensors.scores.data);
    });
    noiseQueue(g, model, ["noise_seq", "noise_table"]);
    tidy(() => {
      const out = model.loss(batch, { training: true, rng: new Rng(0) });
      assertClose("loss", [out.total.item()], g.tensors.loss.data);
      backward(out.total);
    });
    assertGoldenGrads(model, g);
  });
});

Deno.test("golden: unisrec pre-training loss (seq-item + λ seq-seq) and gradients match PyTorch", () => {
  const g = loadGolden("unisrec");
  const batch = goldenBatch(g);
  withBackend(new JsBackend(), () => {
    const model = build(g, "pretrain");
    assert.equal(model.itemEmbedding, null);
    noiseQueue(g, model, ["pre_noise_seq", "pre_noise_pos", "pre_noise_aug"]);
    tidy(() => {
      const view = {
        items: Int32Array.from(g.tensors.item_seq_aug.data),
        lengths: Int32Array.from(g.tensors.item_seq_len_aug.data),
      };
      const out = model.pretrainLoss(batch, view, { training: true, rng: new Rng(0) });
      assertClose("seq_item", [out.parts.seq_item.item()], g.tensors["pre.seq_item"].data);
      assertClose("seq_seq", [out.parts.seq_seq.item()], g.tensors["pre.seq_seq"].data);
      assertClose("loss", [out.total.item()], g.tensors["pre.loss"].data);
      backward(out.total);
    });
    assertGoldenGrads(model, g, "pre.");
  });
});
