/** Top-k selection over score rows, skipping excluded columns. */

export interface TopK {
  items: Int32Array;
  scores: Float32Array;
}

/**
 * The k best columns of row `r` of a [rows, cols] score matrix, best first; ties keep the lower
 * column first so results are deterministic. A small sorted buffer beats sorting 12k items.
 */
export function topK(
  scores: Float32Array,
  r: number,
  cols: number,
  k: number,
  exclude: (col: number) => boolean,
): TopK {
  const items = new Int32Array(k).fill(-1);
  const vals = new Float32Array(k).fill(-Infinity);
  let filled = 0;
  const base = r * cols;
  for (let c = 0; c < cols; c++) {
    const v = scores[base + c];
    if (filled === k && v <= vals[k - 1]) continue;
    if (exclude(c)) continue;
    let i = filled < k ? filled++ : k - 1;
    while (i > 0 && vals[i - 1] < v) {
      vals[i] = vals[i - 1];
      items[i] = items[i - 1];
      i--;
    }
    vals[i] = v;
    items[i] = c;
  }
  return { items: items.subarray(0, filled), scores: vals.subarray(0, filled) };
}
