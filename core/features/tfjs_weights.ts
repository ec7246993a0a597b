/**
 * TF.js weight manifests: the `weightsManifest` of a model.json names each weight (`layer/kernel`),
 * its shape and dtype, and its quantization; the shards listed in `paths` hold the weights' bytes
 * back to back, in manifest order, little-endian.
 *
 * Quantized weights are stored as uint8 or uint16 integers q and read back as
 * q * scale + min, in double precision and stored as float32, as tf.io.decodeWeights does;
 * float16 quantization stores IEEE half floats.
 */
import { halfToFloat } from "./npy.ts";

/** One entry of a weights manifest group (tf.io.WeightsManifestEntry). */
export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: "float32" | "int32" | string;
  quantization?: { dtype: "uint8" | "uint16" | "float16" | string; scale?: number; min?: number };
}

export interface WeightsManifestGroup {
  paths: string[];
  weights: WeightSpec[];
}

/** A decoded weight: float32 values in the stored (Keras) layout. */
export interface NamedWeight {
  shape: number[];
  data: Float32Array;
}

/**
 * Decodes the weights of all `groups` from `bytes` (all shards concatenated in manifest order).
 * Throws when the bytes are too short or an entry has a dtype or quantization it cannot read.
 */
export function decodeWeights(
  groups: readonly WeightsManifestGroup[],
  bytes: Uint8Array,
): Map<string, NamedWeight> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Map<string, NamedWeight>();
  let offset = 0;
  for (const spec of groups.flatMap((g) => g.weights)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const q = spec.quantization;
    const width = q ? (q.dtype === "uint8" ? 1 : 2) : 4;
    if (offset + n * width > bytes.length) {
      throw new RangeError(`weights: "${spec.name}" runs past the end of the weight data`);
    }
    const data = new Float32Array(n);
    if (q) {
      if (spec.dtype !== "float32") {
        throw new TypeError(`weights: "${spec.name}": quantized ${spec.dtype} is not supported`);
      }
      if (q.dtype === "uint8" || q.dtype === "uint16") {
        if (typeof q.scale !== "number" || typeof q.min !== "number") {
          throw new TypeError(`weights: "${spec.name}": ${q.dtype} quantization needs scale, min`);
        }
        for (let i = 0; i < n; i++) {
          const v = q.dtype === "uint8" ? bytes[offset + i] : view.getUint16(offset + 2 * i, true);
          data[i] = v * q.scale + q.min;
        }
      } else if (q.dtype === "float16") {
        for (let i = 0; i < n; i++) data[i] = halfToFloat(view.getUint16(offset + 2 * i, true));
      } else {
        throw new TypeError(`weights: "${spec.name}": unknown quantization ${q.dtype}`);
      }
    } else if (spec.dtype === "float32") {
      for (let i = 0; i < n; i++) data[i] = view.getFloat32(offset + 4 * i, true);
    } else if (spec.dtype === "int32") {
      for (let i = 0; i < n; i++) data[i] = view.getInt32(offset + 4 * i, true);
    } else {
      throw new TypeError(`weights: "${spec.name}": dtype ${spec.dtype} is not supported`);
    }
    offset += n * width;
    if (out.has(spec.name)) throw new Error(`weights: "${spec.name}" appears twice`);
    out.set(spec.name, { shape: [...spec.shape], data });
  }
  return out;
}

/** Quantizes float32 values to uint8 the way the TF.js converter does (for fixtures and tests). */
export function quantizeUint8(values: Float32Array): {
  bytes: Uint8Array;
  scale: number;
  min: number;
} {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const scale = max > min ? (max - min) / 255 : 1;
  const bytes = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    bytes[i] = Math.max(0, Math.min(255, Math.round((values[i] - min) / scale)));
  }
  return { bytes, scale, min };
}
