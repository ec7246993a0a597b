/**
 * The real discrete Fourier transform along the last axis as matmuls with constant cos / sin
 * matrices, so gradients, every backend and ONNX export come from matmul alone (no FFT kernel).
 * At the sequence lengths recommenders use (L = 50) the O(L^2) product costs less than the
 * linear layers around it.
 *
 * rfft (torch.fft.rfft(x, dim=-1, norm)): K = floor(n/2) + 1 bins,
 *   Re X_k = s Σ_t cos(2πkt/n) x_t,   Im X_k = -s Σ_t sin(2πkt/n) x_t.
 * irfft (torch.fft.irfft(X, n, dim=-1, norm)): the Hermitian extension of X summed back,
 *   x_t = s' Σ_k w_k (Re X_k cos(2πkt/n) - Im X_k sin(2πkt/n)),
 *   w_0 = 1, w_{n/2} = 1 for even n (the Nyquist bin), w_k = 2 otherwise.
 * The imaginary parts of the DC and Nyquist bins drop out (their sin rows are 0), as in torch's
 * c2r transform, and their gradients are 0, as torch's irfft backward gives.
 * Scales s, s' by norm: "backward" 1 and 1/n, "ortho" 1/√n both ways, "forward" 1/n and 1.
 */
import { type Tensor, tensor } from "../tensor.ts";
import { add, mul, sub } from "./elementwise.ts";
import { matmul } from "./matmul.ts";

export type FftNorm = "backward" | "ortho" | "forward";

/** A complex tensor as a pair of real tensors of one shape. */
export interface Complex {
  re: Tensor;
  im: Tensor;
}

/** Bins of a length-n real transform. */
export const rfftBins = (n: number): number => Math.floor(n / 2) + 1;

/** The four constant matrices of a length-n transform, row-major. */
export interface DftMatrices {
  n: number;
  bins: number;
  /** [n, bins]: x @ forwardRe = Re X, x @ forwardIm = Im X. */
  forwardRe: Float32Array;
  forwardIm: Float32Array;
  /** [bins, n]: Re X @ inverseRe + Im X @ inverseIm = x. */
  inverseRe: Float32Array;
  inverseIm: Float32Array;
}

const cache = new Map<string, DftMatrices>();

/** The transform's matrices, built once per (n, norm) in float64 and rounded to float32. */
export function dftMatrices(n: number, norm: FftNorm): DftMatrices {
  const key = `${n}/${norm}`;
  let hit = cache.get(key);
  if (hit) return hit;
  if (!Number.isInteger(n) || n < 1) throw new Error(`dft: length must be a positive integer`);
  const bins = rfftBins(n);
  const fwd = norm === "backward" ? 1 : norm === "ortho" ? 1 / Math.sqrt(n) : 1 / n;
  const inv = norm === "backward" ? 1 / n : norm === "ortho" ? 1 / Math.sqrt(n) : 1;
  const forwardRe = new Float32Array(n * bins);
  const forwardIm = new Float32Array(n * bins);
  const inverseRe = new Float32Array(bins * n);
  const inverseIm = new Float32Array(bins * n);
  for (let k = 0; k < bins; k++) {
    const edge = k === 0 || 2 * k === n; // DC and Nyquist: real bins, sin ≡ 0 exactly
    const w = edge ? 1 : 2;
    for (let t = 0; t < n; t++) {
      // (k t) mod n keeps the angle in [0, 2π): no precision lost to large multiples of 2π.
      const angle = (2 * Math.PI * ((k * t) % n)) / n;
      const c = Math.cos(angle);
      const s = edge ? 0 : Math.sin(angle);
      forwardRe[t * bins + k] = fwd * c;
      forwardIm[t * bins + k] = -fwd * s;
      inverseRe[k * n + t] = inv * w * c;
      inverseIm[k * n + t] = -inv * w * s;
    }
  }
  hit = { n, bins, forwardRe, forwardIm, inverseRe, inverseIm };
  cache.set(key, hit);
  return hit;
}

/** torch.fft.rfft along the last axis of x [..., n] (rank >= 2): [..., n/2 + 1] pairs. */
export function rfft(x: Tensor, norm: FftNorm = "backward"): Complex {
  const n = x.shape[x.rank - 1];
  const m = dftMatrices(n, norm);
  return {
    re: matmul(x, tensor(m.forwardRe, [n, m.bins])),
    im: matmul(x, tensor(m.forwardIm, [n, m.bins])),
  };
}

/** torch.fft.irfft along the last axis with output length n: x [..., n/2 + 1] -> [..., n]. */
export function irfft(x: Complex, n: number, norm: FftNorm = "backward"): Tensor {
  const m = dftMatrices(n, norm);
  const bins = x.re.shape[x.re.rank - 1];
  if (bins !== m.bins || x.im.shape[x.im.rank - 1] !== m.bins) {
    throw new Error(`irfft: ${bins} bins given, a length-${n} signal has ${m.bins}`);
  }
  return add(
    matmul(x.re, tensor(m.inverseRe, [m.bins, n])),
    matmul(x.im, tensor(m.inverseIm, [m.bins, n])),
  );
}

/** Elementwise complex product (broadcasting): (a + ib)(c + id) = (ac - bd) + i(ad + bc). */
export function complexMul(a: Complex, b: Complex): Complex {
  return {
    re: sub(mul(a.re, b.re), mul(a.im, b.im)),
    im: add(mul(a.re, b.im), mul(a.im, b.re)),
  };
}
