/**
 * Keras layers model (TF.js model.json topology + weights) -> ONNX image encoder, written with
 * the project's own ONNX writer (core/export/onnx_graph.ts).
 *
 * Layout: Keras models here are channels_last (NHWC); the ONNX graph is NCHW throughout, so it
 * takes the `pixel_values` [batch, 3, H, W] tensor `duaf preprocess` feeds image encoders. Conv
 * kernels [kh, kw, in, out] become OIHW, depthwise kernels [kh, kw, in, mult] grouped convs
 * [in * mult, 1, kh, kw], and channel axes move from 3 to 1.
 *
 * Folding: a BatchNormalization right after a Conv2D / DepthwiseConv2D / Dense (linear activation,
 * no other reader) is folded into its weights and bias; a ZeroPadding2D in front of a conv or a
 * max pool becomes its pads. Both are exact up to float32 rounding. TF's "same" padding puts the odd pixel at
 * the end, which explicit ONNX pads reproduce; "same" average pooling divides by the pixels inside
 * the image, as ONNX AveragePool's default count_include_pad = 0 does.
 *
 * Output: the named layer's output, by default the features in front of the classifier head
 * (keras_model.ts featureLayer), global-average-pooled when still spatial.
 */
import { GraphWriter } from "../export/graph_writer.ts";
import { attr } from "../export/onnx_graph.ts";
import { featureLayer, type KerasGraph, type KerasLayer, KerasModelError } from "./keras_model.ts";
import type { NamedWeight } from "./tfjs_weights.ts";

export interface KerasToOnnxOptions {
  /** Layer whose output the ONNX model returns; default: the features before the head. */
  outputLayer?: string;
  /** Graph input name (default "pixel_values"). */
  inputName?: string;
  /** Graph output name (default "image_embeds"). */
  outputName?: string;
  /** Fold BatchNormalization into the layer before it where possible (default true). */
  foldBatchNorm?: boolean;
  /**
   * Intermediate layers also returned, global-average-pooled, as outputs layer_0, layer_1, ...
   * (IISAN's cached layer states; blockOutputs lists a model's block outputs).
   */
  layerOutputs?: string[];
  /** Written to ModelProto.metadata_props (e.g. the preprocessing, see onnx_image.ts). */
  metadata?: Record<string, string>;
  docString?: string;
}

export interface KerasToOnnxResult {
  bytes: Uint8Array;
  outputLayer: string;
  /** Input height, width, channels. */
  inputShape: [number, number, number];
  /** Output shape after the batch axis. */
  outputShape: number[];
  /** Keras layers converted (those the output depends on). */
  layers: number;
  /** Output shape of each layer_k after the batch axis. */
  layerShapes: number[][];
}

/**
 * The block outputs of a Keras MobileNetV2-style model, in graph order, then the feature layer:
 * each inverted-residual block ends in "<block>_add" when it has a residual connection and in
 * "<block>_project_BN" otherwise (keras.applications naming). Empty when no layer is so named.
 */
export function blockOutputs(graph: KerasGraph, featureLayerName = featureLayer(graph)): string[] {
  const names = new Set(graph.layers.map((l) => l.name));
  const out: string[] = [];
  for (const l of graph.layers) {
    const m = /^(.*)_(add|project_BN)$/.exec(l.name);
    if (!m) continue;
    if (m[2] === "project_BN" && names.has(`${m[1]}_add`)) continue;
    out.push(l.name);
  }
  return out.length === 0 ? out : [...out, featureLayerName];
}

/** A Keras tensor in the ONNX graph; `shape` is Keras's, batch left out ([H, W, C] or [n]). */
interface Value {
  name: string;
  shape: number[];
  /** Zero padding still to apply [top, bottom, left, right] (kept for a conv to absorb). */
  pads?: [number, number, number, number];
  padded?: string;
}

type Json = Record<string, unknown>;

