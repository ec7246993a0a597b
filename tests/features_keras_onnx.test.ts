// Keras layers model -> ONNX (core/features/keras_to_onnx.ts): a small model using every
// supported layer type, with random weights stored the ways TF.js stores them (uint8, uint16
// and float16 quantized, plain float32), run by TF.js itself and by onnxruntime on our ONNX.
import assert from "node:assert/strict";
import { join } from "node:path";
import { readOnnxMetadata, readOnnxModel } from "../core/export/onnx_graph.ts";
import { decodeImage } from "../core/features/image_decode.ts";
import { preprocessImage } from "../core/features/image_preprocess.ts";
import {
  decodeWeights,
  KerasModelError,
  kerasToOnnx,
  parseKerasTopology,
} from "../core/features/keras_to_onnx.ts";
import { encodeImages } from "../core/features/onnx_image.ts";
import { createSession, ortTensor, runFloat } from "../core/features/ort.ts";
import { quantizeUint8, type WeightSpec } from "../core/features/tfjs_weights.ts";
import { Rng } from "../core/random.ts";
import { loadTfjsFeatureModel, nchwToNhwc } from "../tools/tfjs_reference.ts";

type Json = Record<string, unknown>;
const SIZE = 13;

/** One functional-model layer in the Keras 2 JSON that tf.loadLayersModel reads. */
function layer(className: string, name: string, inbound: string[], config: Json = {}): Json {
  return {
    name,
    class_name: className,
    config: { name, trainable: true, ...config },
    inbound_nodes: inbound.length === 0 ? [] : [inbound.map((i) => [i, 0, 0, {}])],
  };
}

const conv = (filters: number, k: number, s: number, padding: string, extra: Json = {}) => ({
  filters,
  kernel_size: [k, k],
  strides: [s, s],
  padding,
  data_format: "channels_last",
  dilation_rate: [1, 1],
  activation: "linear",
  use_bias: true,
  ...extra,
});
const bn = (extra: Json = {}) => ({
  axis: -1,
  momentum: 0.99,
  epsilon: 0.001,
  center: true,
  scale: true,
  ...extra,
});
const pool = (k: number[], s: number[], padding: string) => ({
  pool_size: k,
  strides: s,
  padding,
  data_format: "channels_last",
});

