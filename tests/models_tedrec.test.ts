/**
 * TedRec: the DFT round trip at the model's length, rows independent of their batch mates and
 * of the batch's padded length (every row is transformed at maxLen), the refusal of window
 * training, a short training run on beauty-mini, and `duaf train / eval / recommend --model
 * tedrec`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { JsBackend } from "../core/backends/js.ts";
import { loadDataset } from "../core/data/dataset.ts";
import { microBatches, splitExamples } from "../core/models/examples.ts";
import type { ItemSide } from "../core/models/item_side.ts";
import { Tedrec, type TedrecConfig } from "../core/models/tedrec.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { tensor, tidy, withBackend } from "../core/tensor.ts";
import { itemSide } from "../core/train/run.ts";
import { assertClose } from "./helpers/assert_close.ts";
import { runCli } from "./helpers/run_cli.ts";
import { rowsBatch as batchOf, TINY_ENCODER } from "./helpers/tiny_duaf.ts";
import {
  assertLossFalls,
  assertRecommends,
  assertTrainEval,
  cyclingBatches,
  TINY_SETS,
  tinyDataset,
} from "./helpers/tiny_run.ts";

const cfg = (numItems: number, over: Partial<TedrecConfig> = {}): TedrecConfig => ({
  ...TINY_ENCODER,
  numItems,
  maxLen: 10,
  hiddenDropout: 0.5,
  attnDropout: 0.5,
  temperature: 0.07,
  experts: 3,
  adaptorDropout: 0.2,
  noisyGating: true,
  ...over,
});

function toyItems(numItems: number, dim: number): ItemSide {
  const rng = new Rng(11);
  return {
    numItems,
    text: {
      dim,
      data: Float32Array.from({ length: (numItems + 1) * dim }, () => rng.normal()),
      mask: new Uint8Array(numItems + 1).fill(1),
    },
    image: null,
    itemCategory: new Int32Array(numItems + 1),
    numCategories: 1,
  };
}

Deno.test("tedrec: irfft(rfft(x)) = x at the model's lengths", () => {
  const rng = new Rng(4);
  withBackend(new JsBackend(), () => {
    for (const n of [10, 50, 51]) {
      const x = Float32Array.from({ length: 3 * 8 * n }, () => rng.normal());
      tidy(() => {
        const back = op.irfft(op.rfft(tensor(x, [3, 8, n]), "ortho"), n, "ortho").toFloat32();
        assertClose(`n=${n}`, back, x, 1e-4, 1e-5);
      });
    }
  });
});

Deno.test("tedrec: a row's scores do not depend on its batch mates or the batch's length", () => {
  withBackend(new JsBackend(), () => {
    const model = new Tedrec(cfg(30), toyItems(30, 6), new Rng(3));
    const ctx = { training: false, rng: new Rng(0) };
    tidy(() => {
      const alone = model.scoreAll(batchOf([[3, 9, 27, 4]], 4), ctx).toFloat32();
      const mixed = model.scoreAll(batchOf([[5, 1], [3, 9, 27, 4], [30]], 7), ctx).toFloat32();
      assertClose("row 1", mixed.subarray(31, 62), alone, 1e-4, 1e-6);
      // The converse guard: another item anywhere in the row changes its scores.
      const other = model.scoreAll(batchOf([[8, 9, 27, 4]], 4), ctx).toFloat32();
      assert.ok(other.some((v, i) => Math.abs(v - alone[i]) > 1e-4), "item 0 reaches the output");
      // Cosine scores: the best item's score is at most 1.
      assert.ok(alone.every((v) => v <= 1 + 1e-5 && v >= -1 - 1e-5));
    });
    // Micro-batches count rows at the transform length (padsTo), not the batch's.
    assert.equal(model.padsTo, 10);
    const short = batchOf([[1, 2], [3], [4, 5], [6]], 2);
    assert.equal(microBatches(short, 25).length, 1);
    assert.deepEqual(microBatches(short, 25, model.padsTo).map((b) => b.size), [2, 2]);
    const window = { ...batchOf([[3, 9]], 2), positionTargets: Int32Array.from([9, 1]) };
    assert.throws(() => model.loss(window, ctx), /window training/);
  });
});

Deno.test("tedrec: training on beauty-mini lowers the loss; train, eval and recommend from the CLI", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-tedrec-" });
  try {
    const ds = await tinyDataset(root);
    const src = await loadDataset(ds);
    const items = itemSide(src);
    assert.ok(items.text, "beauty-mini has text features");
    const ex = splitExamples(src, "train");
    withBackend(new JsBackend(), () => {
      const model = new Tedrec(
        cfg(src.numItems, { maxLen: 20, hidden: 16, inner: 32, hiddenDropout: 0.1 }),
        items,
        new Rng(1),
      );
      const batches = cyclingBatches(src, ex, 64, 4, 20);
      assertLossFalls(model, { lr: 3e-3, steps: 12, ...batches, minDrop: 0.05 });
    });

    const run = join(root, "run");
    const sets = [...TINY_SETS, "tedrecExperts=2"];
    await assertTrainEval(ds, "tedrec", run, sets, ["--k", "5,10,20"]);
    await assertRecommends(run, src.userIds()[0]);
    const bad = await runCli([
      "train",
      ds,
      "--model",
      "tedrec",
      "--out",
      join(root, "bad"),
      "--set",
      "trainMode=window",
      "--quiet",
    ]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /trainMode=prefix/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
