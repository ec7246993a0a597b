/**
 * Images hidden from training (duafmat.hideImages), to measure how well MAT-MoE rebuilds them:
 * the fixed choice of hidden items, and the two baselines a rebuilt image is compared with (the
 * mean of the visible images, and the image of the nearest item by text).
 */
import { Rng } from "../../random.ts";
import type { ItemFeatures } from "../item_side.ts";

/**
 * A fixed `fraction` of the items with images, hidden: the returned features have their rows
 * zeroed and masked, as if those images were missing. A constant seed keeps the hidden set the
 * same across runs, so configurations and seeds are compared on the same items.
 */
export function hideImages(
  image: ItemFeatures,
  fraction: number,
): { visible: ItemFeatures; items: Int32Array } {
  const present: number[] = [];
  for (let i = 1; i < image.mask.length; i++) if (image.mask[i]) present.push(i);
  const order = Int32Array.from(present);
  new Rng(0x68696465).shuffle(order);
  const items = order.slice(0, Math.round(fraction * present.length)).sort();
  const data = image.data.slice();
  const mask = image.mask.slice();
  for (const i of items) {
    mask[i] = 0;
    data.fill(0, i * image.dim, (i + 1) * image.dim);
  }
  return { visible: { dim: image.dim, data, mask }, items };
}

/** Mean of the rows of `rows` [n, dim] whose mask is set. */
export function meanRows(rows: Float32Array, mask: Uint8Array, dim: number): Float32Array {
  const out = new Float32Array(dim);
  let count = 0;
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    count++;
    for (let c = 0; c < dim; c++) out[c] += rows[i * dim + c];
  }
  for (let c = 0; c < dim; c++) out[c] /= Math.max(1, count);
  return out;
}

/** For each item of `items`, the item with `visible` set whose text features are most cosine-similar. */
export function nearestByText(
  text: ItemFeatures | null,
  items: Int32Array,
  visible: Uint8Array,
): Int32Array | null {
  if (!text) return null;
  const { dim, data } = text;
  const norm = (i: number) => {
    let s = 0;
    for (let c = 0; c < dim; c++) s += data[i * dim + c] ** 2;
    return Math.sqrt(s) || 1;
  };
  const norms = Float32Array.from({ length: visible.length }, (_, i) => norm(i));
  return items.map((q) => {
    let best = 0;
    let bestSim = -Infinity;
    for (let j = 1; j < visible.length; j++) {
      if (!visible[j] || j === q) continue;
      let s = 0;
      for (let c = 0; c < dim; c++) s += data[q * dim + c] * data[j * dim + c];
      s /= norms[j] * norms[q];
      if (s > bestSim) {
        bestSim = s;
        best = j;
      }
    }
    return best;
  });
}
