/**
 * MISSRec: shapes and interest tokens, k-means interests, missing images zero-filled (a missing
 * item's stored row never reaches the output), the text-only mode and its notice, training steps
 * on ml-100k-mini (real poster features) lower the loss, and from the CLI train / eval /
 * recommend, pre-training then --init-from fine-tuning.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { JsBackend } from "../core/backends/js.ts";
import { TrainConfigSchema } from "../core/config.ts";
import { loadDataset } from "../core/data/dataset.ts";
import { windowExamples } from "../core/models/examples.ts";
import { readSafetensors } from "../core/io/safetensors.ts";
import { kmeans, Missrec, type MissrecConfig } from "../core/models/missrec.ts";
import { createModel } from "../core/models/registry.ts";
import { Rng } from "../core/random.ts";
import { assign, backward, tensor, tidy, withBackend } from "../core/tensor.ts";
import { itemSide } from "../core/train/run.ts";
import {
  assertMissingImageIgnored,
  batch as tinyBatch,
  ITEMS,
  itemSide as tinyItemSide,
} from "./helpers/tiny_duaf.ts";
import { compareClose } from "./golden.ts";
import { runCli, runCliProcess } from "./helpers/run_cli.ts";
import {
  assertLossFalls,
  assertRecommends,
  assertTrainEval,
  cyclingBatches,
  mlMiniDataset,
  setFlags,
  trainModel,
} from "./helpers/tiny_run.ts";

const cfg = (over: Partial<MissrecConfig> = {}): MissrecConfig => ({
  numItems: ITEMS,
  maxLen: 5,
  layers: 2,
  heads: 2,
  hidden: 8,
  inner: 16,
  hiddenDropout: 0,
  attnDropout: 0,
  layerNormEps: 1e-12,
  initStd: 0.02,
  stage: "finetune",
  mode: "transductive",
  modalities: ["text", "image"],
  itemFusion: "dynamic_shared",
  temperature: 0.07,
  lambda: 1e-3,
  gamma: 1e-4,
  interestRatio: 0.5,
  kmeansIters: 5,
  itemDropRatio: 0.2,
  itemDropCoefficient: 0.9,
  fixEncoder: true,
  ...over,
});

Deno.test("missrec: k-means assigns every point its nearest centroid and is seeded", () => {
  withBackend(new JsBackend(), () => {
    // Two well-separated blobs in 2-d.
    const pts = new Float32Array([0, 0, 0.1, 0, 0, 0.1, 5, 5, 5.1, 5, 5, 5.1]);
    const a = kmeans(tensor(pts, [6, 2]), 2, 5, new Rng(1));
    assert.equal(a.assign[0], a.assign[1]);
    assert.equal(a.assign[0], a.assign[2]);
    assert.equal(a.assign[3], a.assign[5]);
    assert.notEqual(a.assign[0], a.assign[3]);
    const c = a.centroids.subarray(a.assign[3] * 2, a.assign[3] * 2 + 2);
    assert.ok(Math.abs(c[0] - 5.0333) < 1e-3 && Math.abs(c[1] - 5.0333) < 1e-3);
    const b = kmeans(tensor(pts, [6, 2]), 2, 5, new Rng(1));
    assert.deepEqual([...b.assign], [...a.assign]);
  });
});

Deno.test("missrec: shapes, interests from the adaptors, sorted unique interest tokens", () => {
  withBackend(new JsBackend(), () => {
    const m = new Missrec(cfg(), tinyItemSide(new Rng(1), true), new Rng(3));
    const b = tinyBatch(new Rng(2));
    const { centroids, lookup } = m.interests();
    const k = Math.ceil(0.5 * 2 * ITEMS);
    assert.deepEqual(centroids.shape, [k + 1, 8]);
    assert.deepEqual([...centroids.toFloat32().subarray(0, 8)], new Array(8).fill(0));
    for (const name of ["text", "image"] as const) {
      const ids = lookup.get(name)!;
      assert.equal(ids[0], 0);
      for (let i = 1; i <= ITEMS; i++) assert.ok(ids[i] >= 1 && ids[i] <= k);
    }
    const { ids, width } = m.interestTokens(b.items, b.size, b.len);
    for (let r = 0; r < b.size; r++) {
      const want = new Set<number>();
      for (let j = 0; j < b.len; j++) {
        want.add(lookup.get("text")![b.items[r * b.len + j]]);
        want.add(lookup.get("image")![b.items[r * b.len + j]]);
      }
      const row = [...ids.subarray(r * width, (r + 1) * width)].slice(0, want.size);
      assert.deepEqual(row, [...want].sort((x, y) => x - y));
    }
    tidy(() => {
      const ctx = { training: false, rng: new Rng(0) };
      assert.deepEqual(m.forward(b, ctx).shape, [b.size, 8]);
      assert.deepEqual(m.scoreAll(b, ctx).shape, [b.size, ITEMS + 1]);
      const out = m.loss(b, { training: true, rng: new Rng(5) });
      assert.deepEqual(Object.keys(out.parts).sort(), ["interest_reg", "main"]);
      backward(out.total);
    });
    for (const [name, p] of m.namedParameters()) assert.ok(p.grad, `no gradient for ${name}`);
  });
});

Deno.test("missrec: eval mode keeps its scoring tables across batches, recomputed after the next eval()", () => {
  withBackend(new JsBackend(), () => {
    for (const image of [true, false]) {
      const m = new Missrec(cfg(), tinyItemSide(new Rng(1), image), new Rng(3));
      const b = tinyBatch(new Rng(2));
      const ctx = () => ({ training: false, rng: new Rng(0) });
      m.eval();
      const first = tidy(() => m.scoreAll(b, ctx()).toFloat32());
      const second = tidy(() => m.scoreAll(b, ctx()).toFloat32());
      assert.equal(compareClose(second, first, 0, 0).maxAbsDiff, 0);
      const w = m.textAdaptor!.weight;
      assign(w, w.toFloat32().map((v) => v * 2 + 0.1));
      m.eval();
      const after = tidy(() => m.scoreAll(b, ctx()).toFloat32());
      assert.ok(compareClose(after, first, 1e-6, 0).maxAbsDiff > 1e-4, `image ${image}`);
    }
  });
});

Deno.test("missrec: a missing item's image row never reaches the output; a present one does", () => {
  withBackend(new JsBackend(), () => {
    assertMissingImageIgnored(
      tinyItemSide(new Rng(1), true),
      (it, b) =>
        tidy(() =>
          new Missrec(cfg(), it, new Rng(3)).scoreAll(b, { training: false, rng: new Rng(0) })
            .toFloat32()
        ),
    );
  });
});

Deno.test("missrec: without images it runs on text, with one notice; window training is refused", () => {
  withBackend(new JsBackend(), () => {
    const notices: string[] = [];
    const c = TrainConfigSchema.parse({ model: "missrec", hidden: 8, inner: 16, maxLen: 5 });
    const m = createModel(c, tinyItemSide(new Rng(1), false), new Rng(3), (n) => notices.push(n));
    assert.ok(m instanceof Missrec);
    assert.deepEqual(m.modalities, ["text"]);
    assert.deepEqual(notices, ["missrec: no image modality in the dataset; running without it"]);
    assert.ok(
      !m.namedParameters().some(([n]) => n.startsWith("img_adaptor") || n === "fusion_factor"),
    );
    const b = tinyBatch(new Rng(2));
    tidy(() => {
      const out = m.loss(b, { training: true, rng: new Rng(5) });
      assert.ok(Number.isFinite(out.total.item()));
    });
    const w = TrainConfigSchema.parse({ model: "missrec", trainMode: "window" });
    assert.throws(
      () => createModel(w, tinyItemSide(new Rng(1), true), new Rng(3), () => {}),
      /trainMode=prefix/,
    );
  });
});

Deno.test("missrec: training on ml-100k-mini lowers the loss; CLI train, eval, recommend, pre-train then --init-from", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-missrec-" });
  try {
    const ds = await mlMiniDataset(root);
    const src = await loadDataset(ds);
    const ex = windowExamples(src);
    withBackend(new JsBackend(), () => {
      const m = new Missrec(
        cfg({ numItems: src.numItems, maxLen: 10, hidden: 16, interestRatio: 0.05 }),
        itemSide(src),
        new Rng(1),
      );
      assert.deepEqual(m.modalities, ["text", "image"]);
      const batches = cyclingBatches(src, ex, 30, 5, 10);
      assertLossFalls(m, { lr: 3e-3, steps: 8, ...batches, minDrop: 0.05, part: "main" });
    });

    const sets = [
      "hidden=16",
      "inner=32",
      "layers=2",
      "maxSteps=3",
      "epochs=2",
      "batchSize=64",
      "maxLen=20",
    ];
    const run = join(root, "run");
    await assertTrainEval(ds, "missrec", run, sets);
    await assertRecommends(run, src.userIds()[0]);

    const exported = await runCli(["export", run, "--quiet"]);
    assert.equal(exported.code, 2);
    assert.match(exported.stderr, /missrec has no ONNX export \(its interest tokens/);

    const pretrained = join(root, "pre");
    const p = await trainModel(ds, "missrec", pretrained, sets, ["--set", "missrecStage=pretrain"]);
    assert.equal(p.code, 0, p.stderr);
    const ft = await runCliProcess([
      "train",
      ds,
      "--model",
      "missrec",
      "--out",
      join(root, "ft"),
      ...setFlags(sets),
      "--init-from",
      pretrained,
      "--backend",
      "wasm",
    ]);
    assert.equal(ft.code, 0, ft.stderr);
    assert.equal(JSON.parse(ft.stdout).initFrom, pretrained);
    assert.match(ft.stderr, /init from .*pre: loaded .*; fresh: item_embedding\.weight\n/);
    assert.match(ft.stderr, /position_embedding and the interest encoder-decoder fixed/);
    const weights = async (r: string) =>
      (await readSafetensors(join(r, "model.safetensors"))).tensors;
    const [a, b] = [await weights(pretrained), await weights(join(root, "ft"))];
    const same = (name: string) =>
      compareClose(b.get(name)!.data as Float32Array, a.get(name)!.data as Float32Array, 0, 0)
        .maxAbsDiff === 0;
    assert.ok(same("trm_decoder.0.cross_attention.query.weight"), "fixed decoder moved");
    assert.ok(!same("text_adaptor.weight"), "the adaptor did not train");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
