// The real pretrained image encoder shipped in fixtures/encoders (nsfwjs's MobileNetV2 converted
// by tools/build_image_encoder.ts) and the ml-100k-mini image features derived from it.
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../core/data/dataset.ts";
import { readOnnxMetadata } from "../core/export/onnx_graph.ts";
import { parseNpyMatrix } from "../core/features/npy.ts";
import { encodeImages } from "../core/features/onnx_image.ts";
import { buildNsfwjsEncoder } from "../tools/nsfwjs_models.ts";
import {
  imageFeatureFiles,
  MINI_DIR,
  MINI_IMAGE_FEATURES,
  miniItemIds,
  MOBILENET_ONNX,
} from "../tools/make_image_features.ts";
import { testImageFiles } from "../tools/make_test_images.ts";
import { runCli } from "./helpers/run_cli.ts";

const IMAGES = new URL("../fixtures/encoders/images", import.meta.url).pathname;
const POSTERS = join(import.meta.dirname!, "../../shared/data/ml-100k-posters/images");
const havePosters = (() => {
  try {
    return Deno.statSync(POSTERS).isDirectory;
  } catch {
    return false;
  }
})();

Deno.test("image encoder: the committed MobileNetV2 ONNX is what build:image-encoder makes", async () => {
  const built = await buildNsfwjsEncoder("mobilenet_v2");
  const committed = await Deno.readFile(MOBILENET_ONNX);
  assert.equal(built.outputLayer, "flatten_1");
  assert.deepEqual(built.outputShape, [1280]);
  assert.ok(
    built.bytes.length === committed.length && built.bytes.every((b, i) => b === committed[i]),
  );
  const meta = readOnnxMetadata(committed);
  assert.equal(meta["duaf.image.mean"], "0,0,0");
  assert.equal(meta["duaf.image.std"], "1,1,1");
});

Deno.test("image encoder: MobileNetV2 encodes images into 1280 non-negative features", async () => {
  const paths = ["gradient_40x24.png", "checker_48x32.jpg", "gray_20x28.png"].map((f) =>
    join(IMAGES, f)
  );
  const out = await encodeImages(MOBILENET_ONNX, [null, ...paths], { batchSize: 2, strict: true });
  assert.equal(out.dim, 1280);
  assert.deepEqual([...out.mask], [0, 1, 1, 1]);
  const row = (i: number) => out.data.subarray(i * 1280, (i + 1) * 1280);
  // ReLU6 features pooled: in [0, 6], some positive; different images differ.
  for (let i = 1; i <= 3; i++) {
    assert.ok(row(i).every((v) => v >= 0 && v <= 6) && row(i).some((v) => v > 0.1));
  }
  assert.ok(row(1).some((v, k) => Math.abs(v - row(2)[k]) > 0.1));
});