/** Every supported layer type at least once; odd sizes so "same" padding is asymmetric. */
const LAYERS: Json[] = [
  layer("InputLayer", "input_1", [], {
    batch_input_shape: [null, SIZE, SIZE, 3],
    dtype: "float32",
  }),
  layer("ZeroPadding2D", "pad", ["input_1"], { padding: [[1, 2], [0, 1]] }), // 16 x 14
  layer("Conv2D", "conv1", ["pad"], conv(8, 3, 2, "valid", { use_bias: false })), // 7 x 6 x 8
  layer("BatchNormalization", "bn1", ["conv1"], bn()),
  layer("ReLU", "relu1", ["bn1"], { max_value: 6, negative_slope: 0, threshold: 0 }),
  layer("DepthwiseConv2D", "dw", ["relu1"], {
    kernel_size: [3, 3],
    strides: [2, 2],
    padding: "same",
    depth_multiplier: 2,
    data_format: "channels_last",
    dilation_rate: [1, 1],
    activation: "linear",
    use_bias: true,
  }), // 4 x 3 x 16
  layer("BatchNormalization", "bn2", ["dw"], bn({ scale: false })),
  layer("Activation", "act2", ["bn2"], { activation: "relu" }),
  layer("Conv2D", "pw", ["act2"], conv(16, 1, 1, "same", { activation: "relu" })),
  layer("Add", "add", ["act2", "pw"]),
  layer("Conv2D", "c3", ["add"], conv(8, 3, 1, "same", { dilation_rate: [2, 2] })), // 4 x 3 x 8
  layer("BatchNormalization", "bn3", ["c3"], bn()), // c3 has two readers: not folded
  layer("MaxPooling2D", "mp", ["c3"], pool([2, 2], [2, 2], "same")), // 2 x 2 x 8
  layer("AveragePooling2D", "ap", ["bn3"], pool([3, 3], [1, 1], "same")), // 4 x 3 x 8
  layer("AveragePooling2D", "ap2", ["ap"], pool([2, 2], [2, 1], "valid")), // 2 x 2 x 8
  layer("Concatenate", "cat", ["mp", "ap2"], { axis: -1 }), // 2 x 2 x 16
  layer("LeakyReLU", "lrelu", ["cat"], { alpha: 0.1 }),
  layer("ZeroPadding2D", "pad2", ["lrelu"], { padding: [[1, 1], [1, 1]] }), // 4 x 4 x 16
  layer("MaxPooling2D", "mp2", ["pad2"], pool([2, 2], [2, 2], "valid")), // 2 x 2 x 16
  layer("ZeroPadding2D", "pad3", ["lrelu"], { padding: [[0, 1], [1, 0]] }), // 3 x 3 x 16
  layer("AveragePooling2D", "ap3", ["pad3"], pool([2, 2], [2, 2], "same")), // 2 x 2 x 16
  layer("Add", "add2", ["mp2", "ap3"]),
  layer("GlobalAveragePooling2D", "gap", ["add2"], { data_format: "channels_last" }),
  layer("Dense", "dense_a", ["gap"], { units: 12, activation: "linear", use_bias: true }),
  layer("BatchNormalization", "bn_a", ["dense_a"], bn()),
  layer("Flatten", "flat", ["mp2"], { data_format: "channels_last" }), // 64, H, W, C order
  layer("Concatenate", "features", ["bn_a", "flat"], { axis: -1 }), // 76
  layer("Dropout", "drop", ["features"], { rate: 0.5 }),
  layer("Dense", "dense_b", ["drop"], { units: 10, activation: "tanh", use_bias: true }),
  layer("Dense", "logits", ["dense_b"], { units: 5, activation: "linear", use_bias: true }),
  layer("Activation", "probs", ["logits"], { activation: "softmax" }),
];

function topology(layers: Json[], output: string): Json {
  return {
    keras_version: "2.2.4",
    backend: "tensorflow",
    model_config: {
      class_name: "Model",
      config: {
        name: "tiny",
        layers,
        input_layers: [["input_1", 0, 0]],
        output_layers: [[output, 0, 0]],
      },
    },
  };
}

/** Weight shapes per layer, in the order Keras lists them. */
const WEIGHTS: [string, number[]][] = [
  ["conv1/kernel", [3, 3, 3, 8]],
  ["bn1/gamma", [8]],
  ["bn1/beta", [8]],
  ["bn1/moving_mean", [8]],
  ["bn1/moving_variance", [8]],
  ["dw/depthwise_kernel", [3, 3, 8, 2]],
  ["dw/bias", [16]],
  ["bn2/beta", [16]],
  ["bn2/moving_mean", [16]],
  ["bn2/moving_variance", [16]],
  ["pw/kernel", [1, 1, 16, 16]],
  ["pw/bias", [16]],
  ["c3/kernel", [3, 3, 16, 8]],
  ["c3/bias", [8]],
  ["bn3/gamma", [8]],
  ["bn3/beta", [8]],
  ["bn3/moving_mean", [8]],
  ["bn3/moving_variance", [8]],
  ["dense_a/kernel", [16, 12]],
  ["dense_a/bias", [12]],
  ["bn_a/gamma", [12]],
  ["bn_a/beta", [12]],
  ["bn_a/moving_mean", [12]],
  ["bn_a/moving_variance", [12]],
  ["dense_b/kernel", [76, 10]],
  ["dense_b/bias", [10]],
  ["logits/kernel", [10, 5]],
  ["logits/bias", [5]],
];

function toHalf(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return sign; // tiny values flush to zero (none here)
  return sign | (exp << 10) | ((u >>> 13) & 0x3ff);
}

