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
