/**
 * Derived image features for the bundled fixtures/ml-100k-mini: the MobileNetV2 encoder's
 * (fixtures/encoders/nsfwjs_mobilenet_v2.onnx, tools/build_image_encoder.ts) 1280-d embeddings
 * of the MovieLens posters in ../shared/data/ml-100k-posters, one row per mini-set item that has
 * a poster, stored as float16 .npy with its ids file (docs/features.md). The posters stay out of
 * the repository (their terms); these features let a fresh clone show the image modality.
 *
 *   deno run -A tools/make_image_features.ts [--posters DIR] [--onnx FILE] [--out-dir DIR]
 *
 * Writes image_mobilenet_v2.npy and image_mobilenet_v2.ids.txt. Deterministic: the same
 * posters and encoder give the same bytes.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { encodeImages, itemImagePaths } from "../core/features/onnx_image.ts";
import { npyMatrixBytes } from "../core/features/npy.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";

const root = join(import.meta.dirname!, "..");
export const MINI_DIR = join(root, "fixtures/ml-100k-mini");
export const MINI_IMAGE_FEATURES = join(MINI_DIR, "image_mobilenet_v2.npy");
export const MOBILENET_ONNX = join(root, "fixtures/encoders/nsfwjs_mobilenet_v2.onnx");

/** The mini set's item ids, in the order of its .item file. */
export async function miniItemIds(dir = MINI_DIR): Promise<string[]> {
  const text = await Deno.readTextFile(join(dir, "ml-100k-mini.item"));
  return text.split("\n").slice(1).filter((l) => l !== "").map((l) => l.split("\t")[0]);
}

/** Encodes the posters of `ids` and returns the .npy and ids-file contents. */
export async function imageFeatureFiles(
  ids: string[],
  posters: string,
  onnx: string,
): Promise<{ npy: Uint8Array; idsText: string; rows: number; dim: number }> {
  const paths = await itemImagePaths(posters, ids);
  const kept = ids.flatMap((id, i) => (paths[i] !== null ? [{ id, path: paths[i]! }] : []));
  const enc = await encodeImages(onnx, kept.map((k) => k.path), { batchSize: 16, strict: true });
  return {
    npy: npyMatrixBytes(kept.length, enc.dim, enc.data, "<f2"),
    idsText: kept.map((k) => k.id).join("\n") + "\n",
    rows: kept.length,
    dim: enc.dim,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      posters: {
        type: "string",
        default: join(root, "../shared/data/ml-100k-posters/images"),
      },
      onnx: { type: "string", default: MOBILENET_ONNX },
      "out-dir": { type: "string", default: MINI_DIR },
    },
  });
  const ids = await miniItemIds();
  const t0 = performance.now();
  const f = await imageFeatureFiles(ids, values.posters!, values.onnx!);
  const out = values["out-dir"]!;
  await writeFileAtomic(join(out, "image_mobilenet_v2.npy"), f.npy);
  await writeFileAtomic(join(out, "image_mobilenet_v2.ids.txt"), f.idsText);
  console.log(JSON.stringify({
    items: ids.length,
    withPoster: f.rows,
    dim: f.dim,
    bytes: f.npy.length,
    seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
  }));
}
