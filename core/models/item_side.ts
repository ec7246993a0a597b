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
  /** Layer-wise states (preprocess --image-layers / --*-layer-features); absent = none stored. */
  textLayers?: ItemLayers | null;
  imageLayers?: ItemLayers | null;
  /** numItems + 1 category indices (0 .. numCategories-1). */
  itemCategory: Int32Array;
  numCategories: number;
}

/**
 * Frozen per-layer states of one modality's backbone (IISAN): every item's K layer vectors
 * concatenated, layer k at columns offset_k .. offset_k + widths[k].
 */
export interface ItemLayers {
  widths: number[];
  /** (numItems + 1) * Σ widths, row 0 = padding (zero). */
  data: Float32Array;
}
