/**
 * Image features from a user-supplied ONNX image encoder (ViT, CLIP vision tower, ...) over
 * local JPEG/PNG files.
 *
 * The model's first input takes pixel_values float32 [batch, 3, size, size]. Output used: the
 * one named in the options, else "image_embeds" or "pooler_output" when present, else the first
 * output. [batch, dim] is taken as is, [batch, tokens, dim] gives the first ([CLS]) token,
 * [batch, C, h, w] is averaged over h and w. Preprocessing: core/features/image_preprocess.ts
 * (ViT defaults: bilinear, no crop, mean = std = 0.5).
 *
 * A model can declare its own preprocessing in ModelProto.metadata_props (IMAGE_METADATA_KEYS:
 * `duaf.image.mean`, `duaf.image.std` as three comma-separated numbers, `duaf.image.resample`
 * bilinear | bicubic, `duaf.image.crop` true | false); options given explicitly win over it,
 * and it wins over the ViT defaults. The Keras converter (keras_to_onnx.ts) writes these keys.
 */
import { basename, extname, join } from "node:path";
import { DataError, UsageError } from "../errors.ts";
import type { Progress } from "../progress.ts";
import { readOnnxMetadata } from "../export/onnx_graph.ts";
import { decodeImage, ImageDecodeError, type RgbImage } from "./image_decode.ts";
import {
  IMAGE_PRESETS,
  preprocessImage,
  type PreprocessOptions,
  type Resample,
} from "./image_preprocess.ts";
import {
  createSession,
  inputDims,
  type OrtSession,
  ortTensor,
  pickOutput,
  runFloat,
} from "./ort.ts";

export interface ImageEncodeOptions {
  /** Model input side; default: the model's declared input size, else 224. */
  size?: number;
  /** Per-channel normalization; default mean = std = 0.5 (ViT). */
  mean?: number[];
  std?: number[];
  /** Default "bilinear" (ViT); CLIP uses "bicubic". */
  resample?: Resample;
  /** Shorter side + center crop (CLIP) instead of a straight resize (ViT); default false. */
  crop?: boolean;
  /** Model output to read; default "image_embeds" or "pooler_output" if present, else the first. */
  output?: string;
  batchSize: number;
  /** Missing or undecodable images: DataError when true, else mask 0 and a counted skip. */
  strict: boolean;
  progress?: Progress;
  /** Also read K evenly spaced of the model's `layer_*` outputs (block states, for IISAN). */
  layers?: number;
}

export interface EncodedImages {
  dim: number;
  data: Float32Array;
  mask: Uint8Array;
  /** With `layers`: each image's chosen layer rows concatenated, and their widths. */
  layers?: { widths: number[]; data: Float32Array };
  /** Image paths that could not be read or decoded (lenient mode). */
  skipped: number;
}

const PREFERRED_OUTPUTS = ["image_embeds", "pooler_output"];
const MAX_NOTES = 5;

/** Reduces one batch output to [batch, dim]: as is, first token, or spatial mean. */
export function imageRows(out: { data: Float32Array; dims: number[] }): {
  dim: number;
  rows: (b: number) => Float32Array;
} {
  const d = out.dims;
  if (d.length === 2) {
    return { dim: d[1], rows: (b) => out.data.subarray(b * d[1], (b + 1) * d[1]) };
  }
  if (d.length === 3) {
    const [, tokens, dim] = d;
    return { dim, rows: (b) => out.data.subarray(b * tokens * dim, b * tokens * dim + dim) };
  }
  if (d.length === 4) {
    const [, c, h, w] = d;
    const plane = h * w;
    return {
      dim: c,
      rows: (b) => {
        const r = new Float32Array(c);
        for (let k = 0; k < c; k++) {
          let s = 0;
          const base = (b * c + k) * plane;
          for (let p = 0; p < plane; p++) s += out.data[base + p];
          r[k] = s / plane;
        }
        return r;
      },
    };
  }
  throw new RangeError(`unsupported image encoder output shape [${d}]`);
}

/** metadata_props keys through which an ONNX image encoder declares its preprocessing. */
export const IMAGE_METADATA_KEYS = {
  mean: "duaf.image.mean",
  std: "duaf.image.std",
  resample: "duaf.image.resample",
  crop: "duaf.image.crop",
} as const;

