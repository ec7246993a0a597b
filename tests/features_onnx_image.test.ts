// Image decoding, PIL-compatible preprocessing, and the ONNX image encoder path on the tiny
// fixture model.
import assert from "node:assert/strict";
import { join } from "node:path";
import { DataError, UsageError } from "../core/errors.ts";
import { readOnnxModel } from "../core/export/onnx_graph.ts";
import { decodeImage, ImageDecodeError, type RgbImage } from "../core/features/image_decode.ts";
import {
  centerCrop,
  IMAGE_PRESETS,
  preprocessImage,
  resizeRgb,
  shorterSideSize,
} from "../core/features/image_preprocess.ts";
import { encodeImages, imageRows, itemImagePaths } from "../core/features/onnx_image.ts";
import { testImagePixels } from "../tools/make_test_images.ts";

const dir = new URL("../fixtures/encoders/", import.meta.url).pathname;
const IMAGES = join(dir, "images");
const MODEL = join(dir, "tiny_image_encoder.onnx");

function rgbOf(name: Parameters<typeof testImagePixels>[0]): RgbImage {
  const { width, height, rgba } = testImagePixels(name);
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) data.set(rgba.subarray(4 * p, 4 * p + 3), 3 * p);
  return { width, height, data };
}

/** One channel replicated into RGB, from a row-major grid of values. */
function grey(rows: number[][]): RgbImage {
  const height = rows.length;
  const width = rows[0].length;
  const data = new Uint8Array(width * height * 3);
  rows.flat().forEach((v, p) => data.fill(v, 3 * p, 3 * p + 3));
  return { width, height, data };
}

const channel0 = (img: RgbImage) => [...img.data].filter((_, i) => i % 3 === 0);

Deno.test("decode: PNG color types decode to the exact pixels, alpha dropped", async () => {
  for (
    const [file, name] of [
      ["gradient_40x24.png", "gradient"],
      ["gray_20x28.png", "gray"],
      ["rgba_33x33.png", "rgba"],
      ["palette_10x6.png", "palette"],
    ] as const
  ) {
    const img = decodeImage(await Deno.readFile(join(IMAGES, file)));
    const want = rgbOf(name);
    assert.equal(img.width, want.width, file);
    assert.equal(img.height, want.height, file);
    assert.deepEqual(img.data, want.data, file);
  }
});

Deno.test("decode: JPEG decodes close to its source pixels", async () => {
  const img = decodeImage(await Deno.readFile(join(IMAGES, "checker_48x32.jpg")));
  const want = rgbOf("checker");
  assert.equal(img.width, 48);
  assert.equal(img.height, 32);
  let sum = 0;
  for (let i = 0; i < want.data.length; i++) sum += Math.abs(img.data[i] - want.data[i]);
  assert.ok(sum / want.data.length < 4, `mean abs error ${sum / want.data.length}`);
});

Deno.test("decode: non-images and truncated files are ImageDecodeErrors", () => {
  assert.throws(
    () => decodeImage(Deno.readFileSync(join(IMAGES, "not_an_image.jpg"))),
    (e) => e instanceof ImageDecodeError && e.message === "not a JPEG or PNG image",
  );
  assert.throws(
    () => decodeImage(Deno.readFileSync(join(IMAGES, "truncated.png"))),
    (e) => e instanceof ImageDecodeError && e.message.startsWith("cannot decode PNG"),
  );
  assert.throws(() => decodeImage(new Uint8Array([0xff, 0xd8, 0xff, 0, 1])), ImageDecodeError);
});

Deno.test("resize: bilinear 2x downscale averages with PIL's widened triangle filter", () => {
  // Scale 2 widens the support to 2: taps at distance 0.25, 0.25, 0.75 get weights 3/7, 3/7,
  // 1/7. Output 0 = (0*3 + 70*3 + 140) / 7 = 50; output 1 = (70 + 140*3 + 210*3) / 7 = 160.
  const out = resizeRgb(grey([[0, 70, 140, 210]]), 2, 1, "bilinear");
  assert.deepEqual(channel0(out), [50, 160]);
});