/** Random weights stored as uint8 (kernels), uint16 (gamma), float16 (beta) or float32. */
function makeWeights(seed: number): { specs: WeightSpec[]; data: Uint8Array } {
  const rng = new Rng(seed);
  const specs: WeightSpec[] = [];
  const parts: Uint8Array[] = [];
  for (const [name, shape] of WEIGHTS) {
    const n = shape.reduce((a, b) => a * b, 1);
    const key = name.split("/")[1];
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      v[i] = key === "moving_variance"
        ? 0.2 + rng.uniform()
        : key === "gamma"
        ? 0.5 + rng.uniform()
        : rng.normal() * (key.endsWith("kernel") ? 0.5 : 0.2);
    }
    if (key.endsWith("kernel") || key === "moving_variance") {
      const q = quantizeUint8(v);
      specs.push({
        name,
        shape,
        dtype: "float32",
        quantization: { dtype: "uint8", scale: q.scale, min: q.min },
      });
      parts.push(q.bytes);
    } else if (key === "gamma") {
      const min = Math.min(...v);
      const scale = (Math.max(...v) - min) / 65535;
      const b = new Uint8Array(2 * n);
      const dv = new DataView(b.buffer);
      v.forEach((x, i) => dv.setUint16(2 * i, Math.round((x - min) / scale), true));
      specs.push({ name, shape, dtype: "float32", quantization: { dtype: "uint16", scale, min } });
      parts.push(b);
    } else if (key === "beta") {
      const b = new Uint8Array(2 * n);
      const dv = new DataView(b.buffer);
      v.forEach((x, i) => dv.setUint16(2 * i, toHalf(x), true));
      specs.push({ name, shape, dtype: "float32", quantization: { dtype: "float16" } });
      parts.push(b);
    } else {
      specs.push({ name, shape, dtype: "float32" });
      parts.push(new Uint8Array(v.buffer));
    }
  }
  const data = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    data.set(p, off);
    off += p.length;
  }
  return { specs, data };
}

function randomPixels(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * 3 * SIZE * SIZE }, () => rng.uniform());
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test("keras -> onnx: every supported layer agrees with TF.js within 1e-4", async () => {
  const { specs, data } = makeWeights(7);
  const topo = topology(LAYERS, "probs");
  const graph = parseKerasTopology(topo);
  const weights = decodeWeights([{ paths: ["w"], weights: specs }], data);
  const x = randomPixels(3, 11);
  const xNhwc = nchwToNhwc(x, 3, 3, SIZE, SIZE);
  for (const outputLayer of [undefined, "probs", "bn3", "pad2", "mp2", "ap3"]) {
    const r = kerasToOnnx(graph, weights, { outputLayer });
    const want = outputLayer ?? "features";
    assert.equal(r.outputLayer, want);
    const ref = await loadTfjsFeatureModel(topo, [{ paths: ["w"], weights: specs }], data, want);
    let expected = await ref.run(xNhwc, [3, SIZE, SIZE, 3]);
    ref.dispose();
    if (expected.dims.length === 4) {
      // A spatial output comes out global-average-pooled.
      const [n, h, w, c] = expected.dims;
      const pooled = new Float32Array(n * c);
      for (let b = 0; b < n; b++) {
        for (let p = 0; p < h * w; p++) {
          for (let k = 0; k < c; k++) pooled[b * c + k] += expected.data[(b * h * w + p) * c + k];
        }
      }
      expected = { data: pooled.map((v) => v / (h * w)), dims: [n, c] };
    }
    const session = await createSession(r.bytes);
    const got = (await runFloat(session, {
      pixel_values: ortTensor("float32", x, [3, 3, SIZE, SIZE]),
    })).get("image_embeds")!;
    await session.release();
    assert.deepEqual(got.dims, expected.dims, want);
    assert.deepEqual(r.outputShape, expected.dims.slice(1));
    const d = maxAbsDiff(got.data, expected.data);
    assert.ok(d <= 1e-4, `${want}: max abs diff ${d}`);
    assert.ok(expected.data.some((v) => Math.abs(v) > 0.05), `${want}: output is not all ~0`);
  }
});