const IGNORED = new Set([
  "Dropout",
  "SpatialDropout2D",
  "AlphaDropout",
  "GaussianDropout",
  "GaussianNoise",
  "ActivityRegularization",
]);

function pair(v: unknown, name: string, layer: KerasLayer): [number, number] {
  if (typeof v === "number") return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === "number")) {
    return [v[0], v[1]];
  }
  throw unsupported(layer, `${name} ${JSON.stringify(v)}`);
}

function unsupported(layer: KerasLayer, what: string): KerasModelError {
  return new KerasModelError(`layer "${layer.name}" (${layer.className}): unsupported ${what}`);
}

/** TF's output size and [before, after] pads for one spatial axis. */
function axisPads(
  size: number,
  k: number,
  s: number,
  d: number,
  padding: string,
): [number, number, number] {
  const eff = (k - 1) * d + 1;
  if (padding === "valid") return [0, 0, Math.floor((size - eff) / s) + 1];
  const out = Math.ceil(size / s);
  const total = Math.max((out - 1) * s + eff - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before, out];
}

class Converter {
  readonly w: GraphWriter;
  readonly values = new Map<string, Value>();
  readonly byName: Map<string, KerasLayer>;
  /** Producer layer -> the BatchNormalization folded into it. */
  readonly foldInto = new Map<string, KerasLayer>();
  readonly folded = new Set<string>();

  constructor(
    readonly graph: KerasGraph,
    readonly weights: Map<string, NamedWeight>,
  ) {
    this.w = new GraphWriter(graph.output);
    this.byName = new Map(graph.layers.map((l) => [l.name, l]));
  }

  weight(layer: KerasLayer, key: string, shape?: number[]): NamedWeight {
    let wt = this.weights.get(`${layer.name}/${key}`);
    if (!wt) {
      for (const [k, v] of this.weights) if (k.endsWith(`/${layer.name}/${key}`)) wt = v;
    }
    if (!wt) {
      throw new KerasModelError(
        `layer "${layer.name}" (${layer.className}): weight "${layer.name}/${key}" is missing`,
      );
    }
    if (shape && (wt.shape.length !== shape.length || wt.shape.some((d, i) => d !== shape[i]))) {
      throw new KerasModelError(
        `layer "${layer.name}" (${layer.className}): weight ${key} has shape [${wt.shape}], ` +
          `expected [${shape}]`,
      );
    }
    return wt;
  }

  /** The ONNX value of `v` with any pending zero padding applied. */
  plain(v: Value): string {
    if (!v.pads) return v.name;
    if (!v.padded) {
      const [t, b, l, r] = v.pads;
      v.padded = this.w.op("Pad", [v.name, this.w.i64([0, 0, t, l, 0, 0, b, r])]);
    }
    return v.padded;
  }

  input(layer: KerasLayer, i = 0): Value {
    return this.values.get(layer.inbound[i])!;
  }

  spatial(layer: KerasLayer, v: Value): [number, number, number] {
    if (v.shape.length !== 3) {
      throw unsupported(layer, `input of rank ${v.shape.length + 1} (needs [batch, H, W, C])`);
    }
    const df = layer.config.data_format;
    if (df !== undefined && df !== null && df !== "channels_last") {
      throw unsupported(layer, `data_format ${df}`);
    }
    return v.shape as [number, number, number];
  }

