/**
 * LRURec: right padding and later items leave valid positions unchanged (the recurrence is
 * causal), a finite-difference check of the Toeplitz kernel's gradient, the score shape and its
 * item bias, a short training run on beauty-mini, and `duaf train / eval --model lrurec`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { JsBackend } from "../core/backends/js.ts";
import { loadDataset } from "../core/data/dataset.ts";
import { windowExamples } from "../core/models/examples.ts";
import { lruKernel, Lrurec, type LrurecConfig } from "../core/models/lrurec.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { tidy, withBackend } from "../core/tensor.ts";
import { compareClose } from "./golden.ts";
import { gradCheck } from "./helpers/gradcheck.ts";
import { runCli } from "./helpers/run_cli.ts";
import { rowsBatch as batchOf } from "./helpers/tiny_duaf.ts";
import {
  assertLossFalls,
  assertTrainEval,
  cyclingBatches,
  tinyDataset,
} from "./helpers/tiny_run.ts";

const cfg = (over: Partial<LrurecConfig> = {}): LrurecConfig => ({
  numItems: 30,
  hidden: 8,
  layers: 2,
  dropout: 0.2,
  attnDropout: 0.2,
  rMin: 0.8,
  rMax: 0.99,
  loss: "ce",
  ...over,
});

function assertClose(name: string, got: ArrayLike<number>, want: ArrayLike<number>, atol = 1e-5) {
  const c = compareClose(got, want, atol, 1e-4);
  assert.ok(
    c.ok,
    `${name}: index ${c.worstIndex}: got ${got[c.worstIndex]}, want ${want[c.worstIndex]}`,
  );
}

Deno.test("lrurec: padding and items after a row's end do not change its valid outputs", () => {
  withBackend(new JsBackend(), () => {
    const model = new Lrurec(cfg(), new Rng(3));
    const ctx = { training: false, rng: new Rng(0) };
    const seqs = [[3, 9, 27, 4], [5, 1], [30]];
    tidy(() => {
      const short = model.encode(batchOf(seqs, 4), ctx).toFloat32();
      for (const fill of [0, 17]) {
        const long = model.encode(batchOf(seqs, 9, fill), ctx).toFloat32();
        seqs.forEach((s, r) => {
          const n = s.length * 8;
          assertClose(
            `row ${r} fill ${fill}`,
            long.subarray(r * 9 * 8, r * 9 * 8 + n),
            short.subarray(r * 4 * 8, r * 4 * 8 + n),
            1e-6,
          );
        });
      }
      // The converse guard: a changed earlier item does change the later outputs.
      const other = model.encode(batchOf([[3, 8, 27, 4], [5, 1], [30]], 4), ctx).toFloat32();
      assert.ok(Math.abs(other[3 * 8] - short[3 * 8]) > 1e-4, "position 3 depends on position 1");
    });
  });
});

Deno.test("lrurec: the Toeplitz kernel's gradient w.r.t. ν_log, θ_log, γ_log (finite differences)", () => {
  gradCheck(
    "lruKernel",
    [{ shape: [3, 4], init: (r) => -1 + 0.5 * r.normal() }],
    ([p]) => {
      const k = lruKernel(p, 5);
      return op.concat([k.re, k.im], 0);
    },
  );
});

Deno.test("lrurec: scoreAll is [B, items + 1] = <x, E_i> + bias_i, the same as scoreParts", () => {
  withBackend(new JsBackend(), () => {
    const model = new Lrurec(cfg({ layers: 1 }), new Rng(5));
    const ctx = { training: false, rng: new Rng(0) };
    const batch = batchOf([[3, 9, 27, 4], [5, 1], [30]], 4);
    tidy(() => {
      const scores = model.scoreAll(batch, ctx);
      assert.deepEqual(scores.shape, [3, 31]);
      const h = model.encode(batch, ctx).toFloat32();
      const e = model.embedding.token.weight.toFloat32();
      const bias = model.model.bias.toFloat32();
      const want = new Float32Array(3 * 31);
      for (let r = 0; r < 3; r++) {
        const last = (r * 4 + batch.lengths[r] - 1) * 8;
        for (let i = 0; i < 31; i++) {
          let s = bias[i];
          for (let j = 0; j < 8; j++) s += h[last + j] * e[i * 8 + j];
          want[r * 31 + i] = s;
        }
      }
      assertClose("scores", scores.toFloat32(), want);
      const { users, items } = model.scoreParts(batch, ctx);
      assertClose("parts", op.matmul(users, items, false, true).toFloat32(), want);
    });
  });
});

Deno.test("lrurec: training on beauty-mini windows lowers the loss; train and eval from the CLI", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-lrurec-" });
  try {
    const ds = await tinyDataset(root);
    const src = await loadDataset(ds);
    const ex = windowExamples(src);
    withBackend(new JsBackend(), () => {
      const model = new Lrurec(cfg({ numItems: src.numItems, hidden: 16 }), new Rng(1));
      const batches = cyclingBatches(src, ex, 64, 6, 20, true);
      assertLossFalls(model, { lr: 5e-3, steps: 12, ...batches, minDrop: 0.05 });
    });

    const sets = ["hidden=16", "layers=1", "maxSteps=3", "epochs=2", "batchSize=64"];
    await assertTrainEval(ds, "lrurec", join(root, "run"), sets, ["--k", "5,10,20"]);
    const bad = await runCli([
      "train",
      ds,
      "--model",
      "lrurec",
      "--out",
      join(root, "bad"),
      "--set",
      "lruRMin=0.99",
      "--set",
      "lruRMax=0.5",
      "--quiet",
    ]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /lruRMin \(0\.99\) must not exceed lruRMax \(0\.5\)/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
