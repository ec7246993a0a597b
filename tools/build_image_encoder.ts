/**
 * Builds a real pretrained ONNX image encoder offline from the Keras models bundled in the npm
 * package nsfwjs@4.4.0 (core/features/keras_to_onnx.ts does the conversion):
 *
 *   deno task build:image-encoder [--model mobilenet_v2|inception_v3] --out FILE.onnx
 *
 * mobilenet_v2 (default): 224 x 224 input, 1280-d features, ~8.8 MB;
 * inception_v3: 299 x 299 input, 2048-d features, ~87 MB. The output is the global-average-pooled
 * features in front of nsfwjs's 5-class head; the ONNX metadata tells `duaf preprocess` to feed
 * RGB / 255 (docs/features.md). Same package, same bytes. --layers also returns every
 * inverted-residual block's output, global-average-pooled (layer_0 .. layer_16, then the
 * features as layer_17), for `duaf preprocess --image-layers K` (IISAN).
 */
import { parseArgs } from "node:util";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { buildNsfwjsEncoder, NSFWJS_MODELS, type NsfwjsModel } from "./nsfwjs_models.ts";

const usage = "usage: deno task build:image-encoder [--model mobilenet_v2|inception_v3] " +
  "[--layers] --out FILE.onnx";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string", default: "mobilenet_v2" },
      out: { type: "string" },
      layers: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  const model = values.model as NsfwjsModel;
  if (!NSFWJS_MODELS.includes(model) || !values.out) {
    console.error(!values.out ? usage : `unknown --model ${model} (${NSFWJS_MODELS.join(", ")})`);
    Deno.exit(2);
  }
  const t0 = performance.now();
  const r = await buildNsfwjsEncoder(model, { layers: values.layers });
  await writeFileAtomic(values.out, r.bytes);
  console.log(JSON.stringify({
    model,
    out: values.out,
    bytes: r.bytes.length,
    input: [3, r.inputShape[0], r.inputShape[1]],
    dim: r.outputShape[0],
    outputLayer: r.outputLayer,
    layers: r.layerShapes.map((s) => s[0]),
    seconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
  }));
}