Deno.test("ml-100k-mini image features: preprocess --image-features gives the image modality", async () => {
  const ids = (await Deno.readTextFile(MINI_IMAGE_FEATURES.replace(/\.npy$/, ".ids.txt")))
    .trim().split("\n");
  const m = parseNpyMatrix(await Deno.readFile(MINI_IMAGE_FEATURES), MINI_IMAGE_FEATURES);
  assert.equal(m.rows, ids.length);
  assert.equal(m.cols, 1280);
  const tmp = await Deno.makeTempDir();
  try {
    const out = join(tmp, "ml");
    const r = await runCli([
      "preprocess",
      "--format",
      "recbole",
      "--inter",
      join(MINI_DIR, "ml-100k-mini.inter.gz"),
      "--item",
      join(MINI_DIR, "ml-100k-mini.item"),
      "--kcore",
      "0",
      "--image-features",
      MINI_IMAGE_FEATURES,
      "--out",
      out,
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const ds = await loadDataset(out);
    assert.equal(ds.image!.dim, 1280);
    const present = ds.image!.mask.reduce((a, b) => a + b, 0);
    assert.equal(present, ids.length);
    // Most mini-set items have a poster (96% of ml-100k's items do).
    assert.ok(present / ds.numItems > 0.9, `${present} of ${ds.numItems}`);
    const itemIds = ds.itemIds();
    const k = itemIds.indexOf(ids[5]);
    for (let c = 0; c < 1280; c += 97) assert.equal(ds.image!.data[k * 1280 + c], m.get(5, c));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test({
  name: "ml-100k-mini image features: the committed rows are the posters' encodings",
  ignore: !havePosters,
  async fn() {
    // The first 14 mini items (those with a poster), encoded afresh (float16 in the file).
    const ids = (await miniItemIds()).slice(0, 14);
    const fresh = await imageFeatureFiles(ids, POSTERS, MOBILENET_ONNX);
    const committed = await Deno.readFile(MINI_IMAGE_FEATURES);
    const m = parseNpyMatrix(committed, MINI_IMAGE_FEATURES);
    const f = parseNpyMatrix(fresh.npy, "fresh");
    const committedIds =
      (await Deno.readTextFile(MINI_IMAGE_FEATURES.replace(/\.npy$/, ".ids.txt")))
        .split("\n");
    assert.deepEqual(fresh.idsText.trim().split("\n"), committedIds.slice(0, f.rows));
    for (let r = 0; r < f.rows; r++) {
      for (let c = 0; c < 1280; c++) assert.equal(f.get(r, c), m.get(r, c), `row ${r}, col ${c}`);
    }
  },
});

Deno.test("image layers: preprocess --image-layers K stores K evenly spaced MobileNetV2 block states; without it the artifact is unchanged", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "duaf-image-layers-" });
  try {
    const built = await buildNsfwjsEncoder("mobilenet_v2", { layers: true });
    const widths = built.layerShapes.map((s) => s[0]);
    assert.deepEqual(widths, [
      16,
      24,
      24,
      32,
      32,
      32,
      64,
      64,
      64,
      64,
      96,
      96,
      96,
      160,
      160,
      160,
      320,
      1280,
    ]);
    const model = join(tmp, "mobilenet_layers.onnx");
    await Deno.writeFile(model, built.bytes);
    // Generated images for the first five mini items, the rest have none.
    const images = join(tmp, "images");
    await Deno.mkdir(images);
    const files = [...testImageFiles().entries()].filter(([n]) => !/truncated|not_an/.test(n));
    const ids = (await miniItemIds()).slice(0, 5);
    for (const [j, id] of ids.entries()) {
      const [name, bytes] = files[j % files.length];
      await Deno.writeFile(join(images, `${id}${name.slice(name.lastIndexOf("."))}`), bytes);
    }
    const args = (out: string, extra: string[]) => [
      "preprocess",
      "--format",
      "recbole",
      "--inter",
      join(MINI_DIR, "ml-100k-mini.inter.gz"),
      "--item",
      join(MINI_DIR, "ml-100k-mini.item"),
      "--kcore",
      "0",
      "--text-dim",
      "8",
      "--image-dir",
      images,
      ...extra,
      "--out",
      out,
      "--quiet",
    ];
    const withLayers = join(tmp, "layers");
    let r = await runCli(args(withLayers, ["--image-encoder", model, "--image-layers", "4"]));
    assert.equal(r.code, 0, r.stderr);
    const ds = await loadDataset(withLayers);
    // Layers round((j + 1) 18 / 4) - 1 = 4, 8, 13, 17 of the 18 outputs.
    assert.deepEqual(ds.manifest.layers?.image?.widths, [32, 64, 160, 1280]);
    assert.equal(ds.manifest.layers?.image?.source, `onnx:${model}`);
    const width = 32 + 64 + 160 + 1280;
    const itemIds = ds.itemIds();
    const k = itemIds.indexOf(ids[1]);
    assert.ok(ds.image!.mask[k] === 1);
    const row = ds.imageLayers!.data.subarray(k * width, (k + 1) * width);
    // The last layer is the features themselves; block states are ReLU6-free projections (any sign).
    const feat = ds.image!.data.subarray(k * 1280, (k + 1) * 1280);
    for (let c = 0; c < 1280; c += 37) assert.ok(Math.abs(row[256 + c] - feat[c]) < 1e-5);
    assert.ok(row.subarray(0, 32).some((v) => Math.abs(v) > 1e-3), "block 4 state is not ~0");
    const none = itemIds.findIndex((_, i) => i > 0 && ds.image!.mask[i] === 0);
    assert.ok(
      ds.imageLayers!.data.subarray(none * width, (none + 1) * width).every((v) => v === 0),
    );

    // Without --image-layers, the same layered model gives the artifact the plain one gives.
    const plainLayered = join(tmp, "plain-layered");
    const plain = join(tmp, "plain");
    r = await runCli(args(plainLayered, ["--image-encoder", model]));
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(args(plain, ["--image-encoder", MOBILENET_ONNX]));
    assert.equal(r.code, 0, r.stderr);
    const a = await loadDataset(plainLayered);
    const b = await loadDataset(plain);
    assert.equal(a.manifest.layers, undefined);
    assert.deepEqual(a.manifest.modalities, {
      ...b.manifest.modalities,
      image: { ...b.manifest.modalities.image!, source: `onnx:${model}` },
    });
    assert.equal(a.imageLayers, null);
    const itemsA = await Deno.readFile(join(plainLayered, "items.safetensors"));
    const itemsB = await Deno.readFile(join(plain, "items.safetensors"));
    assert.ok(itemsA.length === itemsB.length && itemsA.every((x, i) => x === itemsB[i]));
    assert.equal(
      (await Deno.readTextFile(join(withLayers, "manifest.json"))).includes('"layers"'),
      true,
    );
    r = await runCli(
      args(join(tmp, "bad"), ["--image-encoder", MOBILENET_ONNX, "--image-layers", "2"]),
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no layer_\* outputs/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