Deno.test("keras -> onnx: batch norms fold into conv/dense, the padding before a conv into its pads", () => {
  const { specs, data } = makeWeights(7);
  const graph = parseKerasTopology(topology(LAYERS, "probs"));
  const weights = decodeWeights([{ paths: ["w"], weights: specs }], data);
  const model = readOnnxModel(kerasToOnnx(graph, weights).bytes);
  const ops = model.nodes.map((n) => n.opType);
  const count = (op: string) => ops.filter((o) => o === op).length;
  assert.equal(count("Conv"), 4);
  assert.equal(count("Pad"), 1, "zero padding goes into conv and max-pool pads");
  assert.equal(count("Gemm"), 1, "the head is cut off");
  // bn1, bn2 and bn_a fold; bn3 (its conv has a second reader) is a Mul + Add; the max pool over
  // zero padding gets its zeros back (Max).
  assert.equal(count("Mul"), 1);
  assert.equal(count("Max"), 1);
  assert.ok(model.initializers.has("bn3/scale") && !model.initializers.has("bn1/scale"));
  const c1 = model.nodes.find((n) => n.opType === "Conv")!;
  assert.deepEqual(c1.attributes.pads, [1, 0, 2, 1]);
  assert.equal(model.inputs[0].name, "pixel_values");
  assert.deepEqual(model.inputs[0].shape, ["batch", 3, SIZE, SIZE]);
  assert.deepEqual(model.outputs[0].shape, ["batch", 76]);
  // Fresh conversion, same bytes.
  assert.deepEqual(kerasToOnnx(graph, weights).bytes, kerasToOnnx(graph, weights).bytes);
});

Deno.test("keras -> onnx: an unsupported layer is one line naming it", () => {
  const { specs, data } = makeWeights(7);
  const weights = decodeWeights([{ paths: ["w"], weights: specs }], data);
  // An LSTM in place of the LeakyReLU, read by the two paddings after it.
  const layers = JSON.parse(
    JSON.stringify(LAYERS).replaceAll('"lrelu"', '"lstm_1"').replace('"LeakyReLU"', '"LSTM"'),
  );
  const err = (() => {
    try {
      kerasToOnnx(parseKerasTopology(topology(layers, "probs")), weights);
    } catch (e) {
      return e as Error;
    }
    throw new Error("no error");
  })();
  assert.ok(err instanceof KerasModelError);
  assert.equal(err.message, 'layer "lstm_1": unsupported layer type LSTM');
  const gelu = LAYERS.map((l) =>
    l.name === "pw"
      ? layer("Conv2D", "pw", ["act2"], conv(16, 1, 1, "same", { activation: "gelu" }))
      : l
  );
  assert.throws(
    () => kerasToOnnx(parseKerasTopology(topology(gelu, "probs")), weights),
    { message: 'layer "pw" (Conv2D): unsupported activation "gelu"' },
  );
  weights.delete("c3/bias");
  assert.throws(
    () => kerasToOnnx(parseKerasTopology(topology(LAYERS, "probs")), weights),
    { message: 'layer "c3" (Conv2D): weight "c3/bias" is missing' },
  );
  assert.throws(
    () => decodeWeights([{ paths: ["w"], weights: specs }], data.subarray(0, 100)),
    /runs past the end/,
  );
});