  /** Fused `activation` of Conv2D/Dense, or an Activation layer's. */
  activation(layer: KerasLayer, x: string, name: unknown): string {
    const w = this.w;
    switch (name ?? "linear") {
      case "linear":
        return x;
      case "relu":
        return w.op("Relu", [x]);
      case "relu6":
        return w.op("Clip", [x, w.f32([0], []), w.f32([6], [])]);
      case "sigmoid":
        return w.op("Sigmoid", [x]);
      case "tanh":
        return w.op("Tanh", [x]);
      case "softmax":
        // Keras's last axis is the channel axis: ONNX axis 1 for [N, C] and [N, C, H, W] alike.
        return w.op("Softmax", [x], { axis: attr.int(1) });
      case "elu":
        return w.op("Elu", [x], { alpha: attr.float(1) });
      case "selu":
        return w.op("Selu", [x], {
          alpha: attr.float(1.6732632423543772),
          gamma: attr.float(1.0507009873554805),
        });
      case "softplus":
        return w.op("Softplus", [x]);
      case "softsign":
        return w.op("Softsign", [x]);
      case "hard_sigmoid":
        return w.op("HardSigmoid", [x], { alpha: attr.float(0.2), beta: attr.float(0.5) });
      case "swish":
      case "silu":
        return w.op("Mul", [x, w.op("Sigmoid", [x])]);
      default:
        throw unsupported(layer, `activation "${name}"`);
    }
  }

  /** BatchNormalization's per-channel scale and shift (y = x * s + t), in float64. */
  bnAffine(bn: KerasLayer, c: number): { s: Float64Array; t: Float64Array } {
    const cfg = bn.config;
    const eps = (cfg.epsilon as number | undefined) ?? 1e-3;
    const gamma = cfg.scale === false ? null : this.weight(bn, "gamma", [c]).data;
    const beta = cfg.center === false ? null : this.weight(bn, "beta", [c]).data;
    const mean = this.weight(bn, "moving_mean", [c]).data;
    const variance = this.weight(bn, "moving_variance", [c]).data;
    const s = new Float64Array(c);
    const t = new Float64Array(c);
    for (let j = 0; j < c; j++) {
      s[j] = (gamma ? gamma[j] : 1) / Math.sqrt(variance[j] + eps);
      t[j] = (beta ? beta[j] : 0) - mean[j] * s[j];
    }
    return { s, t };
  }

  /** Bias after a folded BatchNormalization (or the plain bias). */
  foldedBias(layer: KerasLayer, bias: Float32Array, cout: number, wData: Float32Array): string {
    const bn = this.foldInto.get(layer.name);
    if (bn) {
      const { s, t } = this.bnAffine(bn, cout);
      const per = wData.length / cout;
      const outer = layer.className === "Dense";
      for (let j = 0; j < cout; j++) bias[j] = bias[j] * s[j] + t[j];
      for (let i = 0; i < wData.length; i++) {
        // Dense weights are [in, out] (column j = output j); conv weights [out, ...].
        const j = outer ? i % cout : Math.floor(i / per);
        wData[i] = wData[i] * s[j];
      }
    }
    return this.w.table(`${layer.name}/bias`, [cout], bias);
  }

