/** Item-side data a model may use: content features with presence masks, and categories. */
export interface ItemFeatures {
  dim: number;
  /** (numItems + 1) * dim, row 0 = padding. */
  data: Float32Array;
  /** numItems + 1; 1 = present. */
  mask: Uint8Array;
}

export interface ItemSide {
  numItems: number;
  text: ItemFeatures | null;
  image: ItemFeatures | null;
  /** numItems + 1 category indices (0 .. numCategories-1). */
  itemCategory: Int32Array;
  numCategories: number;
}
