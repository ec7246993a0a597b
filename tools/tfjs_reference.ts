/**
 * TF.js itself (tfjs-core + tfjs-layers on the pure-JS CPU backend) as the reference the Keras
 * -> ONNX converter is checked against: the same model.json topology and weight bytes loaded by
 * tf.loadLayersModel, cut at the layer the ONNX model returns.
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import * as tfl from "@tensorflow/tfjs-layers";
import type { WeightsManifestGroup } from "../core/features/tfjs_weights.ts";

let ready: Promise<boolean> | null = null;

/** A loaded Keras model cut at one layer: NHWC float32 in, that layer's output out. */
export interface TfjsFeatureModel {
  run(nhwc: Float32Array, dims: number[]): Promise<{ data: Float32Array; dims: number[] }>;
  dispose(): void;
}

export async function loadTfjsFeatureModel(
  modelTopology: unknown,
  manifest: readonly WeightsManifestGroup[],
  weightData: Uint8Array,
  outputLayer: string,
): Promise<TfjsFeatureModel> {
  // The CPU backend's first use prints a tip about tfjs-node when IS_NODE is set.
  tf.env().set("IS_NODE", false);
  ready ??= tf.setBackend("cpu");
  await ready;
  const specs = manifest.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[];
  const data = weightData.buffer.slice(
    weightData.byteOffset,
    weightData.byteOffset + weightData.byteLength,
  ) as ArrayBuffer;
  const full = await tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: modelTopology as object,
      weightSpecs: specs,
      weightData: data,
    }),
  );
  const cut = tfl.model({
    inputs: full.inputs,
    outputs: full.getLayer(outputLayer).output as tfl.SymbolicTensor,
  });
  return {
    async run(nhwc, dims) {
      const x = tf.tensor(nhwc, dims, "float32");
      const y = cut.predict(x) as tf.Tensor;
      const out = { data: (await y.data()) as Float32Array, dims: [...y.shape] };
      x.dispose();
      y.dispose();
      return out;
    },
    dispose() {
      full.dispose();
    },
  };
}

/** [n, c, h, w] -> [n, h, w, c]. */
export function nchwToNhwc(
  x: Float32Array,
  n: number,
  c: number,
  h: number,
  w: number,
): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < c; k++) {
      for (let p = 0; p < h * w; p++) out[(b * h * w + p) * c + k] = x[(b * c + k) * h * w + p];
    }
  }
  return out;
}