  conv(layer: KerasLayer): Value {
    const x = this.input(layer);
    const cfg = layer.config;
    const [H, W, C] = this.spatial(layer, x);
    const depthwise = layer.className === "DepthwiseConv2D";
    const [kh, kw] = pair(cfg.kernel_size, "kernel_size", layer);
    const [sh, sw] = pair(cfg.strides ?? 1, "strides", layer);
    const [dh, dw] = pair(cfg.dilation_rate ?? 1, "dilation_rate", layer);
    const padding = String(cfg.padding ?? "valid");
    if (padding !== "valid" && padding !== "same") throw unsupported(layer, `padding ${padding}`);
    if ((sh > 1 || sw > 1) && (dh > 1 || dw > 1)) throw unsupported(layer, "strides with dilation");
    const groups = depthwise ? C : Number(cfg.groups ?? 1);
    const mult = depthwise ? Number(cfg.depth_multiplier ?? 1) : 0;
    const cout = depthwise ? C * mult : Number(cfg.filters);
    const cinG = C / groups;
    if (!Number.isInteger(cinG)) throw unsupported(layer, `groups ${groups} for ${C} channels`);

    let wData: Float32Array;
    if (depthwise) {
      const k = this.weight(layer, "depthwise_kernel", [kh, kw, C, mult]).data;
      wData = new Float32Array(cout * kh * kw);
      for (let y = 0; y < kh; y++) {
        for (let xx = 0; xx < kw; xx++) {
          for (let c = 0; c < C; c++) {
            for (let m = 0; m < mult; m++) {
              wData[((c * mult + m) * kh + y) * kw + xx] = k[((y * kw + xx) * C + c) * mult + m];
            }
          }
        }
      }
    } else {
      const k = this.weight(layer, "kernel", [kh, kw, cinG, cout]).data;
      wData = new Float32Array(cout * cinG * kh * kw);
      for (let y = 0; y < kh; y++) {
        for (let xx = 0; xx < kw; xx++) {
          for (let i = 0; i < cinG; i++) {
            for (let o = 0; o < cout; o++) {
              wData[((o * cinG + i) * kh + y) * kw + xx] = k[((y * kw + xx) * cinG + i) * cout + o];
            }
          }
        }
      }
    }
    const bias = cfg.use_bias === false
      ? new Float32Array(cout)
      : Float32Array.from(this.weight(layer, "bias", [cout]).data);
    const bName = this.foldedBias(layer, bias, cout, wData);
    const wName = this.w.table(`${layer.name}/kernel`, [cout, cinG, kh, kw], wData);

    const [pt, pb, pl, pr] = x.pads ?? [0, 0, 0, 0];
    const [t, b, outH] = axisPads(H, kh, sh, dh, padding);
    const [l, r, outW] = axisPads(W, kw, sw, dw, padding);
    if (!(outH > 0 && outW > 0)) throw unsupported(layer, `input ${H}x${W} (output is empty)`);
    const y = this.w.op("Conv", [x.name, wName, bName], {
      kernel_shape: attr.ints([kh, kw]),
      strides: attr.ints([sh, sw]),
      dilations: attr.ints([dh, dw]),
      pads: attr.ints([t + pt, l + pl, b + pb, r + pr]),
      group: attr.int(groups),
    }, layer.name);
    return { name: this.activation(layer, y, cfg.activation), shape: [outH, outW, cout] };
  }

  dense(layer: KerasLayer): Value {
    const x = this.input(layer);
    if (x.shape.length !== 1) {
      throw unsupported(layer, `input of rank ${x.shape.length + 1} (needs [batch, features])`);
    }
    const n = x.shape[0];
    const units = Number(layer.config.units);
    const wData = Float32Array.from(this.weight(layer, "kernel", [n, units]).data);
    const bias = layer.config.use_bias === false
      ? new Float32Array(units)
      : Float32Array.from(this.weight(layer, "bias", [units]).data);
    const bName = this.foldedBias(layer, bias, units, wData);
    const wName = this.w.table(`${layer.name}/kernel`, [n, units], wData);
    const y = this.w.op("Gemm", [x.name, wName, bName], {}, layer.name);
    return { name: this.activation(layer, y, layer.config.activation), shape: [units] };
  }

  batchNorm(layer: KerasLayer): Value {
    const x = this.input(layer);
    const src = layer.inbound[0];
    if (this.folded.has(layer.name)) return this.values.get(src)!;
    const rank = x.shape.length + 1;
    let axis = Number(layer.config.axis ?? -1);
    if (Array.isArray(layer.config.axis)) axis = Number(layer.config.axis[0]);
    if (axis < 0) axis += rank;
    if (axis !== rank - 1) throw unsupported(layer, `axis ${layer.config.axis}`);
    const c = x.shape[x.shape.length - 1];
    const { s, t } = this.bnAffine(layer, c);
    const bcast = rank === 4 ? [c, 1, 1] : [c];
    const scaled = this.w.op("Mul", [
      this.plain(x),
      this.w.table(`${layer.name}/scale`, bcast, Float32Array.from(s)),
    ]);
    const y = this.w.op(
      "Add",
      [
        scaled,
        this.w.table(`${layer.name}/shift`, bcast, Float32Array.from(t)),
      ],
      {},
      layer.name,
    );
    return { name: y, shape: x.shape };
  }

