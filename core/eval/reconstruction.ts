/**
 * How well missing images are rebuilt: for items whose images were hidden from training, the
 * vector inference uses for them against the real image's vector (both in the model's projected
 * visual space), beside two baselines: the mean of the visible items' vectors, and the image of
 * the visible item nearest by text. Means over the hidden items.
 *
 * Plain cosines favour the mean guess: every vector shares the projection's bias, so anything
 * near the centre of the cloud scores well. The centred cosines subtract that centre (the mean
 * of the visible items) first and ask whether a guess points the way the real image departs from
 * the average one; the mean guess itself scores 0 there. The squared-error ratios put each
 * guess's mean squared distance to the real vector over the mean guess's: below 1 beats the mean.
 */
import type { Reconstruction } from "../models/model.ts";

function cosine(
  a: Float32Array,
  ao: number,
  b: Float32Array,
  bo: number,
  dim: number,
  centre?: Float32Array,
): number {
  let ab = 0, aa = 0, bb = 0;
  for (let c = 0; c < dim; c++) {
    const x = a[ao + c] - (centre ? centre[c] : 0);
    const y = b[bo + c] - (centre ? centre[c] : 0);
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

function squaredDistance(a: Float32Array, ao: number, b: Float32Array, bo: number, dim: number) {
  let s = 0;
  for (let c = 0; c < dim; c++) s += (a[ao + c] - b[bo + c]) ** 2;
  return s;
}

/** Mean cosines and error ratios against the real vectors, as metric entries ("recon.filled", ...). */
export function reconstructionMetrics(r: Reconstruction): Record<string, number> {
  const n = r.items.length;
  const mean = (f: (i: number) => number) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += f(i);
    return s / n;
  };
  const d = r.dim;
  const centre = r.meanOfVisible;
  const meanError = mean((i) => squaredDistance(centre, 0, r.real, i * d, d));
  const guesses: [string, Float32Array][] = [["filled", r.filled]];
  if (r.textNeighbour) guesses.push(["textNeighbour", r.textNeighbour]);
  const out: Record<string, number> = {
    "recon.items": n,
    "recon.meanOfVisible": mean((i) => cosine(centre, 0, r.real, i * d, d)),
  };
  for (const [name, g] of guesses) {
    out[`recon.${name}`] = mean((i) => cosine(g, i * d, r.real, i * d, d));
    out[`recon.centred.${name}`] = mean((i) => cosine(g, i * d, r.real, i * d, d, centre));
    out[`recon.errorVsMean.${name}`] = mean((i) => squaredDistance(g, i * d, r.real, i * d, d)) /
      meanError;
  }
  return out;
}