Deno.test("keras -> onnx: preprocess follows the preprocessing the model's metadata declares", async () => {
  const { specs, data } = makeWeights(7);
  const graph = parseKerasTopology(topology(LAYERS, "probs"));
  const weights = decodeWeights([{ paths: ["w"], weights: specs }], data);
  const bytes = kerasToOnnx(graph, weights, {
    metadata: {
      "duaf.image.mean": "0,0,0",
      "duaf.image.std": "1,1,1",
      "duaf.image.resample": "bicubic",
      "duaf.image.crop": "true",
    },
  }).bytes;
  assert.equal(readOnnxMetadata(bytes)["duaf.image.std"], "1,1,1");
  assert.equal(readOnnxMetadata(bytes)["keras.output_layer"], "features");
  const path = await Deno.makeTempFile({ suffix: ".onnx" });
  try {
    await Deno.writeFile(path, bytes);
    const image = join(
      new URL("../fixtures/encoders/images", import.meta.url).pathname,
      "gradient_40x24.png",
    );
    const got = await encodeImages(path, [image], { batchSize: 1, strict: true });
    const session = await createSession(bytes);
    const want = async (o: Parameters<typeof preprocessImage>[1]) => {
      const px = preprocessImage(decodeImage(await Deno.readFile(image)), o);
      return (await runFloat(session, {
        pixel_values: ortTensor("float32", px, [1, 3, SIZE, SIZE]),
      }))
        .get("image_embeds")!.data;
    };
    const declared = {
      size: SIZE,
      mean: [0, 0, 0],
      std: [1, 1, 1],
      resample: "bicubic",
      crop: true,
    } as const;
    assert.ok(maxAbsDiff(got.data, await want(declared)) < 1e-6);
    // ViT's defaults would give something else, so the metadata was used.
    const vit = {
      size: SIZE,
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
      resample: "bilinear",
      crop: false,
    } as const;
    assert.ok(maxAbsDiff(got.data, await want(vit)) > 1e-3);
    // Explicit options still win.
    const explicit = await encodeImages(path, [image], {
      ...vit,
      mean: [...vit.mean],
      std: [...vit.std],
      batchSize: 1,
      strict: true,
    });
    assert.ok(maxAbsDiff(explicit.data, await want(vit)) < 1e-6);
    await session.release();
    // Bad metadata is a one-line error naming the key.
    const bad = kerasToOnnx(graph, weights, { metadata: { "duaf.image.std": "1,0,1" } }).bytes;
    await Deno.writeFile(path, bad);
    await assert.rejects(encodeImages(path, [image], { batchSize: 1, strict: true }), {
      message: `${path}: metadata duaf.image.std: "1,0,1" is not three positive numbers`,
    });
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("keras -> onnx: intermediate layer outputs (layer_k) match TF.js's activations, pooled", async () => {
  const { specs, data } = makeWeights(7);
  const topo = topology(LAYERS, "probs");
  const graph = parseKerasTopology(topo);
  const weights = decodeWeights([{ paths: ["w"], weights: specs }], data);
  const x = randomPixels(2, 5);
  const xNhwc = nchwToNhwc(x, 2, 3, SIZE, SIZE);
  // conv1 has a batch norm after it: read as an output, it must keep its own (unfolded) value.
  const layerOutputs = ["conv1", "bn1", "act2", "add", "cat", "add2"];
  const plain = kerasToOnnx(graph, weights);
  const r = kerasToOnnx(graph, weights, { layerOutputs });
  assert.deepEqual(r.layerShapes, [[8], [8], [16], [16], [16], [16]]);
  assert.equal(readOnnxMetadata(r.bytes)["duaf.image.layers"], layerOutputs.join(","));
  const session = await createSession(r.bytes);
  const outs = await runFloat(session, {
    pixel_values: ortTensor("float32", x, [2, 3, SIZE, SIZE]),
  });
  await session.release();
  const plainSession = await createSession(plain.bytes);
  const plainOut = (await runFloat(plainSession, {
    pixel_values: ortTensor("float32", x, [2, 3, SIZE, SIZE]),
  })).get("image_embeds")!;
  await plainSession.release();
  assert.ok(maxAbsDiff(outs.get("image_embeds")!.data, plainOut.data) <= 1e-5);
  for (const [k, name] of layerOutputs.entries()) {
    const ref = await loadTfjsFeatureModel(topo, [{ paths: ["w"], weights: specs }], data, name);
    const e = await ref.run(xNhwc, [2, SIZE, SIZE, 3]);
    ref.dispose();
    const [n, h, w, c] = e.dims;
    const pooled = new Float32Array(n * c);
    for (let b = 0; b < n; b++) {
      for (let p = 0; p < h * w; p++) {
        for (let j = 0; j < c; j++) pooled[b * c + j] += e.data[(b * h * w + p) * c + j] / (h * w);
      }
    }
    const got = outs.get(`layer_${k}`)!;
    assert.deepEqual(got.dims, [n, c], name);
    const d = maxAbsDiff(got.data, pooled);
    assert.ok(d <= 1e-4, `${name}: max abs diff ${d}`);
    assert.ok(pooled.some((v) => Math.abs(v) > 0.01), `${name}: output is not all ~0`);
  }
  assert.throws(
    () => kerasToOnnx(graph, weights, { outputLayer: "bn1", layerOutputs: ["cat"] }),
    /not on the way/,
  );
});