  pool(layer: KerasLayer): Value {
    const x = this.input(layer);
    const [H, W, C] = this.spatial(layer, x);
    const cfg = layer.config;
    const [kh, kw] = pair(cfg.pool_size ?? 2, "pool_size", layer);
    const [sh, sw] = pair(cfg.strides ?? [kh, kw], "strides", layer);
    const padding = String(cfg.padding ?? "valid");
    if (padding !== "valid" && padding !== "same") throw unsupported(layer, `padding ${padding}`);
    const [t, b, outH] = axisPads(H, kh, sh, 1, padding);
    const [l, r, outW] = axisPads(W, kw, sw, 1, padding);
    if (layer.className === "AveragePooling2D") {
      const y = this.w.op("AveragePool", [this.plain(x)], {
        kernel_shape: attr.ints([kh, kw]),
        strides: attr.ints([sh, sw]),
        pads: attr.ints([t, l, b, r]),
      }, layer.name);
      return { name: y, shape: [outH, outW, C] };
    }
    // Zero padding in front of a max pool is not a Pad node: onnxruntime's PadFusion moves a
    // zero Pad into the MaxPool's pads, where it stops counting as zeros (seen in 1.30). The pool
    // pads take it instead, and a per-position mask puts the zeros back: max(y, 0) where the
    // window holds padding zeros, max(y, -FLT_MAX) elsewhere.
    const [zt, zb, zl, zr] = x.pads ?? [0, 0, 0, 0];
    const pads = [t + zt, l + zl, b + zb, r + zr];
    if (pads[0] >= kh || pads[2] >= kh || pads[1] >= kw || pads[3] >= kw) {
      throw unsupported(layer, "zero padding in front as wide as the pool window");
    }
    let y = this.w.op("MaxPool", [x.name], {
      kernel_shape: attr.ints([kh, kw]),
      strides: attr.ints([sh, sw]),
      pads: attr.ints(pads),
    }, layer.name);
    if (x.pads) {
      const mask = new Float32Array(outH * outW);
      for (let oy = 0; oy < outH; oy++) {
        for (let ox = 0; ox < outW; ox++) {
          let zeros = false;
          for (let dy = 0; dy < kh; dy++) {
            const yy = oy * sh - t + dy;
            for (let dx = 0; dx < kw; dx++) {
              const xx = ox * sw - l + dx;
              if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue; // "same" padding: not zeros
              if (yy < zt || yy >= H - zb || xx < zl || xx >= W - zr) zeros = true;
            }
          }
          mask[oy * outW + ox] = zeros ? 0 : -3.4028234663852886e38;
        }
      }
      const m = this.w.table(`${layer.name}/zero_padding_mask`, [1, 1, outH, outW], mask);
      y = this.w.op("Max", [y, m]);
    }
    return { name: y, shape: [outH, outW, C] };
  }

  globalPool(layer: KerasLayer): Value {
    const x = this.input(layer);
    const [, , C] = this.spatial(layer, x);
    const op = layer.className === "GlobalMaxPooling2D" ? "GlobalMaxPool" : "GlobalAveragePool";
    const y = this.w.op(op, [this.plain(x)], {}, layer.name);
    if (layer.config.keepdims === true) return { name: y, shape: [1, 1, C] };
    return { name: this.w.op("Flatten", [y], { axis: attr.int(1) }), shape: [C] };
  }

  flatten(layer: KerasLayer): Value {
    const x = this.input(layer);
    if (x.shape.length === 1) return x;
    const n = x.shape.reduce((a, b) => a * b, 1);
    let v = this.plain(x);
    // Keras flattens NHWC in H, W, C order; in NCHW that needs a transpose unless H = W = 1.
    if (x.shape.length === 3 && (x.shape[0] !== 1 || x.shape[1] !== 1)) {
      v = this.w.op("Transpose", [v], { perm: attr.ints([0, 2, 3, 1]) });
    }
    return { name: this.w.op("Flatten", [v], { axis: attr.int(1) }, layer.name), shape: [n] };
  }