/** The preprocessing a model declares in its metadata (absent keys stay undefined). */
export function declaredPreprocess(
  metadata: Record<string, string>,
  modelPath: string,
): Partial<Pick<PreprocessOptions, "mean" | "std" | "resample" | "crop">> {
  const out: Partial<Pick<PreprocessOptions, "mean" | "std" | "resample" | "crop">> = {};
  const bad = (key: string, want: string) =>
    new DataError(modelPath, null, `metadata ${key}`, `"${metadata[key]}" is not ${want}`);
  for (const k of ["mean", "std"] as const) {
    const key = IMAGE_METADATA_KEYS[k];
    if (metadata[key] === undefined) continue;
    const v = metadata[key].split(",").map((x) => Number(x.trim()));
    if (
      v.length !== 3 || v.some((x) => !Number.isFinite(x)) || k === "std" && v.some((x) => x <= 0)
    ) {
      throw bad(key, k === "std" ? "three positive numbers" : "three numbers");
    }
    out[k] = v;
  }
  const resample = metadata[IMAGE_METADATA_KEYS.resample];
  if (resample !== undefined) {
    if (resample !== "bilinear" && resample !== "bicubic") {
      throw bad(IMAGE_METADATA_KEYS.resample, "bilinear or bicubic");
    }
    out.resample = resample;
  }
  const crop = metadata[IMAGE_METADATA_KEYS.crop];
  if (crop !== undefined) {
    if (crop !== "true" && crop !== "false") throw bad(IMAGE_METADATA_KEYS.crop, "true or false");
    out.crop = crop === "true";
  }
  return out;
}

function resolvePreprocess(
  session: OrtSession,
  modelPath: string,
  opts: ImageEncodeOptions,
  declared: ReturnType<typeof declaredPreprocess>,
) {
  const inputName = session.inputNames[0];
  const dims = inputDims(session, inputName);
  if (dims && dims.length !== 4) {
    throw new DataError(modelPath, null, inputName, `input has rank ${dims.length}, expected 4`);
  }
  if (dims && dims[1] !== null && dims[1] !== 3) {
    throw new DataError(modelPath, null, inputName, `input has ${dims[1]} channels, expected 3`);
  }
  const [h, w] = dims ? [dims[2], dims[3]] : [null, null];
  if (h !== null && w !== null && h !== w) {
    throw new DataError(modelPath, null, inputName, `input is ${h}x${w}; only square inputs`);
  }
  const size = opts.size ?? h ?? 224;
  if (h !== null && size !== h) {
    throw new UsageError(`image size ${size} does not match the model's ${h}x${h} input`);
  }
  const vit = IMAGE_PRESETS.vit;
  const pre: PreprocessOptions = {
    size,
    mean: opts.mean ?? declared.mean ?? vit.mean,
    std: opts.std ?? declared.std ?? vit.std,
    resample: opts.resample ?? declared.resample ?? vit.resample,
    crop: opts.crop ?? declared.crop ?? vit.crop,
  };
  if (pre.mean.length !== 3 || pre.std.length !== 3 || pre.std.some((s) => !(s > 0))) {
    throw new UsageError("image mean and std need 3 values each, std positive");
  }
  return { inputName, pre };
}

/** Reads and decodes one image, or says why it cannot. */
async function loadImage(
  path: string,
): Promise<{ ok: true; image: RgbImage } | { ok: false; error: string }> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    return { ok: false, error: `cannot read image: ${(e as Error).message}` };
  }
  try {
    return { ok: true, image: decodeImage(bytes) };
  } catch (e) {
    if (e instanceof ImageDecodeError) return { ok: false, error: e.message };
    throw e;
  }
}

/** Encodes images (null = no image) into one vector each; rows align with `imagePaths`. */
export async function encodeImages(
  modelPath: string,
  imagePaths: (string | null)[],
  opts: ImageEncodeOptions,
): Promise<EncodedImages> {
  if (!(opts.batchSize >= 1)) {
    throw new UsageError(`batch size must be >= 1, got ${opts.batchSize}`);
  }
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(modelPath);
  } catch (e) {
    throw new DataError(modelPath, null, null, `cannot read model: ${(e as Error).message}`);
  }
  const session = await createSession(bytes, modelPath);
  try {
    let metadata: Record<string, string>;
    try {
      metadata = readOnnxMetadata(bytes);
    } catch {
      metadata = {}; // ORT loaded it, so this parser is the one that is short of something
    }
    const declared = declaredPreprocess(metadata, modelPath);
    return await encodeWithSession(session, modelPath, imagePaths, opts, declared);
  } finally {
    await session.release();
  }
}

