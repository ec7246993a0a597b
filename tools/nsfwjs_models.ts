/**
 * The pretrained Keras models bundled in the npm package nsfwjs@4.4.0 (MIT), read offline
 * through the npm: specifier. Each model is a model.json (`modelTopology` + `weightsManifest`)
 * and weight shards, wrapped as CommonJS modules (.min.js): the model module exports the JSON
 * object, each shard module a base64 string of the shard's bytes (uint8-quantized weights).
 *
 * nsfwjs feeds its models RGB scaled to [0, 1] (x / 255), NHWC, at 224 x 224 (MobileNetV2) or
 * 299 x 299 (InceptionV3). The models were fine-tuned from ImageNet weights for a 5-class task.
 */
import { Buffer } from "node:buffer";
import type { WeightsManifestGroup } from "../core/features/tfjs_weights.ts";
import {
  blockOutputs,
  decodeWeights,
  kerasToOnnx,
  type KerasToOnnxResult,
  parseKerasTopology,
} from "../core/features/keras_to_onnx.ts";

export const NSFWJS_VERSION = "4.4.0";

export const NSFWJS_MODELS = ["mobilenet_v2", "inception_v3"] as const;
export type NsfwjsModel = typeof NSFWJS_MODELS[number];

export interface TfjsModelFiles {
  name: NsfwjsModel;
  modelTopology: unknown;
  weightsManifest: WeightsManifestGroup[];
  /** All shards' bytes, concatenated in manifest order. */
  weightData: Uint8Array;
}

interface Bundle {
  modelJson: () => Promise<{ default: unknown }>;
  weightBundles: (() => Promise<{ default: unknown }>)[];
}

async function bundle(name: NsfwjsModel): Promise<Bundle> {
  if (name === "mobilenet_v2") {
    return (await import("nsfwjs/models/mobilenet_v2")).MobileNetV2Model as Bundle;
  }
  return (await import("nsfwjs/models/inception_v3")).InceptionV3Model as Bundle;
}

/** Loads one of the bundled models: topology, manifest and decoded shard bytes. */
export async function loadNsfwjsModel(name: NsfwjsModel): Promise<TfjsModelFiles> {
  const b = await bundle(name);
  const json = (await b.modelJson()).default as {
    modelTopology: unknown;
    weightsManifest: WeightsManifestGroup[];
  };
  const shards: Uint8Array[] = [];
  for (const load of b.weightBundles) {
    const base64 = (await load()).default;
    if (typeof base64 !== "string") throw new Error(`nsfwjs ${name}: a shard is not base64 text`);
    shards.push(new Uint8Array(Buffer.from(base64, "base64")));
  }
  const paths = json.weightsManifest.flatMap((g) => g.paths);
  if (paths.length !== shards.length) {
    throw new Error(
      `nsfwjs ${name}: manifest lists ${paths.length} shards, found ${shards.length}`,
    );
  }
  const weightData = new Uint8Array(shards.reduce((n, s) => n + s.length, 0));
  let off = 0;
  for (const s of shards) {
    weightData.set(s, off);
    off += s.length;
  }
  return {
    name,
    modelTopology: json.modelTopology,
    weightsManifest: json.weightsManifest,
    weightData,
  };
}

/** Input side of each bundled model. */
export const NSFWJS_SIZES: Record<NsfwjsModel, number> = { mobilenet_v2: 224, inception_v3: 299 };

/**
 * The preprocessing nsfwjs applies (x / 255, no mean or std), written into the ONNX metadata so
 * `duaf preprocess --image-encoder` feeds the model what it was trained on. Resizing is
 * duaf's PIL-style bilinear (nsfwjs resizes with tf.image.resizeBilinear, not antialiased).
 */
export const NSFWJS_PREPROCESS = {
  "duaf.image.mean": "0,0,0",
  "duaf.image.std": "1,1,1",
  "duaf.image.resample": "bilinear",
  "duaf.image.crop": "false",
};

/** Converts one bundled model to an ONNX image encoder (features before the 5-class head). */
export async function buildNsfwjsEncoder(
  name: NsfwjsModel,
  opts: { layers?: boolean } = {},
): Promise<KerasToOnnxResult> {
  const m = await loadNsfwjsModel(name);
  const graph = parseKerasTopology(m.modelTopology);
  return kerasToOnnx(
    graph,
    decodeWeights(m.weightsManifest, m.weightData),
    {
      // With `layers`: every inverted-residual block's output too (IISAN's layer states).
      layerOutputs: opts.layers ? blockOutputs(graph) : undefined,
      metadata: {
        ...NSFWJS_PREPROCESS,
        "source": `npm nsfwjs@${NSFWJS_VERSION} models/${name} (MIT)`,
      },
      docString: `nsfwjs@${NSFWJS_VERSION} ${name} (Keras, ImageNet-initialised, fine-tuned on a ` +
        "5-class task) converted by duaf (tools/build_image_encoder.ts): pooled features " +
        "before the classifier head; input RGB / 255, NCHW",
    },
  );
}