  merge(layer: KerasLayer): Value {
    const xs = layer.inbound.map((_, i) => this.input(layer, i));
    const shape = xs[0].shape;
    if (xs.some((x) => x.shape.join() !== shape.join())) {
      throw unsupported(layer, `inputs of different shapes (${xs.map((x) => `[${x.shape}]`)})`);
    }
    const ins = xs.map((x) => this.plain(x));
    const op = {
      Add: "Sum",
      Average: "Mean",
      Maximum: "Max",
      Minimum: "Min",
    }[layer.className];
    if (op) return { name: this.w.op(op, ins, {}, layer.name), shape };
    if (layer.className === "Subtract") {
      if (ins.length !== 2) throw unsupported(layer, `${ins.length} inputs`);
      return { name: this.w.op("Sub", ins, {}, layer.name), shape };
    }
    // Multiply
    let y = ins[0];
    for (let i = 1; i < ins.length; i++) y = this.w.op("Mul", [y, ins[i]], {}, layer.name);
    return { name: y, shape };
  }

  concatenate(layer: KerasLayer): Value {
    const xs = layer.inbound.map((_, i) => this.input(layer, i));
    const rank = xs[0].shape.length + 1;
    let axis = Number(layer.config.axis ?? -1);
    if (axis < 0) axis += rank;
    if (rank !== 2 && rank !== 4 || axis < 1 || axis >= rank) {
      throw unsupported(layer, `axis ${layer.config.axis} on rank ${rank}`);
    }
    const k = axis - 1;
    const shape = [...xs[0].shape];
    shape[k] = 0;
    for (const x of xs) {
      if (x.shape.length !== shape.length || x.shape.some((d, i) => i !== k && d !== shape[i])) {
        throw unsupported(
          layer,
          `inputs of incompatible shapes (${xs.map((x) => `[${x.shape}]`)})`,
        );
      }
      shape[k] += x.shape[k];
    }
    const onnxAxis = rank === 4 ? [0, 2, 3, 1][axis] : axis;
    const y = this.w.op("Concat", xs.map((x) => this.plain(x)), { axis: attr.int(onnxAxis) });
    return { name: y, shape };
  }

  relu(layer: KerasLayer): Value {
    const x = this.input(layer);
    const cfg = layer.config;
    const max = cfg.max_value as number | null | undefined;
    const slope = Number(cfg.negative_slope ?? 0);
    if (Number(cfg.threshold ?? 0) !== 0) throw unsupported(layer, `threshold ${cfg.threshold}`);
    const v = this.plain(x);
    let y: string;
    if (slope === 0) {
      y = max === null || max === undefined
        ? this.w.op("Relu", [v], {}, layer.name)
        : this.w.op("Clip", [v, this.w.f32([0], []), this.w.f32([max], [])], {}, layer.name);
    } else if (max === null || max === undefined) {
      y = this.w.op("LeakyRelu", [v], { alpha: attr.float(slope) }, layer.name);
    } else throw unsupported(layer, "negative_slope together with max_value");
    return { name: y, shape: x.shape };
  }

  zeroPadding(layer: KerasLayer): Value {
    const x = this.input(layer);
    const [H, W, C] = this.spatial(layer, x);
    const p = layer.config.padding;
    let t: number, b: number, l: number, r: number;
    if (typeof p === "number") [t, b, l, r] = [p, p, p, p];
    else if (Array.isArray(p) && p.every((e) => typeof e === "number")) {
      [t, b, l, r] = [p[0], p[0], p[1], p[1]];
    } else if (Array.isArray(p) && p.every((e) => Array.isArray(e) && e.length === 2)) {
      [[t, b], [l, r]] = p as [[number, number], [number, number]];
    } else throw unsupported(layer, `padding ${JSON.stringify(p)}`);
    const [pt, pb, pl, pr] = x.pads ?? [0, 0, 0, 0];
    return {
      name: x.name,
      shape: [H + t + b, W + l + r, C],
      pads: [pt + t, pb + b, pl + l, pr + r],
    };
  }

