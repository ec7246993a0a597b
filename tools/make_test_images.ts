/**
 * Writes the small test images in fixtures/encoders/images/: PNGs in several color types, a
 * JPEG, and two files that must fail to decode. Pixels are fixed formulas (testImagePixels), so
 * tests can check the decoded values; a rerun writes the same bytes.
 *
 *   deno run -A tools/make_test_images.ts [OUT_DIR]
 */
import { join } from "node:path";
import jpeg from "jpeg-js";
import { encode as encodePng } from "fast-png";
import { writeFileAtomic } from "../core/io/atomic.ts";

/** RGBA pixels of the named test image (row-major, 4 bytes per pixel). */
export function testImagePixels(name: "gradient" | "checker" | "gray" | "rgba" | "palette"): {
  width: number;
  height: number;
  rgba: Uint8Array;
} {
  const dims = {
    gradient: [40, 24],
    checker: [48, 32],
    gray: [20, 28],
    rgba: [33, 33],
    palette: [10, 6],
  }[name];
  const [width, height] = dims;
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 4;
      let px: number[];
      switch (name) {
        case "gradient":
          px = [(x * 6) % 256, (y * 10) % 256, (x * y) % 256, 255];
          break;
        case "checker": {
          const on = ((x >> 3) + (y >> 3)) % 2 === 1;
          px = on ? [220, 40, 40, 255] : [30, 60, 200, 255];
          break;
        }
        case "gray": {
          const g = (x * 12 + y * 5) % 256;
          px = [g, g, g, 255];
          break;
        }
        case "rgba":
          px = [(x * 7) % 256, 128, (y * 7) % 256, (x * 8 + y) % 256];
          break;
        case "palette": {
          const colors = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 250]];
          px = [...colors[(x + y) % 4], 255];
          break;
        }
      }
      rgba.set(px, p);
    }
  }
  return { width, height, rgba };
}

function channels(rgba: Uint8Array, keep: number[]): Uint8Array {
  const n = rgba.length / 4;
  const out = new Uint8Array(n * keep.length);
  for (let p = 0; p < n; p++) keep.forEach((c, j) => (out[p * keep.length + j] = rgba[p * 4 + c]));
  return out;
}

export function testImageFiles(): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const g = testImagePixels("gradient");
  files.set(
    "gradient_40x24.png",
    encodePng({ width: g.width, height: g.height, data: channels(g.rgba, [0, 1, 2]), channels: 3 }),
  );
  const c = testImagePixels("checker");
  files.set(
    "checker_48x32.jpg",
    new Uint8Array(jpeg.encode({ width: c.width, height: c.height, data: c.rgba }, 90).data),
  );
  const gr = testImagePixels("gray");
  files.set(
    "gray_20x28.png",
    encodePng({ width: gr.width, height: gr.height, data: channels(gr.rgba, [0]), channels: 1 }),
  );
  const a = testImagePixels("rgba");
  files.set(
    "rgba_33x33.png",
    encodePng({ width: a.width, height: a.height, data: a.rgba, channels: 4 }),
  );
  const p = testImagePixels("palette");
  const palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 250]];
  const indices = new Uint8Array(p.width * p.height);
  for (let y = 0; y < p.height; y++) {
    for (let x = 0; x < p.width; x++) indices[y * p.width + x] = (x + y) % 4;
  }
  files.set(
    "palette_10x6.png",
    encodePng({ width: p.width, height: p.height, data: indices, channels: 1, depth: 8, palette }),
  );
  files.set("not_an_image.jpg", new TextEncoder().encode("this file is text, not a JPEG\n"));
  const full = files.get("gradient_40x24.png")!;
  files.set("truncated.png", full.slice(0, Math.floor(full.length / 2)));
  return files;
}

if (import.meta.main) {
  const dir = Deno.args[0] ?? "fixtures/encoders/images";
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, bytes] of testImageFiles()) {
    await writeFileAtomic(join(dir, name), bytes);
    console.log(`${join(dir, name)}  ${bytes.length} bytes`);
  }
}
