/**
 * M3SRec: MoE gates are distributions, missing images are zero-filled (a missing item's stored
 * row never reaches the output), the text-only mode and its notice, scoreParts against scoreAll,
 * training steps on ml-100k-mini (real poster features) lower the loss, and train / eval from the
 * CLI.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { JsBackend } from "../core/backends/js.ts";
import { TrainConfigSchema } from "../core/config.ts";
import { loadDataset } from "../core/data/dataset.ts";
import { windowExamples } from "../core/models/examples.ts";
import type { ItemSide } from "../core/models/item_side.ts";
import { M3srec, type M3srecConfig } from "../core/models/m3srec.ts";
import { createModel } from "../core/models/registry.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { assign, backward, tidy, withBackend } from "../core/tensor.ts";
import { itemSide } from "../core/train/run.ts";
import {
  assertMissingImageIgnored,
  batch as tinyBatch,
  ITEMS,
  itemSide as tinyItemSide,
  TINY_ENCODER,
} from "./helpers/tiny_duaf.ts";
import { compareClose } from "./golden.ts";
import {
  assertLossFalls,
  assertTrainEval,
  cyclingBatches,
  mlMiniDataset,
  TINY_SETS,
} from "./helpers/tiny_run.ts";

const cfg = (over: Partial<M3srecConfig> = {}): M3srecConfig => ({
  ...TINY_ENCODER,
  modalities: ["text", "image"],
  experts: 3,
  adaptorDropout: 0,
  auxWeight: 0.1,
  temperature: 0.07,
  ...over,
});

/** A model whose zero-initialised gates are redrawn, so gating is not uniform. */
function model(items: ItemSide, over: Partial<M3srecConfig> = {}): M3srec {
  const m = new M3srec(cfg(over), items, new Rng(3));
  const rng = new Rng(4);
  for (const [name, p] of m.namedParameters()) {
    if (!name.endsWith("w_gate")) continue;
    const v = new Float32Array(p.size);
    for (let i = 0; i < v.length; i++) v[i] = rng.normal();
    assign(p, v);
  }
  return m;
}

Deno.test("m3srec: adaptor and fusion gates are distributions over the experts, not uniform", () => {
  withBackend(new JsBackend(), () => {
    const m = model(tinyItemSide(new Rng(1), true));
    tidy(() => {
      const gates = m.gates();
      assert.deepEqual(Object.keys(gates).sort(), ["fusion", "image", "text"]);
      for (const [name, g] of Object.entries(gates)) {
        const [rows, k] = g.shape;
        assert.deepEqual([rows, k], [ITEMS + 1, 3], name);
        const v = g.toFloat32();
        let spread = 0;
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let j = 0; j < k; j++) {
            assert.ok(v[r * k + j] >= 0, `${name} row ${r}`);
            s += v[r * k + j];
            spread = Math.max(spread, Math.abs(v[r * k + j] - 1 / k));
          }
          assert.ok(Math.abs(s - 1) < 1e-5, `${name} row ${r} sums to ${s}`);
        }
        if (name !== "fusion") assert.ok(spread > 0.05, `${name} gates are uniform`);
      }
    });
  });
});

Deno.test("m3srec: a missing item's image row never reaches the output; a present one does", () => {
  withBackend(new JsBackend(), () => {
    assertMissingImageIgnored(
      tinyItemSide(new Rng(1), true),
      (it, b) =>
        tidy(() => model(it).scoreAll(b, { training: false, rng: new Rng(0) }).toFloat32()),
    );
  });
});