  layer(layer: KerasLayer): Value {
    const c = layer.className;
    if (IGNORED.has(c)) return this.input(layer);
    switch (c) {
      case "Conv2D":
      case "DepthwiseConv2D":
        return this.conv(layer);
      case "Dense":
        return this.dense(layer);
      case "BatchNormalization":
        return this.batchNorm(layer);
      case "ReLU":
        return this.relu(layer);
      case "LeakyReLU": {
        const x = this.input(layer);
        const alpha = Number(layer.config.alpha ?? 0.3);
        const y = this.w.op("LeakyRelu", [this.plain(x)], { alpha: attr.float(alpha) });
        return { name: y, shape: x.shape };
      }
      case "Activation": {
        const x = this.input(layer);
        return {
          name: this.activation(layer, this.plain(x), layer.config.activation),
          shape: x.shape,
        };
      }
      case "Softmax": {
        const x = this.input(layer);
        const axis = Number(layer.config.axis ?? -1);
        if (axis !== -1 && axis !== x.shape.length) throw unsupported(layer, `axis ${axis}`);
        return { name: this.activation(layer, this.plain(x), "softmax"), shape: x.shape };
      }
      case "ZeroPadding2D":
        return this.zeroPadding(layer);
      case "MaxPooling2D":
      case "AveragePooling2D":
        return this.pool(layer);
      case "GlobalAveragePooling2D":
      case "GlobalMaxPooling2D":
        return this.globalPool(layer);
      case "Flatten":
        return this.flatten(layer);
      case "Add":
      case "Multiply":
      case "Average":
      case "Maximum":
      case "Minimum":
      case "Subtract":
        return this.merge(layer);
      case "Concatenate":
        return this.concatenate(layer);
      case "Rescaling": {
        const x = this.input(layer);
        const scale = Number(layer.config.scale ?? 1);
        const offset = Number(layer.config.offset ?? 0);
        const m = this.w.op("Mul", [this.plain(x), this.w.f32([scale], [])]);
        return { name: this.w.op("Add", [m, this.w.f32([offset], [])]), shape: x.shape };
      }
      default:
        throw new KerasModelError(`layer "${layer.name}": unsupported layer type ${c}`);
    }
  }

  /** Marks the BatchNormalization layers that fold into the layer before them. */
  planFolds(needed: KerasLayer[], outputs: ReadonlySet<string>): void {
    const readers = new Map<string, number>();
    for (const l of needed) for (const i of l.inbound) readers.set(i, (readers.get(i) ?? 0) + 1);
    for (const bn of needed) {
      if (bn.className !== "BatchNormalization") continue;
      const prev = this.byName.get(bn.inbound[0])!;
      const foldable = ["Conv2D", "DepthwiseConv2D", "Dense"].includes(prev.className) &&
        (prev.config.activation ?? "linear") === "linear" && readers.get(prev.name) === 1 &&
        !outputs.has(prev.name);
      const axis = bn.config.axis;
      if (
        foldable &&
        (axis === -1 || axis === 3 || axis === undefined ||
          prev.className === "Dense" && axis === 1)
      ) {
        this.foldInto.set(prev.name, bn);
        this.folded.add(bn.name);
      }
    }
  }
}