Deno.test("resize: matches PIL 9.4 Image.resize exactly (bilinear, bicubic, down and up)", () => {
  // 5x4 image, pixel (x, y) = [(37x + 53y) % 256, (11xy + 90) % 256, (200 - 17x - 29y) mod 256];
  // expected values from PIL: Image.fromarray(img).resize(size, filter, reducing_gap=None).
  const data = new Uint8Array(5 * 4 * 3);
  for (let y = 0; y < 4; y++) {
    for (let x = 0; x < 5; x++) {
      data.set(
        [
          (37 * x + 53 * y) % 256,
          (11 * x * y + 90) % 256,
          (((200 - 17 * x - 29 * y) % 256) + 256) % 256,
        ],
        (y * 5 + x) * 3,
      );
    }
  }
  const img = { width: 5, height: 4, data };
  assert.deepEqual(
    [...resizeRgb(img, 3, 2, "bicubic").data],
    [44, 92, 177, 107, 103, 149, 176, 113, 121, 145, 100, 124, 177, 143, 96, 142, 187, 68],
  );
  assert.deepEqual(
    [...resizeRgb(img, 3, 2, "bilinear").data],
    [54, 93, 172, 112, 106, 145, 170, 118, 118, 137, 101, 127, 171, 140, 100, 143, 180, 73],
  );
  // Upscaling: the cubic overshoots and is clipped (the 255 in the fourth row).
  assert.deepEqual([...resizeRgb(img, 7, 6, "bicubic").data], [
    0,
    90,
    203,
    15,
    90,
    194,
    45,
    89,
    180,
    71,
    89,
    168,
    97,
    88,
    156,
    127,
    87,
    142,
    147,
    87,
    133,
    21,
    90,
    189,
    40,
    92,
    180,
    70,
    96,
    166,
    96,
    99,
    154,
    122,
    102,
    142,
    152,
    106,
    128,
    172,
    109,
    119,
    60,
    89,
    167,
    80,
    96,
    158,
    110,
    106,
    144,
    136,
    116,
    132,
    164,
    125,
    120,
    195,
    135,
    106,
    215,
    142,
    97,
    95,
    89,
    148,
    115,
    100,
    139,
    145,
    116,
    125,
    171,
    130,
    113,
    208,
    145,
    101,
    243,
    161,
    87,
    255,
    172,
    78,
    135,
    88,
    126,
    155,
    104,
    117,
    189,
    126,
    103,
    211,
    147,
    91,
    134,
    168,
    79,
    123,
    190,
    65,
    151,
    205,
    56,
    160,
    88,
    112,
    180,
    106,
    103,
    218,
    133,
    89,
    236,
    157,
    77,
    56,
    182,
    65,
    2,
    209,
    51,
    40,
    227,
    42,
  ]);
});

Deno.test("preprocess: no-op resize then (v / 255 - mean) / std, CHW", () => {
  const sq = centerCrop(rgbOf("gradient"), 24, 24); // 24x24 from the 40x24 gradient, left offset 8
  const out = preprocessImage(sq, { size: 24, ...IMAGE_PRESETS.clip });
  const { mean, std } = IMAGE_PRESETS.clip;
  const f = Math.fround;
  for (const [c, y, x] of [[0, 0, 0], [1, 5, 7], [2, 23, 23], [0, 12, 3]]) {
    const v = sq.data[(y * 24 + x) * 3 + c];
    assert.equal(v, [((x + 8) * 6) % 256, (y * 10) % 256, ((x + 8) * y) % 256][c]);
    const want = f(f(f(v * (1 / 255)) - f(mean[c])) / f(std[c]));
    assert.equal(out[c * 24 * 24 + y * 24 + x], want);
  }
});

Deno.test("preprocess: shorter side to size, then a floored center crop", () => {
  assert.deepEqual(shorterSideSize(40, 24, 8), [13, 8]); // 8 * 40 / 24 = 13.33 -> 13
  assert.deepEqual(shorterSideSize(20, 28, 10), [10, 14]);
  // A 6x3 image whose columns are 0, 40, ..., 200: resize to 4x2 keeps columns distinct, the
  // crop to 2x2 starts at column floor((4 - 2) / 2) = 1.
  const img = grey(Array(3).fill([0, 40, 80, 120, 160, 200]));
  const opts = { size: 2, mean: [0, 0, 0], std: [1, 1, 1], resample: "bilinear" as const };
  const cropped = preprocessImage(img, { ...opts, crop: true });
  const resized = resizeRgb(img, 4, 2, "bilinear");
  const cols = channel0(resized).slice(0, 4);
  assert.deepEqual([...cropped.subarray(0, 2)].map((v) => Math.round(v * 255)), cols.slice(1, 3));
  // crop: false squashes the whole width into 2 columns instead.
  const squashed = preprocessImage(img, { ...opts, crop: false });
  assert.deepEqual(
    [...squashed.subarray(0, 2)].map((v) => Math.round(v * 255)),
    channel0(resizeRgb(img, 2, 2, "bilinear")).slice(0, 2),
  );
});

const model = readOnnxModel(await Deno.readFile(MODEL));
const projW = model.initializers.get("proj_w")!.data as Float32Array;
const projB = model.initializers.get("proj_b")!.data as Float32Array;
const [IN, DIM] = model.initializers.get("proj_w")!.dims;

