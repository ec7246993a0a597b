/**
 * JPEG and PNG decoding to 8-bit RGB with pure-JS decoders (jpeg-js, fast-png). The format is
 * recognised from the file's first bytes, not its extension. Alpha is dropped without
 * compositing and grey is replicated, as PIL's `convert("RGB")` (which Hugging Face image
 * processors call) does.
 */
import jpeg from "jpeg-js";
import { convertIndexedToRgb, decode as decodePng } from "fast-png";

/** 8-bit RGB, row-major, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** The bytes are not a JPEG or PNG image this decoder can read. */
export class ImageDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageDecodeError";
  }
}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function imageFormat(bytes: Uint8Array): "jpeg" | "png" | null {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    return "jpeg";
  }
  if (bytes.length >= 8 && PNG_MAGIC.every((b, i) => bytes[i] === b)) return "png";
  return null;
}

/** Decodes JPEG or PNG bytes; throws ImageDecodeError on anything else or on corrupt data. */
export function decodeImage(bytes: Uint8Array): RgbImage {
  const format = imageFormat(bytes);
  if (format === null) throw new ImageDecodeError("not a JPEG or PNG image");
  try {
    return format === "jpeg" ? decodeJpeg(bytes) : decodePngRgb(bytes);
  } catch (e) {
    if (e instanceof ImageDecodeError) throw e;
    const msg = String((e as Error)?.message ?? e).split("\n")[0];
    throw new ImageDecodeError(`cannot decode ${format.toUpperCase()}: ${msg}`);
  }
}

function decodeJpeg(bytes: Uint8Array): RgbImage {
  // jpeg-js guards against decompression bombs with these limits (defaults 100 MP, 512 MB).
  const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, tolerantDecoding: true });
  return checked(dropAlpha(img.width, img.height, img.data, 4));
}

function decodePngRgb(bytes: Uint8Array): RgbImage {
  const png = decodePng(bytes);
  const { width, height } = png;
  if (png.palette) {
    const rgb = convertIndexedToRgb(png);
    const channels = rgb.length / (width * height);
    return checked(dropAlpha(width, height, rgb, channels));
  }
  const channels = png.channels;
  let data8: ArrayLike<number> = png.data;
  if (png.depth === 16) {
    // 16 -> 8 bits by rounding v / 257, the exact inverse of 8 -> 16 bit expansion.
    const d = new Uint8Array(png.data.length);
    for (let i = 0; i < d.length; i++) d[i] = Math.round(png.data[i] / 257);
    data8 = d;
  } else if (png.depth < 8) {
    data8 = unpackLowDepth(png.data as Uint8Array, width, height, channels, png.depth);
  }
  if (channels === 1 || channels === 2) {
    const out = new Uint8Array(width * height * 3);
    for (let p = 0; p < width * height; p++) {
      const g = data8[p * channels];
      out[3 * p] = g;
      out[3 * p + 1] = g;
      out[3 * p + 2] = g;
    }
    return checked({ width, height, data: out });
  }
  return checked(dropAlpha(width, height, data8, channels));
}

/** Grey PNGs of 1, 2 or 4 bits per pixel arrive packed, each row padded to a byte. */
function unpackLowDepth(
  packed: Uint8Array,
  width: number,
  height: number,
  channels: number,
  depth: number,
): Uint8Array {
  const samplesPerRow = width * channels;
  const rowBytes = Math.ceil((samplesPerRow * depth) / 8);
  if (packed.length === width * height * channels) return scaleLow(packed, depth); // unpacked
  const out = new Uint8Array(samplesPerRow * height);
  const maxV = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < samplesPerRow; x++) {
      const bit = x * depth;
      const byte = packed[y * rowBytes + (bit >> 3)];
      const v = (byte >> (8 - depth - (bit & 7))) & maxV;
      out[y * samplesPerRow + x] = Math.round((v * 255) / maxV);
    }
  }
  return out;
}

function scaleLow(values: Uint8Array, depth: number): Uint8Array {
  const maxV = (1 << depth) - 1;
  return values.map((v) => Math.round((v * 255) / maxV));
}

function dropAlpha(
  width: number,
  height: number,
  src: ArrayLike<number>,
  channels: number,
): RgbImage {
  const n = width * height;
  if (channels === 3) return { width, height, data: Uint8Array.from(src as ArrayLike<number>) };
  if (channels !== 4) throw new ImageDecodeError(`unsupported channel count ${channels}`);
  const out = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) {
    out[3 * p] = src[4 * p];
    out[3 * p + 1] = src[4 * p + 1];
    out[3 * p + 2] = src[4 * p + 2];
  }
  return { width, height, data: out };
}

function checked(img: RgbImage): RgbImage {
  if (!(img.width > 0 && img.height > 0) || img.data.length !== img.width * img.height * 3) {
    throw new ImageDecodeError(`decoded to an empty or inconsistent ${img.width}x${img.height}`);
  }
  return img;
}
