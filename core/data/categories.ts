/**
 * Category vocabulary for MoE routing. Items carry category paths (Amazon: [["Beauty", "Makeup",
 * "Eyes"], ...]; a flat genre list is one single-element path per genre). One label per item:
 *   leaf  - the last element of the first path (the most specific category)
 *   first - the first element of the first path
 *   set   - every distinct category of every path, sorted and joined with "|"
 * Index 0 is always "unknown": items without categories and the padding row point at it.
 */

export type CategoryMode = "leaf" | "first" | "set";

export const UNKNOWN_CATEGORY = "unknown";

export function categoryLabel(paths: readonly (readonly string[])[], mode: CategoryMode): string {
  const clean = paths.map((p) => p.map((c) => c.trim()).filter((c) => c !== "")).filter((p) =>
    p.length > 0
  );
  if (clean.length === 0) return UNKNOWN_CATEGORY;
  if (mode === "leaf") return clean[0][clean[0].length - 1];
  if (mode === "first") return clean[0][0];
  return [...new Set(clean.flat())].sort().join("|");
}

export interface CategoryVocab {
  /** names[c] is category c; names[0] is "unknown". */
  names: string[];
  /** itemCategory[i] for items 1..I; row 0 (padding) is 0. */
  itemCategory: Int32Array;
}

/**
 * Builds the vocabulary from per-item paths (index 0 unused). Categories are numbered in order
 * of first use by item index, so the result depends only on the data and the mode.
 */
export function buildCategoryVocab(
  itemPaths: readonly (readonly (readonly string[])[] | null)[],
  mode: CategoryMode,
): CategoryVocab {
  const names = [UNKNOWN_CATEGORY];
  const index = new Map([[UNKNOWN_CATEGORY, 0]]);
  const itemCategory = new Int32Array(itemPaths.length);
  for (let i = 1; i < itemPaths.length; i++) {
    const label = categoryLabel(itemPaths[i] ?? [], mode);
    let c = index.get(label);
    if (c === undefined) {
      c = names.length;
      index.set(label, c);
      names.push(label);
    }
    itemCategory[i] = c;
  }
  return { names, itemCategory };
}