function reference(path: string, opts: Parameters<typeof preprocessImage>[1]): number[] {
  const x = preprocessImage(decodeImage(Deno.readFileSync(path)), opts);
  return Array.from({ length: DIM }, (_, j) => {
    let s = projB[j];
    for (let i = 0; i < IN; i++) s += x[i] * projW[i * DIM + j];
    return s;
  });
}

Deno.test("onnx image: outputs match the direct computation within 1e-5", async () => {
  const files = ["gradient_40x24.png", "checker_48x32.jpg", "gray_20x28.png", "rgba_33x33.png"];
  const paths = [null, ...files.map((f) => join(IMAGES, f))];
  for (const preset of ["vit", "clip"] as const) {
    const p = IMAGE_PRESETS[preset];
    const out = await encodeImages(MODEL, paths, {
      ...p,
      mean: [...p.mean],
      std: [...p.std],
      batchSize: 3,
      strict: true,
    });
    assert.equal(out.dim, DIM);
    assert.equal(out.skipped, 0);
    assert.deepEqual([...out.mask], [0, 1, 1, 1, 1]);
    assert.ok(out.data.subarray(0, DIM).every((v) => v === 0));
    paths.forEach((path, i) => {
      if (path === null) return;
      const want = reference(path, { size: 32, ...p });
      const got = out.data.subarray(i * DIM, (i + 1) * DIM);
      for (let j = 0; j < DIM; j++) {
        assert.ok(
          Math.abs(got[j] - want[j]) <= 1e-5,
          `${preset} ${path}[${j}]: ${got[j]} vs ${want[j]}`,
        );
      }
    });
  }
});

Deno.test("onnx image: unreadable images are counted skips, or DataErrors when strict", async () => {
  const bad = ["not_an_image.jpg", "missing.png", "truncated.png"].map((f) => join(IMAGES, f));
  const paths = [join(IMAGES, "gradient_40x24.png"), ...bad, null];
  const notes: string[] = [];
  const progress = { start: () => ({ tick() {}, done() {} }), log: (m: string) => notes.push(m) };
  const out = await encodeImages(MODEL, paths, { batchSize: 2, strict: false, progress });
  assert.equal(out.skipped, 3);
  assert.deepEqual([...out.mask], [1, 0, 0, 0, 0]);
  assert.ok(out.data.subarray(DIM).every((v) => v === 0));
  assert.equal(notes.length, 3);
  assert.equal(notes[0], `skipped image ${bad[0]}: not a JPEG or PNG image`);

  await assert.rejects(
    encodeImages(MODEL, paths, { batchSize: 2, strict: true }),
    (e) => e instanceof DataError && e.message === `${bad[0]}: not a JPEG or PNG image`,
  );
  await assert.rejects(
    encodeImages(MODEL, [bad[1]], { batchSize: 2, strict: true }),
    (e) => e instanceof DataError && e.message.startsWith(`${bad[1]}: cannot read image`),
  );
  // Nothing decodable: the width still comes from the model.
  const none = await encodeImages(MODEL, bad, { batchSize: 2, strict: false });
  assert.equal(none.dim, DIM);
  assert.equal(none.data.length, 3 * DIM);
});

Deno.test("onnx image: a size that contradicts the model's input is a UsageError", async () => {
  await assert.rejects(
    encodeImages(MODEL, [join(IMAGES, "gray_20x28.png")], {
      size: 224,
      batchSize: 1,
      strict: true,
    }),
    UsageError,
  );
});

Deno.test("imageRows: [b, d] as is, [b, t, d] first token, [b, c, h, w] spatial mean", () => {
  const two = imageRows({ data: Float32Array.from([1, 2, 3, 4]), dims: [2, 2] });
  assert.deepEqual([...two.rows(1)], [3, 4]);
  const three = imageRows({ data: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), dims: [2, 2, 2] });
  assert.deepEqual([...three.rows(1)], [5, 6]);
  const four = imageRows({ data: Float32Array.from([1, 3, 5, 7, 2, 2, 2, 2]), dims: [1, 2, 2, 2] });
  assert.equal(four.dim, 2);
  assert.deepEqual([...four.rows(0)], [4, 2]);
});

Deno.test("itemImagePaths: <id>.jpg/.jpeg/.png in any case, others null", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "duaf-images-" });
  try {
    for (const f of ["B001.jpg", "B002.PNG", "B003.txt", "B004.jpeg", "B004.png"]) {
      await Deno.writeFile(join(tmp, f), new Uint8Array(1));
    }
    const paths = await itemImagePaths(tmp, ["B001", "B002", "B003", "B004", "B005"]);
    assert.deepEqual(paths, [
      join(tmp, "B001.jpg"),
      join(tmp, "B002.PNG"),
      null,
      join(tmp, "B004.jpeg"),
      null,
    ]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  await assert.rejects(itemImagePaths("/nonexistent-dir", ["a"]), DataError);
});
