/**
 * IISAN: shapes and layer counts, the fallback to one layer per modality, the gates' starting
 * value, the inter-modal layer alignment, eval-mode table caching, training steps lowering the
 * loss, and preprocess of precomputed layer states (.npy [items, K, d] and .safetensors
 * layer_k) followed by CLI train / eval on ml-100k-mini.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { JsBackend } from "../core/backends/js.ts";
import { loadDataset } from "../core/data/dataset.ts";
import { npyMatrixBytes } from "../core/features/npy.ts";
import { encodeSafetensors, tensor as safeTensor } from "../core/io/safetensors.ts";
import { windowExamples } from "../core/models/examples.ts";
import { Iisan, type IisanConfig } from "../core/models/iisan.ts";
import type { ItemSide } from "../core/models/item_side.ts";
import { FrozenValues } from "../core/nn/context.ts";
import { Rng } from "../core/random.ts";
import { assign, tidy, withBackend } from "../core/tensor.ts";
import { itemSide } from "../core/train/run.ts";
import {
  batch as tinyBatch,
  ITEMS,
  itemSide as tinyItemSide,
  TINY_ENCODER,
} from "./helpers/tiny_duaf.ts";
import { runCli } from "./helpers/run_cli.ts";
import {
  assertLossFalls,
  assertTrainEval,
  cyclingBatches,
  ML_MINI as MINI,
  mlMiniDataset,
  TINY_SETS,
} from "./helpers/tiny_run.ts";

const cfg = (over: Partial<IisanConfig> = {}): IisanConfig => ({
  ...TINY_ENCODER,
  sideDim: 12,
  adapterDown: 4,
  adapterActivation: "relu",
  gateTemperature: 0.1,
  ...over,
});

function layered(rng: Rng, widths: number[], items = ITEMS) {
  const width = widths.reduce((a, b) => a + b, 0);
  const data = new Float32Array((items + 1) * width);
  for (let i = width; i < data.length; i++) data[i] = rng.normal();
  return { widths, data };
}

Deno.test("iisan: one step per cached layer, one layer per modality without layer states", () => {
  withBackend(new JsBackend(), () => {
    const base = tinyItemSide(new Rng(1), true);
    const plain = new Iisan(cfg(), base, new Rng(2));
    assert.deepEqual(plain.layerCounts(), { image: 1, text: 1 });
    assert.equal(plain.inter!.steps, 1);
    const items: ItemSide = { ...base, imageLayers: layered(new Rng(3), [4, 7, 5, 3]) };
    const m = new Iisan(cfg(), items, new Rng(2));
    assert.deepEqual(m.layerCounts(), { image: 4, text: 1 });
    assert.equal(m.inter!.steps, 4);
    tidy(() => {
      const t = m.itemTable();
      assert.deepEqual(t.shape, [ITEMS + 1, 8]);
      const b = tinyBatch(new Rng(4));
      assert.deepEqual(m.scoreAll(b, { training: false, rng: new Rng(0) }).shape, [
        b.size,
        ITEMS + 1,
      ]);
    });
    // The gate logits start at 0: both sources weigh 0.5.
    for (const [name, p] of m.namedParameters()) {
      if (name.includes(".gates.")) assert.equal(p.toFloat32()[0], 0, name);
    }
  });
});

Deno.test("iisan: text-only runs without the inter-modal SAN, with a notice", () => {
  withBackend(new JsBackend(), () => {
    const m = new Iisan(cfg(), tinyItemSide(new Rng(1), false), new Rng(2));
    assert.equal(m.inter, null);
    assert.deepEqual(m.layerCounts(), { text: 1 });
    assert.ok(m.notices.some((n) => n.includes("no image modality")));
    assert.ok(!m.namedParameters().some(([n]) => n.startsWith("mm_san.")));
  });
});

Deno.test("iisan: every cached image layer reaches the item table", () => {
  withBackend(new JsBackend(), () => {
    const base = tinyItemSide(new Rng(1), true);
    const layers = layered(new Rng(3), [4, 7, 5]);
    const m = new Iisan(cfg(), { ...base, imageLayers: layers }, new Rng(2));
    const before = tidy(() => m.itemTable().toFloat32());
    for (const [k, offset] of [[0, 0], [1, 4], [2, 11]]) {
      const changed = { widths: layers.widths, data: Float32Array.from(layers.data) };
      changed.data[5 * 16 + offset] += 1; // item 5, first column of layer k
      const m2 = new Iisan(cfg(), { ...base, imageLayers: changed }, new Rng(2));
      const after = tidy(() => m2.itemTable().toFloat32());
      let diff = 0;
      for (let c = 0; c < 8; c++) diff += Math.abs(after[5 * 8 + c] - before[5 * 8 + c]);
      assert.ok(diff > 1e-6, `layer ${k} does not reach item 5's embedding`);
      assert.equal(after[6 * 8], before[6 * 8], "another item's row moved");
    }
  });
});

Deno.test("iisan: an evaluation's item table is built once (ctx.frozen), and not reused after it", () => {
  withBackend(new JsBackend(), () => {
    const m = new Iisan(cfg(), tinyItemSide(new Rng(1), true), new Rng(2));
    const b = tinyBatch(new Rng(4));
    const frozen = new FrozenValues();
    const ctx = { training: false, rng: new Rng(0), frozen };
    m.eval();
    const s1 = tidy(() => m.scoreAll(b, ctx).toFloat32());
    const bias = m.combine.bias!;
    assign(bias, bias.toFloat32().map((x, c) => x + 0.5 * (c + 1)));
    const s2 = tidy(() => m.scoreAll(b, ctx).toFloat32());
    assert.equal(s2[3], s1[3], "the evaluation's table is scored until it ends");
    frozen.dispose();
    const next = new FrozenValues();
    const s3 = tidy(() => m.scoreAll(b, { ...ctx, frozen: next }).toFloat32());
    next.dispose();
    assert.notEqual(s3[3], s1[3]);
    const s4 = tidy(() => m.scoreAll(b, { training: false, rng: new Rng(0) }).toFloat32());
    assert.deepEqual(s4, s3, "without a cache the table is built for each call");
  });
});

/** [rows, k, d] float32 as .npy bytes. */
function npy3(rows: number, k: number, d: number, data: Float32Array): Uint8Array {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${k}, ${d}), }`;
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n";
  const out = new Uint8Array(10 + header.length + data.length * 4);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  for (let i = 0; i < data.length; i++) view.setFloat32(10 + header.length + 4 * i, data[i], true);
  return out;
}

Deno.test("iisan: preprocess stores precomputed layer states; steps lower the loss; CLI train and eval", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-iisan-" });
  try {
    const ids = (await Deno.readTextFile(join(MINI, "image_mobilenet_v2.ids.txt"))).trim()
      .split("\n");
    const rng = new Rng(7);
    // Text: 2 layers of width 6 (.npy [n, 2, 6]); image: 3 layers of widths 5, 8, 4 (layer_k).
    const n = ids.length;
    const text = new Float32Array(n * 12).map(() => rng.normal());
    await Deno.writeFile(join(root, "text_layers.npy"), npy3(n, 2, 6, text));
    await Deno.writeTextFile(join(root, "text_layers.ids.txt"), ids.join("\n") + "\n");
    const widths = [5, 8, 4];
    const layerTensors = Object.fromEntries(
      widths.map((
        w,
        k,
      ) => [`layer_${k}`, safeTensor(new Float32Array(n * w).map(() => rng.normal()), [n, w])]),
    );
    await Deno.writeFile(
      join(root, "image_layers.safetensors"),
      encodeSafetensors(layerTensors, { ids: JSON.stringify(ids) }),
    );
    const plainDir = await mlMiniDataset(root, [], "plain");
    const ds = await mlMiniDataset(root, [
      "--text-layer-features",
      join(root, "text_layers.npy"),
      "--image-layer-features",
      join(root, "image_layers.safetensors"),
    ]);
    const plain = await loadDataset(plainDir);
    assert.equal(plain.manifest.layers, undefined);
    assert.equal(plain.textLayers, null);
    const src = await loadDataset(ds);
    assert.deepEqual(src.manifest.layers?.text?.widths, [6, 6]);
    assert.deepEqual(src.manifest.layers?.image?.widths, [5, 8, 4]);
    // The layer states are the file's rows, item by raw id; the default arrays are unchanged.
    const raw = src.itemIds();
    const i = 7;
    const row = ids.indexOf(raw[i]);
    assert.ok(row >= 0);
    assert.deepEqual(
      Array.from(src.textLayers!.data.subarray(i * 12, i * 12 + 12)),
      Array.from(text.subarray(row * 12, row * 12 + 12)),
    );
    const l1 = layerTensors.layer_1.data as Float32Array;
    assert.deepEqual(
      Array.from(src.imageLayers!.data.subarray(i * 17 + 5, i * 17 + 13)),
      Array.from(l1.subarray(row * 8, row * 8 + 8)),
    );
    assert.deepEqual(src.image!.data, plain.image!.data);
    assert.deepEqual(src.text!.data, plain.text!.data);

    const ex = windowExamples(src);
    withBackend(new JsBackend(), () => {
      const m = new Iisan(
        cfg({ numItems: src.numItems, maxLen: 10, hidden: 16 }),
        itemSide(src),
        new Rng(1),
      );
      assert.deepEqual(m.layerCounts(), { image: 3, text: 2 });
      const batches = cyclingBatches(src, ex, 30, 5, 10, true);
      assertLossFalls(m, { lr: 3e-3, steps: 8, ...batches, minDrop: 0.05 });
    });

    const sets = [...TINY_SETS, "iisanSideDim=16", "iisanAdapterDown=8", "maxLen=20"];
    await assertTrainEval(ds, "iisan", join(root, "run"), sets);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("iisan: a 2-D file given as layer states is one line naming the expected shape", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-iisan-bad-" });
  try {
    const ids = ["1", "2", "3"];
    await Deno.writeFile(join(root, "flat.npy"), npyMatrixBytes(3, 4, new Float32Array(12)));
    await Deno.writeTextFile(join(root, "flat.ids.txt"), ids.join("\n") + "\n");
    const r = await runCli([
      "preprocess",
      "--format",
      "recbole",
      "--inter",
      join(MINI, "ml-100k-mini.inter.gz"),
      "--item",
      join(MINI, "ml-100k-mini.item"),
      "--kcore",
      "0",
      "--text-dim",
      "8",
      "--text-layer-features",
      join(root, "flat.npy"),
      "--out",
      join(root, "ds"),
      "--quiet",
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /layer features must be a 3-D C-order array \[items, layers, dim\]/);
    const noEncoder = await runCli([
      "preprocess",
      "--format",
      "recbole",
      "--inter",
      join(MINI, "ml-100k-mini.inter.gz"),
      "--image-layers",
      "3",
      "--out",
      join(root, "ds2"),
      "--quiet",
    ]);
    assert.notEqual(noEncoder.code, 0);
    assert.match(noEncoder.stderr, /--image-layers needs --image-encoder/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
