/**
 * UniSRec: the parametric whitening and MoE adaptor (shapes, gates summing to 1, the whitening
 * formula), item-drop views, a short fine-tuning run on beauty-mini lowering the loss, and the
 * CLI: train / eval / recommend, pre-training then fine-tuning with --init-from (what it loads,
 * what stays fresh and what is fixed), and its errors (text widths, nothing matching).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { JsBackend } from "../core/backends/js.ts";
import { loadDataset } from "../core/data/dataset.ts";
import { readSafetensors } from "../core/io/safetensors.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { splitExamples } from "../core/models/examples.ts";
import { itemDrop, MoEAdaptor, Unisrec, type UnisrecConfig } from "../core/models/unisrec.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { assign, tensor, tidy, withBackend } from "../core/tensor.ts";
import { compareClose } from "./golden.ts";
import { runCli, runCliProcess } from "./helpers/run_cli.ts";
import { TINY_ENCODER } from "./helpers/tiny_duaf.ts";
import {
  assertLossFalls,
  assertRecommends,
  assertTrainEval,
  cyclingBatches,
  setFlags,
  TINY_SETS,
  tinyDataset,
  trainModel,
} from "./helpers/tiny_run.ts";

const cfg = (over: Partial<UnisrecConfig> = {}): UnisrecConfig => ({
  ...TINY_ENCODER,
  maxLen: 8,
  hiddenDropout: 0.5,
  attnDropout: 0.5,
  stage: "finetune",
  mode: "transductive",
  experts: 4,
  adaptorDropout: 0.2,
  temperature: 0.07,
  lambda: 1e-3,
  itemDropRatio: 0.2,
  itemDropCoefficient: 0.9,
  noisyGating: true,
  fixEncoder: true,
  ...over,
});

function randomText(rows: number, dim: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: rows * dim }, () => rng.normal());
}

Deno.test("unisrec adaptor: [B, L, in] -> [B, L, out], gates sum to 1, (x - b) W per expert", () => {
  withBackend(new JsBackend(), () => {
    const rng = new Rng(4);
    const moe = new MoEAdaptor(3, 5, 7, 0, true, rng);
    // Non-zero gate weights so the gates differ across rows and experts.
    for (const w of [moe.wGate, moe.wNoise]) {
      assign(w, Float32Array.from({ length: w.size }, () => rng.normal()));
    }
    tidy(() => {
      const x = tensor(randomText(2 * 4, 5, 9), [2, 4, 5]);
      for (const training of [false, true]) {
        const ctx = { training, rng: new Rng(1) };
        const out = moe.forward(x, ctx);
        assert.deepEqual(out.shape, [2, 4, 7]);
        const g = moe.gates(op.reshape(x, [8, 5]), ctx).toFloat32();
        for (let r = 0; r < 8; r++) {
          const sum = g[r * 3] + g[r * 3 + 1] + g[r * 3 + 2];
          assert.ok(Math.abs(sum - 1) < 1e-6, `row ${r} gates sum to ${sum}`);
        }
        assert.ok(Math.abs(g[0] - g[3]) > 1e-4, "gates depend on the row");
      }
      // Eval gates are deterministic; training adds noise.
      const flat = op.reshape(x, [8, 5]);
      const a = moe.gates(flat, { training: false, rng: new Rng(1) }).toFloat32();
      const b = moe.gates(flat, { training: true, rng: new Rng(1) }).toFloat32();
      assert.ok(!compareClose(a, b, 1e-6, 0).ok, "training gates carry noise");
      // One expert: (x - b) W^T, whatever the gate.
      const e = moe.experts.items[1];
      assign(e.bias, Float32Array.from([1, -2, 0.5, 0, 3]));
      const xs = x.toFloat32();
      const w = e.lin.weight.toFloat32();
      const got = e.forward(x, { training: false, rng: new Rng(0) }).toFloat32();
      const bias = [1, -2, 0.5, 0, 3];
      for (let r = 0; r < 8; r++) {
        for (let o = 0; o < 7; o++) {
          let s = 0;
          for (let i = 0; i < 5; i++) s += (xs[r * 5 + i] - bias[i]) * w[o * 5 + i];
          assert.ok(Math.abs(got[r * 7 + o] - s) < 1e-5, `expert output ${r},${o}`);
        }
      }
    });
  });
});

Deno.test("unisrec item drop: first item kept, order kept, lengths counted; ratio 0 is the identity", () => {
  const batch: SequenceBatch = {
    size: 2,
    len: 6,
    items: Int32Array.from([3, 7, 12, 8, 19, 1, 5, 11, 0, 0, 0, 0]),
    lengths: Int32Array.from([6, 2]),
    times: new Float32Array(12),
    users: new Int32Array(2),
    targets: Int32Array.from([4, 9]),
  };
  const same = itemDrop(batch, 0, new Rng(1));
  assert.deepEqual([...same.items], [...batch.items]);
  assert.deepEqual([...same.lengths], [6, 2]);
  const all = itemDrop(batch, 1, new Rng(1));
  assert.deepEqual([...all.lengths], [1, 1]);
  assert.deepEqual([...all.items], [3, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0]);
  const some = itemDrop(batch, 0.5, new Rng(3));
  const row = [...some.items.subarray(0, some.lengths[0])];
  assert.equal(row[0], 3);
  const order = [3, 7, 12, 8, 19, 1];
  for (let j = 1; j < row.length; j++) {
    assert.ok(order.indexOf(row[j]) > order.indexOf(row[j - 1]), "kept items stay in order");
  }
  assert.ok([...some.items.subarray(some.lengths[0], 6)].every((v) => v === 0));
});

Deno.test("unisrec: no ID table in pre-training or inductive mode; the pre-training loss has both parts", () => {
  withBackend(new JsBackend(), () => {
    const text = { dim: 6, data: randomText(31, 6, 2) };
    const names = (c: UnisrecConfig) =>
      new Unisrec(c, new Rng(1), text).namedParameters().map(([n]) => n);
    assert.ok(names(cfg()).includes("item_embedding.weight"));
    assert.ok(!names(cfg({ mode: "inductive" })).includes("item_embedding.weight"));
    assert.ok(!names(cfg({ stage: "pretrain" })).includes("item_embedding.weight"));
    const model = new Unisrec(cfg({ stage: "pretrain" }), new Rng(1), text);
    const batch: SequenceBatch = {
      size: 3,
      len: 4,
      items: Int32Array.from([3, 7, 12, 8, 5, 11, 0, 0, 9, 0, 0, 0]),
      lengths: Int32Array.from([4, 2, 1]),
      times: new Float32Array(12),
      users: new Int32Array(3),
      targets: Int32Array.from([4, 9, 4]),
    };
    tidy(() => {
      const out = model.loss(batch, { training: true, rng: new Rng(5) });
      const parts = Object.keys(out.parts).sort();
      assert.deepEqual(parts, ["seq_item", "seq_seq"]);
      const total = out.total.item();
      const want = out.parts.seq_item.item() + 1e-3 * out.parts.seq_seq.item();
      assert.ok(Math.abs(total - want) < 1e-5 && Number.isFinite(total));
    });
  });
});

Deno.test("unisrec learns: Adam steps on beauty-mini lower the fine-tuning loss", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-unisrec-learn-" });
  try {
    const src = await loadDataset(await tinyDataset(root));
    const ex = splitExamples(src, "train");
    withBackend(new JsBackend(), () => {
      const model = new Unisrec(
        cfg({ numItems: src.numItems, hidden: 16, inner: 32, maxLen: 20 }),
        new Rng(1),
        src.text!,
      );
      const batches = cyclingBatches(src, ex, 64, 5, 20);
      assertLossFalls(model, { lr: 3e-3, steps: 10, ...batches, minDrop: 0.1 });
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

const train = (ds: string, out: string, extra: string[] = []) =>
  trainModel(ds, "unisrec", out, TINY_SETS, extra);

async function tensors(run: string) {
  return (await readSafetensors(join(run, "model.safetensors"))).tensors;
}

Deno.test("duaf train --model unisrec: train, eval, recommend; pre-train then fine-tune with --init-from", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-unisrec-cli-" });
  try {
    const ds = await tinyDataset(root);
    // Fine-tuning from scratch (no pre-training), then eval and recommend on it.
    const scratch = join(root, "scratch");
    await assertTrainEval(ds, "unisrec", scratch, TINY_SETS, ["--k", "5,10,20"]);
    await assertRecommends(scratch, (await loadDataset(ds)).userIds()[0]);

    // Pre-training: the contrastive parts are logged, there is no ID table.
    const pre = join(root, "pre");
    const r1 = await train(ds, pre, ["--set", "unisrecStage=pretrain"]);
    assert.equal(r1.code, 0, r1.stderr);
    const preTensors = await tensors(pre);
    assert.ok(!preTensors.has("item_embedding.weight"));

    // Fine-tuning from it: everything but the ID table loads; the encoder stays fixed.
    const ft = join(root, "ft");
    const r2 = await runCliProcess([
      "train",
      ds,
      "--model",
      "unisrec",
      "--out",
      ft,
      "--init-from",
      pre,
      ...setFlags(TINY_SETS),
      "--backend",
      "wasm",
    ]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(
      r2.stderr,
      /init from .*pre: loaded 37 of 38 tensors: .*trm_encoder\.\* \(16\).*moe_adaptor\.\* \(18\); fresh: item_embedding\.weight/,
    );
    assert.match(r2.stderr, /position_embedding and trm_encoder fixed/);
    assert.equal(JSON.parse(r2.stdout).initFrom, pre);
    const ftTensors = await tensors(ft);
    const equal = (name: string) => {
      const a = preTensors.get(name)!.data as Float32Array;
      const b = ftTensors.get(name)!.data as Float32Array;
      return a.length === b.length && a.every((v, i) => v === b[i]);
    };
    assert.ok(equal("position_embedding.weight"), "fixed: position embedding");
    assert.ok(equal("trm_encoder.layer.0.feed_forward.dense_1.weight"), "fixed: transformer");
    assert.ok(!equal("moe_adaptor.experts.0.lin.weight"), "fine-tuned: the adaptor");
    const manifest = JSON.parse(await Deno.readTextFile(join(ft, "manifest.json")));
    assert.deepEqual(manifest.initFrom.fresh, ["item_embedding.weight"]);

    // With unisrecFixEncoder=false the encoder trains too; step 0 equals the pre-trained values.
    const free = join(root, "free");
    const r3 = await train(ds, free, [
      "--init-from",
      pre,
      "--set",
      "unisrecFixEncoder=false",
      "--set",
      "epochs=1",
      "--set",
      "maxSteps=1",
      "--set",
      "lr=1e-9",
    ]);
    assert.equal(r3.code, 0, r3.stderr);
    const freeTensors = await tensors(free);
    const close = compareClose(
      freeTensors.get("moe_adaptor.w_gate")!.data as Float32Array,
      preTensors.get("moe_adaptor.w_gate")!.data as Float32Array,
      1e-6,
      0,
    );
    assert.ok(close.ok, "one tiny step away from the pre-trained adaptor");

    // Another text width: one line naming both widths.
    const narrow = await tinyDataset(root, ["--text-dim", "16"], "narrow");
    const r4 = await train(narrow, join(root, "bad"), ["--init-from", pre]);
    assert.equal(r4.code, 2, r4.stderr);
    assert.match(
      r4.stderr,
      /the pre-training run's text features are 64-d, this dataset's are 16-d/,
    );
    // A model that shares no parameter with the run.
    const r5 = await runCli([
      "train",
      ds,
      "--model",
      "gru4rec",
      "--out",
      join(root, "gru"),
      "--init-from",
      pre,
      ...setFlags(TINY_SETS),
      "--quiet",
    ]);
    assert.equal(r5.code, 2, r5.stderr);
    assert.match(r5.stderr, /none of this gru4rec model's parameters matches the run's/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
