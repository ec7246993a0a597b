/**
 * Checks the converted image encoder against TF.js itself on real images: the same nsfwjs model
 * loaded by tf.loadLayersModel (tfjs-layers, pure-JS CPU backend) and cut at the same layer, fed
 * the same pixels. The ONNX side runs the way `duaf preprocess` runs it (encodeImages: decoding,
 * resizing and the preprocessing the model's metadata declares).
 *
 *   deno run -A tools/check_image_encoder.ts [--model mobilenet_v2|inception_v3] [--onnx FILE]
 *     [--images N] [--image-dir DIR] [--tol 1e-4]
 *
 * Without --onnx it converts the model afresh. Images: the first N (by item id) of DIR, by
 * default ../shared/data/ml-100k-posters/images. Prints one line per image (max |ONNX - TF.js|)
 * and a JSON summary; exits 1 when a difference exceeds --tol.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { decodeImage } from "../core/features/image_decode.ts";
import { preprocessImage } from "../core/features/image_preprocess.ts";
import { encodeImages } from "../core/features/onnx_image.ts";
import {
  buildNsfwjsEncoder,
  loadNsfwjsModel,
  NSFWJS_MODELS,
  NSFWJS_SIZES,
  type NsfwjsModel,
} from "./nsfwjs_models.ts";
import { loadTfjsFeatureModel, nchwToNhwc } from "./tfjs_reference.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: "mobilenet_v2" },
    onnx: { type: "string" },
    images: { type: "string", default: "8" },
    "image-dir": {
      type: "string",
      default: join(import.meta.dirname!, "../../shared/data/ml-100k-posters/images"),
    },
    tol: { type: "string", default: "1e-4" },
  },
});
const model = values.model as NsfwjsModel;
if (!NSFWJS_MODELS.includes(model)) throw new Error(`unknown --model ${model}`);
const n = Number(values.images);
const tol = Number(values.tol);
const dir = values["image-dir"]!;

const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((f) => /\.(jpe?g|png)$/i.test(f))
  .sort((a, b) => parseInt(a) - parseInt(b) || (a < b ? -1 : 1)).slice(0, n);
const paths = names.map((f) => join(dir, f));

let onnxPath = values.onnx;
let outputLayer = "flatten_1";
if (!onnxPath) {
  const built = await buildNsfwjsEncoder(model);
  outputLayer = built.outputLayer;
  onnxPath = await Deno.makeTempFile({ suffix: ".onnx" });
  await Deno.writeFile(onnxPath, built.bytes);
}
let t = performance.now();
const ours = await encodeImages(onnxPath, paths, { batchSize: 4, strict: true });
const onnxSeconds = (performance.now() - t) / 1000;
if (!values.onnx) await Deno.remove(onnxPath);

const files = await loadNsfwjsModel(model);
const ref = await loadTfjsFeatureModel(
  files.modelTopology,
  files.weightsManifest,
  files.weightData,
  outputLayer,
);
const size = NSFWJS_SIZES[model];
const pre = { size, mean: [0, 0, 0], std: [1, 1, 1], resample: "bilinear" as const, crop: false };
let worst = 0;
let maxRef = 0;
let sumDiff = 0;
t = performance.now();
for (let i = 0; i < paths.length; i++) {
  const px = preprocessImage(decodeImage(await Deno.readFile(paths[i])), pre);
  const out = await ref.run(nchwToNhwc(px, 1, 3, size, size), [1, size, size, 3]);
  const dim = out.data.length;
  if (dim !== ours.dim) throw new Error(`TF.js gives ${dim} features, ONNX ${ours.dim}`);
  let d = 0;
  for (let k = 0; k < dim; k++) {
    const e = Math.abs(out.data[k] - ours.data[i * dim + k]);
    d = Math.max(d, e);
    sumDiff += e;
    maxRef = Math.max(maxRef, Math.abs(out.data[k]));
  }
  worst = Math.max(worst, d);
  console.log(`${names[i]}: max |onnx - tfjs| = ${d.toExponential(2)}`);
}
const tfjsSeconds = (performance.now() - t) / 1000;
ref.dispose();
const summary = {
  model,
  images: paths.length,
  dim: ours.dim,
  maxAbsDiff: worst,
  meanAbsDiff: sumDiff / (paths.length * ours.dim),
  maxAbsFeature: maxRef,
  tol,
  onnxImagesPerSecond: Number((paths.length / onnxSeconds).toFixed(2)),
  tfjsCpuImagesPerSecond: Number((paths.length / tfjsSeconds).toFixed(2)),
};
console.log(JSON.stringify(summary));
if (!(worst <= tol)) {
  console.error(`max abs diff ${worst} exceeds ${tol}`);
  Deno.exit(1);
}
