/**
 * How well missing images are rebuilt: for items whose images were hidden from training, the
 * cosine between the vector inference uses for them and the real image's vector (both in the
 * model's projected visual space), beside two baselines: the mean of the visible items' vectors,
 * and the image of the visible item nearest by text. Means over the hidden items.
 */
import type { Reconstruction } from "../models/model.ts";

function cosine(a: Float32Array, ao: number, b: Float32Array, bo: number, dim: number): number {
  let ab = 0, aa = 0, bb = 0;
  for (let c = 0; c < dim; c++) {
    ab += a[ao + c] * b[bo + c];
    aa += a[ao + c] ** 2;
    bb += b[bo + c] ** 2;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/** Mean cosines to the real vectors, as metric entries ("recon.filled", ...). */
export function reconstructionMetrics(r: Reconstruction): Record<string, number> {
  const n = r.items.length;
  const mean = (f: (i: number) => number) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += f(i);
    return s / n;
  };
  const d = r.dim;
  const out: Record<string, number> = {
    "recon.items": n,
    "recon.filled": mean((i) => cosine(r.filled, i * d, r.real, i * d, d)),
    "recon.meanOfVisible": mean((i) => cosine(r.meanOfVisible, 0, r.real, i * d, d)),
  };
  if (r.textNeighbour) {
    const t = r.textNeighbour;
    out["recon.textNeighbour"] = mean((i) => cosine(t, i * d, r.real, i * d, d));
  }
  return out;
}
