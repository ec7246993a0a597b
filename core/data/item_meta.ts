/** Per-item side information every reader produces, whatever the input format. */

export interface ItemMeta {
  /** Human-readable title (items.arrow); null when the source has none. */
  title: string | null;
  /** Text the featurizer describes the item by; null when there is none. */
  text: string | null;
  /** Category paths, most general first (see categories.ts). */
  categories: string[][];
  /** Image URL or path as written in the source. */
  image: string | null;
}

/** Joins the non-empty parts of an item description with ". ". */
export function joinText(parts: readonly (string | null | undefined)[]): string | null {
  const kept = parts.map((p) => p?.trim() ?? "").filter((p) => p !== "");
  return kept.length > 0 ? kept.join(". ") : null;
}

/** Distinct category names of all paths, in first-seen order. */
export function flatCategories(paths: readonly (readonly string[])[]): string[] {
  return [...new Set(paths.flat().map((c) => c.trim()).filter((c) => c !== ""))];
}
