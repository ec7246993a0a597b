/**
 * Writes a dataset artifact directory (docs/dataset-format.md) through writeDirAtomic: readers
 * never see a half-written dataset, and a failed run leaves any previous one in place.
 */
import { join } from "node:path";
import { writeDirAtomic } from "../io/atomic.ts";
import { checkOutputDir, type DirArtifact, type GuardOptions } from "../io/output_guard.ts";
import { encodeSafetensors, type SafeTensor, tensor } from "../io/safetensors.ts";
import { interactionsTable, itemsTable, usersTable } from "./arrow_tables.ts";
import { DATASET_FORMAT, type Manifest } from "./manifest.ts";

export interface ModalityArrays {
  dim: number;
  /** (I+1) x dim, row 0 zero. */
  data: Float32Array;
  /** I+1 entries, mask[0] = 0. */
  mask: Uint8Array;
}

export interface ArtifactParts {
  manifest: Manifest;
  userIds: readonly string[];
  /** Raw id of item i at itemIds[i - 1]. */
  itemIds: readonly string[];
  /** Title of item i at titles[i - 1]. */
  titles: readonly (string | null)[];
  seqOffsets: Int32Array;
  seqItems: Int32Array;
  seqTimes: Float64Array;
  itemCategory: Int32Array;
  categoryNames: readonly string[];
  text: ModalityArrays | null;
  image: ModalityArrays | null;
  /** Layer-wise states (IISAN), written only when present; widths go in manifest.layers. */
  textLayers?: LayerArrays | null;
  imageLayers?: LayerArrays | null;
}

export interface LayerArrays {
  widths: number[];
  /** (I+1) x Σ widths, row 0 zero. */
  data: Float32Array;
}

export const MANIFEST_FILE = "manifest.json";
export const SEQUENCES_FILE = "sequences.safetensors";
export const ITEMS_FILE = "items.safetensors";
export const USERS_TABLE = "users.arrow";
export const ITEMS_TABLE = "items.arrow";
export const INTERACTIONS_TABLE = "interactions.arrow";

/** A dataset directory as the output guard sees it: the files writeArtifact puts there. */
export const DATASET_ARTIFACT: DirArtifact = {
  format: DATASET_FORMAT,
  label: "dataset",
  entries: [
    MANIFEST_FILE,
    SEQUENCES_FILE,
    ITEMS_FILE,
    USERS_TABLE,
    ITEMS_TABLE,
    INTERACTIONS_TABLE,
  ],
};

export async function writeArtifact(
  dir: string,
  output: GuardOptions,
  p: ArtifactParts,
): Promise<void> {
  const numItems = p.itemIds.length;
  const items: Record<string, SafeTensor> = {
    item_category: tensor(p.itemCategory, [numItems + 1]),
  };
  for (const [name, m] of [["text", p.text], ["image", p.image]] as const) {
    if (m === null) continue;
    items[name] = tensor(m.data, [numItems + 1, m.dim]);
    items[`${name}_mask`] = tensor(m.mask, [numItems + 1]);
  }
  for (const [name, l] of [["text", p.textLayers], ["image", p.imageLayers]] as const) {
    if (!l) continue;
    items[`${name}_layers`] = tensor(l.data, [numItems + 1, l.widths.reduce((a, b) => a + b, 0)]);
  }
  const categoryOf = Array.from(
    { length: numItems },
    (_, i) => p.categoryNames[p.itemCategory[i + 1]],
  );
  await writeDirAtomic(dir, async (tmp) => {
    await Deno.writeFile(
      join(tmp, SEQUENCES_FILE),
      encodeSafetensors({
        seq_offsets: tensor(p.seqOffsets, [p.seqOffsets.length]),
        seq_items: tensor(p.seqItems, [p.seqItems.length]),
        seq_times: tensor(p.seqTimes, [p.seqTimes.length]),
      }),
    );
    await Deno.writeFile(join(tmp, ITEMS_FILE), encodeSafetensors(items));
    await Deno.writeFile(join(tmp, USERS_TABLE), usersTable(p.userIds));
    await Deno.writeFile(join(tmp, ITEMS_TABLE), itemsTable(p.itemIds, p.titles, categoryOf));
    await Deno.writeFile(
      join(tmp, INTERACTIONS_TABLE),
      interactionsTable(p.seqOffsets, p.seqItems, p.seqTimes),
    );
    // The manifest goes last: a directory with a manifest is complete.
    await Deno.writeTextFile(join(tmp, MANIFEST_FILE), JSON.stringify(p.manifest, null, 2) + "\n");
  }, () => checkOutputDir(dir, DATASET_ARTIFACT, output));
}