/** Converts a Keras layers model to ONNX bytes (see the module comment). */
export function kerasToOnnx(
  graph: KerasGraph,
  weights: Map<string, NamedWeight>,
  opts: KerasToOnnxOptions = {},
): KerasToOnnxResult {
  const outputLayer = opts.outputLayer ?? featureLayer(graph);
  const conv = new Converter(graph, weights);
  if (!conv.byName.has(outputLayer)) {
    throw new KerasModelError(`the model has no layer "${outputLayer}"`);
  }
  // Only the layers the output depends on.
  const needed = new Set<string>();
  const stack = [outputLayer];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (needed.has(n)) continue;
    needed.add(n);
    stack.push(...conv.byName.get(n)!.inbound);
  }
  const layers = graph.layers.filter((l) => needed.has(l.name));
  const layerOutputs = opts.layerOutputs ?? [];
  for (const name of layerOutputs) {
    if (!needed.has(name)) {
      throw new KerasModelError(`layer "${name}" is not on the way to "${outputLayer}"`);
    }
  }
  // A layer read as an output keeps its own value: no batch norm folds into it.
  if (opts.foldBatchNorm !== false) {
    conv.planFolds(layers, new Set([outputLayer, ...layerOutputs]));
  }

  const inputLayer = layers.find((l) => l.className === "InputLayer");
  if (!inputLayer || inputLayer.name !== graph.input) {
    throw new KerasModelError(`layer "${outputLayer}" does not depend on the model input`);
  }
  const bis = (inputLayer.config.batch_input_shape ?? inputLayer.config.batch_shape) as
    | (number | null)[]
    | undefined;
  if (!bis || bis.length !== 4 || bis.slice(1).some((d) => typeof d !== "number")) {
    throw new KerasModelError(
      `input layer "${inputLayer.name}" must be [batch, height, width, channels] with fixed sizes`,
    );
  }
  const [H, W, C] = bis.slice(1) as number[];
  const inputName = opts.inputName ?? "pixel_values";
  conv.w.g.input(inputName, "float32", ["batch", C, H, W]);
  conv.values.set(inputLayer.name, { name: inputName, shape: [H, W, C] });
  for (const l of layers) {
    if (l.className === "InputLayer") continue;
    conv.values.set(l.name, conv.layer(l));
  }
  // Spatial values come out global-average-pooled: one vector per image.
  const pooled = (name: string): { y: string; shape: number[] } => {
    const v = conv.values.get(name)!;
    const y = conv.plain(v);
    if (v.shape.length !== 3) return { y, shape: v.shape };
    return {
      y: conv.w.op("Flatten", [conv.w.op("GlobalAveragePool", [y])], { axis: attr.int(1) }),
      shape: [v.shape[2]],
    };
  };
  const { y, shape } = pooled(outputLayer);
  const outputName = opts.outputName ?? "image_embeds";
  conv.w.g.node("Identity", [y], [outputName]);
  conv.w.g.output(outputName, "float32", ["batch", ...shape]);
  const layerShapes: number[][] = [];
  layerOutputs.forEach((name, k) => {
    const l = pooled(name);
    conv.w.g.node("Identity", [l.y], [`layer_${k}`]);
    conv.w.g.output(`layer_${k}`, "float32", ["batch", ...l.shape]);
    layerShapes.push(l.shape);
  });
  const layerMeta: Record<string, string> = layerOutputs.length > 0
    ? { "duaf.image.layers": layerOutputs.join(",") }
    : {};
  const bytes = conv.w.g.toBytes({
    opset: 13,
    irVersion: 8,
    producerName: "duaf keras_to_onnx",
    docString: opts.docString,
    metadata: { "keras.output_layer": outputLayer, ...layerMeta, ...opts.metadata },
  });
  return {
    bytes,
    outputLayer,
    inputShape: [H, W, C],
    outputShape: shape,
    layers: layers.length,
    layerShapes,
  };
}

// Re-exported so callers need one import for the whole conversion.
export { featureLayer, KerasModelError, parseKerasTopology } from "./keras_model.ts";
export { decodeWeights } from "./tfjs_weights.ts";
