/**
 * Image preprocessing as Hugging Face's ViT/CLIP image processors do it: resize (shorter side to
 * `size`, then center crop to size x size; or straight to size x size), scale to [0, 1],
 * normalize per channel, and lay out as CHW float32.
 *
 * Resizing reproduces PIL's Image.resize (Resample.c): a separable convolution, horizontal pass
 * first, whose filter support widens with the downscale factor (so downscaling antialiases),
 * with 22-bit fixed-point weights and rounding to 8 bits after each pass. Bilinear is the
 * triangle filter, bicubic the Keys cubic with a = -0.5.
 */
import type { RgbImage } from "./image_decode.ts";

export type Resample = "bilinear" | "bicubic";

export interface PreprocessOptions {
  /** Output side length (the model's input height = width). */
  size: number;
  /** Per-channel mean and std applied after scaling to [0, 1]. */
  mean: readonly number[];
  std: readonly number[];
  resample: Resample;
  /** true: shorter side to `size` then center crop (CLIP); false: resize to size x size (ViT). */
  crop: boolean;
}

/** Normalization and resizing of the two model families users bring most often. */
export const IMAGE_PRESETS: Record<"vit" | "clip", Omit<PreprocessOptions, "size">> = {
  // google/vit-*: ViTImageProcessor (bilinear, no crop, mean = std = 0.5).
  vit: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], resample: "bilinear", crop: false },
  // openai/clip-*: CLIPImageProcessor (bicubic, shorter side + center crop).
  clip: {
    mean: [0.48145466, 0.4578275, 0.40821073],
    std: [0.26862954, 0.26130258, 0.27577711],
    resample: "bicubic",
    crop: true,
  },
};

const FILTERS: Record<Resample, { support: number; f: (x: number) => number }> = {
  bilinear: {
    support: 1,
    f: (x) => {
      x = Math.abs(x);
      return x < 1 ? 1 - x : 0;
    },
  },
  bicubic: {
    support: 2,
    f: (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
};

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;

interface Coeffs {
  ksize: number;
  bounds: Int32Array; // per output pixel: first input index, tap count
  weights: Float64Array; // fixed-point integers, ksize per output pixel
}

/** PIL's precompute_coeffs + normalize_coeffs_8bpc for a resize of inSize to outSize. */
function coefficients(inSize: number, outSize: number, resample: Resample): Coeffs {
  const filter = FILTERS[resample];
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Float64Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = filter.f((x + xmin - center + 0.5) / filterScale);
      ww += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x] / ww : k[x];
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

function clip8(ss: number): number {
  if (ss >= ONE * 256) return 255;
  if (ss <= 0) return 0;
  return Math.floor(ss / ONE);
}

function resizeHorizontal(img: RgbImage, outW: number, resample: Resample): RgbImage {
  const { width, height, data } = img;
  const { ksize, bounds, weights } = coefficients(width, outW, resample);
  const out = new Uint8Array(outW * height * 3);
  for (let y = 0; y < height; y++) {
    const row = y * width * 3;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[2 * xx];
      const n = bounds[2 * xx + 1];
      const kOff = xx * ksize;
      for (let c = 0; c < 3; c++) {
        let ss = ONE / 2;
        for (let x = 0; x < n; x++) ss += data[row + (xmin + x) * 3 + c] * weights[kOff + x];
        out[(y * outW + xx) * 3 + c] = clip8(ss);
      }
    }
  }
  return { width: outW, height, data: out };
}

function resizeVertical(img: RgbImage, outH: number, resample: Resample): RgbImage {
  const { width, height, data } = img;
  const { ksize, bounds, weights } = coefficients(height, outH, resample);
  const out = new Uint8Array(width * outH * 3);
  const stride = width * 3;
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[2 * yy];
    const n = bounds[2 * yy + 1];
    const kOff = yy * ksize;
    for (let i = 0; i < stride; i++) {
      let ss = ONE / 2;
      for (let y = 0; y < n; y++) ss += data[(ymin + y) * stride + i] * weights[kOff + y];
      out[yy * stride + i] = clip8(ss);
    }
  }
  return { width, height: outH, data: out };
}

/** Resizes like PIL's Image.resize((outW, outH), resample) on an RGB image. */
export function resizeRgb(img: RgbImage, outW: number, outH: number, resample: Resample): RgbImage {
  let out = img;
  if (outW !== img.width) out = resizeHorizontal(out, outW, resample);
  if (outH !== img.height) out = resizeVertical(out, outH, resample);
  return out;
}

/** The size Hugging Face resizes to before cropping: shorter side = size, longer side floored. */
export function shorterSideSize(width: number, height: number, size: number): [number, number] {
  return width <= height
    ? [size, Math.floor((size * height) / width)]
    : [Math.floor((size * width) / height), size];
}

/** Center crop; the top-left corner is floored, as in Hugging Face's center_crop. */
export function centerCrop(img: RgbImage, w: number, h: number): RgbImage {
  if (w > img.width || h > img.height) {
    throw new RangeError(`centerCrop: ${w}x${h} exceeds ${img.width}x${img.height}`);
  }
  const top = Math.floor((img.height - h) / 2);
  const left = Math.floor((img.width - w) / 2);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const src = ((top + y) * img.width + left) * 3;
    out.set(img.data.subarray(src, src + w * 3), y * w * 3);
  }
  return { width: w, height: h, data: out };
}

/**
 * Writes one preprocessed image as CHW float32 into `out` at `offset` (3 * size * size values).
 * Arithmetic is float32 at each step, as the Hugging Face processors do it in NumPy.
 */
export function preprocessImage(
  img: RgbImage,
  opts: PreprocessOptions,
  out: Float32Array = new Float32Array(3 * opts.size * opts.size),
  offset = 0,
): Float32Array {
  const { size, mean, std } = opts;
  let sized: RgbImage;
  if (opts.crop) {
    const [w, h] = shorterSideSize(img.width, img.height, size);
    sized = centerCrop(resizeRgb(img, w, h, opts.resample), size, size);
  } else sized = resizeRgb(img, size, size, opts.resample);
  const plane = size * size;
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    const m = f(mean[c]);
    const s = f(std[c]);
    for (let p = 0; p < plane; p++) {
      const v = f(sized.data[3 * p + c] * (1 / 255));
      out[offset + c * plane + p] = f(f(v - m) / s);
    }
  }
  return out;
}