async function encodeWithSession(
  session: OrtSession,
  modelPath: string,
  imagePaths: (string | null)[],
  opts: ImageEncodeOptions,
  declared: ReturnType<typeof declaredPreprocess>,
): Promise<EncodedImages> {
  const { inputName, pre } = resolvePreprocess(session, modelPath, opts, declared);
  const outName = pickOutput(session, modelPath, opts.output, PREFERRED_OUTPUTS);
  const layerNames = opts.layers === undefined ? [] : chooseLayers(session, modelPath, opts.layers);
  const layerWidths: number[] = [];
  let layerData = new Float32Array(0);
  const present = imagePaths.flatMap((p, i) => (p !== null ? [i] : []));
  const mask = new Uint8Array(imagePaths.length);
  const task = opts.progress?.start("encode images", present.length, "images");
  const perImage = 3 * pre.size * pre.size;
  let skipped = 0;
  let dim = 0;
  let data = new Float32Array(0);

  const runBatch = async (idx: number[], pixels: Float32Array) => {
    const input = ortTensor("float32", pixels.subarray(0, idx.length * perImage), [
      idx.length,
      3,
      pre.size,
      pre.size,
    ]);
    const outs = await runFloat(session, { [inputName]: input });
    const out = outs.get(outName)!;
    if (layerNames.length > 0) readLayers(outs, idx);
    if (out.dims.length < 2 || out.dims.length > 4 || out.dims[0] !== idx.length) {
      throw new DataError(modelPath, null, outName, `output shape [${out.dims}] is not per image`);
    }
    const { dim: d, rows } = imageRows(out);
    if (dim === 0) {
      dim = d;
      data = new Float32Array(imagePaths.length * dim);
    }
    idx.forEach((i, b) => {
      data.set(rows(b), i * dim);
      mask[i] = 1;
    });
  };

  // Each image's chosen layer states, pooled like the main output, concatenated in layer order.
  const readLayers = (outs: Map<string, { data: Float32Array; dims: number[] }>, idx: number[]) => {
    const rows = layerNames.map((name) => imageRows(outs.get(name)!));
    if (layerWidths.length === 0) {
      layerWidths.push(...rows.map((r) => r.dim));
      layerData = new Float32Array(imagePaths.length * layerWidths.reduce((a, b) => a + b, 0));
    }
    const width = layerWidths.reduce((a, b) => a + b, 0);
    idx.forEach((i, b) => {
      let at = i * width;
      for (const r of rows) {
        layerData.set(r.rows(b), at);
        at += r.dim;
      }
    });
  };

  const pixels = new Float32Array(opts.batchSize * perImage);
  let batch: number[] = [];
  for (const i of present) {
    const path = imagePaths[i]!;
    const loaded = await loadImage(path);
    if (!loaded.ok) {
      if (opts.strict) throw new DataError(path, null, null, loaded.error);
      skipped++;
      if (skipped <= MAX_NOTES) opts.progress?.log(`skipped image ${path}: ${loaded.error}`);
    } else {
      preprocessImage(loaded.image, pre, pixels, batch.length * perImage);
      batch.push(i);
      if (batch.length === opts.batchSize) {
        await runBatch(batch, pixels);
        batch = [];
      }
    }
    task?.tick(1);
  }
  if (batch.length > 0) await runBatch(batch, pixels);
  if (skipped > MAX_NOTES) opts.progress?.log(`skipped ${skipped} unreadable images in all`);
  task?.done(`${present.length - skipped} images, dim ${dim}`);
  if (dim === 0) {
    // Nothing decoded: one blank image tells the output width.
    const blank = ortTensor("float32", new Float32Array(perImage), [1, 3, pre.size, pre.size]);
    const outs = await runFloat(session, { [inputName]: blank });
    dim = imageRows(outs.get(outName)!).dim;
    data = new Float32Array(imagePaths.length * dim);
    if (layerNames.length > 0) {
      readLayers(outs, [0]);
      layerData.fill(0);
    }
  }
  if (layerNames.length === 0) return { dim, data, mask, skipped };
  return { dim, data, mask, skipped, layers: { widths: layerWidths, data: layerData } };
}

/**
 * K evenly spaced of the model's layer_0 .. layer_{M-1} outputs, the last always included
 * (layer round((j + 1) M / K) - 1 for j < K).
 */
export function chooseLayers(session: OrtSession, modelPath: string, k: number): string[] {
  const all = session.outputNames.filter((n) => /^layer_\d+$/.test(n))
    .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)));
  if (all.length === 0) {
    throw new UsageError(
      `${modelPath} has no layer_* outputs: build it with \`deno task build:image-encoder ` +
        `--layers\` (intermediate block outputs), or give --image-layer-features`,
    );
  }
  if (k > all.length) {
    throw new UsageError(`--image-layers ${k}: ${modelPath} has ${all.length} layer outputs`);
  }
  return Array.from({ length: k }, (_, j) => all[Math.round((j + 1) * all.length / k) - 1]);
}

const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".png"]);

/**
 * Finds each item's image in a folder by file name: `<item id>.jpg`, `.jpeg` or `.png` (any
 * letter case). Items without one get null (no image: mask 0, not an error).
 */
export async function itemImagePaths(
  dir: string,
  itemIds: readonly string[],
): Promise<(string | null)[]> {
  const byStem = new Map<string, string>();
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isFile && !entry.isSymlink) continue;
      const ext = extname(entry.name).toLowerCase();
      if (!IMAGE_EXTENSIONS.has(ext)) continue;
      const stem = basename(entry.name, extname(entry.name));
      // Deterministic choice when an id has several files: the smallest name.
      const prev = byStem.get(stem);
      if (prev === undefined || entry.name < prev) byStem.set(stem, entry.name);
    }
  } catch (e) {
    throw new DataError(dir, null, null, `cannot read image folder: ${(e as Error).message}`);
  }
  return itemIds.map((id) => {
    const name = byStem.get(id);
    return name === undefined ? null : join(dir, name);
  });
}
