/**
 * Loads a dataset artifact for training, evaluation and serving: the manifest (validated) and the
 * safetensors arrays. Raw ids come from the Arrow tables on demand.
 */
import { join } from "node:path";
import { DataError, UsageError } from "../errors.ts";
import { getTensor, readSafetensors } from "../io/safetensors.ts";
import { readStringColumn } from "./arrow_tables.ts";
import { ITEMS_FILE, ITEMS_TABLE, MANIFEST_FILE, SEQUENCES_FILE, USERS_TABLE } from "./artifact.ts";
import type { ItemLayers } from "../models/item_side.ts";
import { DATASET_FORMAT, DATASET_VERSION, type Manifest, ManifestSchema } from "./manifest.ts";

export interface Modality {
  dim: number;
  /** (numItems + 1) * dim, row 0 is padding (zero). */
  data: Float32Array;
  /** numItems + 1 entries, 1 = present. */
  mask: Uint8Array;
  source: string;
}

export interface Dataset {
  dir: string;
  manifest: Manifest;
  numUsers: number;
  /** I, excluding the padding index 0. */
  numItems: number;
  numCategories: number;
  /** numUsers + 1 offsets into seqItems / seqTimes. */
  seqOffsets: Int32Array;
  /** Item indices 1..I, each user's chronological sequence in turn. */
  seqItems: Int32Array;
  /** Unix seconds, aligned with seqItems. */
  seqTimes: Float64Array;
  /** numItems + 1 category indices (row 0 = padding = 0). */
  itemCategory: Int32Array;
  text: Modality | null;
  image: Modality | null;
  /** Layer-wise states (IISAN); null unless preprocess stored them. */
  textLayers: ItemLayers | null;
  imageLayers: ItemLayers | null;
  /** Raw user id by user index (read from users.arrow on first call). */
  userIds(): string[];
  /** Raw item id by item index, length numItems + 1; entry 0 (padding) is "". */
  itemIds(): string[];
}

/** A dataset's manifest, or the one-line error loadDataset gives for a folder that is not one. */
export async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      throw new UsageError(
        `${dir} is not a duaf dataset (no ${MANIFEST_FILE}; run duaf preprocess)`,
      );
    }
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new DataError(path, null, null, "not valid JSON");
  }
  const r = raw as { format?: unknown; version?: unknown };
  if (r?.format !== DATASET_FORMAT) {
    throw new UsageError(
      `${dir} is not a duaf dataset (${MANIFEST_FILE} format is not "${DATASET_FORMAT}")`,
    );
  }
  if (r.version !== DATASET_VERSION) {
    throw new UsageError(
      `${dir}: dataset format version ${r.version} is not supported (this duaf reads ` +
        `version ${DATASET_VERSION}); preprocess the data again`,
    );
  }
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DataError(path, null, issue.path.join(".") || null, issue.message);
  }
  return parsed.data;
}

export async function loadDataset(dir: string): Promise<Dataset> {
  const manifest = await readManifest(dir);
  const { users, items, interactions, categories } = manifest.counts;
  const seqPath = join(dir, SEQUENCES_FILE);
  const itemPath = join(dir, ITEMS_FILE);
  const seq = await readSafetensors(seqPath);
  const it = await readSafetensors(itemPath);
  const want = (path: string, name: string, shape: number[], actual: number[]) => {
    if (shape.length !== actual.length || shape.some((d, k) => d !== actual[k])) {
      throw new DataError(path, null, name, `shape [${actual}], manifest counts imply [${shape}]`);
    }
  };
  const offsets = getTensor(seq, "seq_offsets", "I32", seqPath);
  const seqItems = getTensor(seq, "seq_items", "I32", seqPath);
  const seqTimes = getTensor(seq, "seq_times", "F64", seqPath);
  want(seqPath, "seq_offsets", [users + 1], offsets.shape);
  want(seqPath, "seq_items", [interactions], seqItems.shape);
  want(seqPath, "seq_times", [interactions], seqTimes.shape);
  if (offsets.data[0] !== 0 || offsets.data[users] !== interactions) {
    throw new DataError(
      seqPath,
      null,
      "seq_offsets",
      "must start at 0 and end at the interaction count",
    );
  }
  const itemCategory = getTensor(it, "item_category", "I32", itemPath);
  want(itemPath, "item_category", [items + 1], itemCategory.shape);

  const modality = (name: "text" | "image"): Modality | null => {
    const info = manifest.modalities[name];
    if (!info) return null;
    const data = getTensor(it, name, "F32", itemPath);
    const mask = getTensor(it, `${name}_mask`, "U8", itemPath);
    want(itemPath, name, [items + 1, info.dim], data.shape);
    want(itemPath, `${name}_mask`, [items + 1], mask.shape);
    return { dim: info.dim, data: data.data, mask: mask.data, source: info.source };
  };

  const layers = (name: "text" | "image"): ItemLayers | null => {
    const info = manifest.layers?.[name];
    if (!info) return null;
    const data = getTensor(it, `${name}_layers`, "F32", itemPath);
    const width = info.widths.reduce((a, b) => a + b, 0);
    want(itemPath, `${name}_layers`, [items + 1, width], data.shape);
    return { widths: info.widths, data: data.data };
  };

  let userIds: string[] | null = null;
  let itemIds: string[] | null = null;
  return {
    dir,
    manifest,
    numUsers: users,
    numItems: items,
    numCategories: categories,
    seqOffsets: offsets.data,
    seqItems: seqItems.data,
    seqTimes: seqTimes.data,
    itemCategory: itemCategory.data,
    text: modality("text"),
    image: modality("image"),
    textLayers: layers("text"),
    imageLayers: layers("image"),
    userIds: () => (userIds ??= readStringColumn(join(dir, USERS_TABLE), "user_id", users)),
    itemIds:
      () => (itemIds ??= ["", ...readStringColumn(join(dir, ITEMS_TABLE), "item_id", items)]),
  };
}

/** User u's chronological item indices and timestamps (views, no copy). */
export function userSequence(
  ds: Pick<Dataset, "seqOffsets" | "seqItems" | "seqTimes">,
  u: number,
): { items: Int32Array; times: Float64Array } {
  const lo = ds.seqOffsets[u], hi = ds.seqOffsets[u + 1];
  return { items: ds.seqItems.subarray(lo, hi), times: ds.seqTimes.subarray(lo, hi) };
}