Deno.test("m3srec: without images it runs on ID and text, with one notice", () => {
  withBackend(new JsBackend(), () => {
    const notices: string[] = [];
    const c = TrainConfigSchema.parse({
      model: "m3srec",
      hidden: 8,
      inner: 16,
      layers: 1,
      maxLen: 5,
      m3srecExperts: 2,
    });
    const m = createModel(c, tinyItemSide(new Rng(1), false), new Rng(3), (n) => notices.push(n));
    assert.ok(m instanceof M3srec);
    assert.deepEqual(m.modalities, ["id", "text"]);
    assert.deepEqual(notices, ["m3srec: no image modality in the dataset; running without it"]);
    assert.equal(m.imageAdaptor, null);
    assert.ok(!m.namedParameters().some(([n]) => n.startsWith("image_adaptor")));
    const b = tinyBatch(new Rng(2));
    tidy(() => {
      const out = m.loss(b, { training: true, rng: new Rng(5) });
      assert.deepEqual(Object.keys(out.parts).sort(), ["aux", "main"]);
      assert.ok(Number.isFinite(out.total.item()));
      backward(out.total);
      const { users, items } = m.scoreParts(b, { training: false, rng: new Rng(0) });
      const direct = m.scoreAll(b, { training: false, rng: new Rng(0) }).toFloat32();
      const parts = op.matmul(users, items, false, true).toFloat32();
      assert.equal(compareClose(parts, direct, 1e-6, 1e-5).ok, true);
    });
    // auxWeight 0 leaves only the next-item loss.
    const plain = new M3srec(cfg({ auxWeight: 0 }), tinyItemSide(new Rng(1), true), new Rng(3));
    tidy(() => {
      const out = plain.loss(b, { training: true, rng: new Rng(5) });
      assert.deepEqual(Object.keys(out.parts), ["main"]);
    });
  });
});

Deno.test("m3srec: eval mode scores one cached item table, recomputed after the next eval()", () => {
  withBackend(new JsBackend(), () => {
    const m = model(tinyItemSide(new Rng(1), true));
    const b = tinyBatch(new Rng(2));
    const ctx = () => ({ training: false, rng: new Rng(0) });
    const fresh = () => tidy(() => m.scoreAll(b, ctx()).toFloat32()); // module in training mode
    const before = fresh();
    m.eval();
    const cached = tidy(() => m.scoreAll(b, ctx()).toFloat32());
    assert.equal(compareClose(cached, before, 1e-6, 1e-5).ok, true);
    const gate = m.fusion.gateLayer.weight;
    // Expert 0's gate row only: a shift of every row would leave the softmax unchanged.
    const cols = gate.shape[1];
    assign(gate, gate.toFloat32().map((v, i) => (i < cols ? v + 2 : v)));
    m.eval();
    const after = tidy(() => m.scoreAll(b, ctx()).toFloat32());
    m.train();
    assert.equal(compareClose(after, fresh(), 1e-6, 1e-5).ok, true);
    assert.ok(compareClose(after, before, 1e-6, 0).maxAbsDiff > 1e-4);
  });
});

Deno.test("m3srec: window training takes the contrastive term per sequence, the next-item loss per position", () => {
  withBackend(new JsBackend(), () => {
    const m = model(tinyItemSide(new Rng(1), true));
    const b = tinyBatch(new Rng(2));
    // Every position's next item, the row's target after its last one.
    const positionTargets = new Int32Array(b.size * b.len);
    for (let r = 0; r < b.size; r++) {
      for (let j = 0; j < b.lengths[r]; j++) {
        positionTargets[r * b.len + j] = j + 1 < b.lengths[r]
          ? b.items[r * b.len + j + 1]
          : b.targets[r];
      }
    }
    const ctx = () => ({ training: false, rng: new Rng(0) });
    tidy(() => {
      const prefix = m.loss(b, ctx()).parts;
      const window = m.loss({ ...b, positionTargets }, ctx()).parts;
      assert.equal(window.aux.item(), prefix.aux.item());
      assert.ok(Math.abs(window.main.item() - prefix.main.item()) > 1e-4);
    });
  });
});

Deno.test("m3srec: training steps on ml-100k-mini with poster features lower the loss; CLI train and eval", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-m3srec-" });
  try {
    const ds = await mlMiniDataset(root);
    const src = await loadDataset(ds);
    assert.ok(src.image && src.text, "ml-100k-mini has text and image modalities");
    const ex = windowExamples(src);
    withBackend(new JsBackend(), () => {
      const m = new M3srec(
        cfg({ numItems: src.numItems, maxLen: 10, hidden: 16 }),
        itemSide(src),
        new Rng(1),
      );
      assert.deepEqual(m.modalities, ["id", "text", "image"]);
      assert.equal(ex.users.length, 150);
      const batches = cyclingBatches(src, ex, 30, 5, 10, true);
      assertLossFalls(m, { lr: 3e-3, steps: 8, ...batches, minDrop: 0.05 });
    });

    const sets = [...TINY_SETS, "m3srecExperts=2", "maxLen=20"];
    await assertTrainEval(ds, "m3srec", join(root, "run"), sets);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
