/**
 * Popularity-sampled negatives for the sampled losses (gbce, sampled): items drawn with
 * probability q(i) ∝ (count(i) + 1)^power, where count is the item's occurrences in the training
 * split only (every item before each user's validation and test targets), so no held-out target
 * leaks into training. power = 1 is the unigram distribution of sampled softmax with the logQ
 * correction (Yi et al., RecSys 2019); 0.75 is word2vec's smoothed unigram, which keeps tail items
 * drawn often enough that their -log q corrections stay moderate. The +1 keeps every item
 * drawable (an item seen only as a held-out target still gets a finite log q).
 *
 * Draws use Walker's alias method (Vose's construction): O(1) per draw, two 32-bit draws from the
 * generator passed in.
 */
import type { Rng } from "../random.ts";
import type { InteractionSequences } from "./model.ts";

/** Occurrences of every item (index 0 = padding, always 0) in the training split. */
export function trainingItemCounts(src: InteractionSequences): Float64Array {
  const counts = new Float64Array(src.numItems + 1);
  for (let u = 0; u < src.numUsers; u++) {
    const from = src.seqOffsets[u];
    const n = src.seqOffsets[u + 1] - from;
    // Leave-one-out: the last item is the test target, the second-last the validation target.
    for (let p = 0; p < n - 2; p++) counts[src.seqItems[from + p]]++;
  }
  counts[0] = 0;
  return counts;
}

/** A fixed distribution over items 1..numItems with O(1) seeded draws. */
export class NegativeDistribution {
  /** q(i) for i = 0..numItems (q(0) = 0). */
  readonly prob: Float64Array;
  /** log q(i), float32 as the logits it corrects. */
  readonly logProb: Float32Array;
  readonly #accept: Float64Array;
  readonly #alias: Int32Array;

  /** weights[i] for items 1..weights.length - 1 (weights[0], the padding, is ignored). */
  constructor(weights: ArrayLike<number>) {
    const n = weights.length - 1;
    if (n < 1) throw new RangeError("NegativeDistribution: no items");
    let total = 0;
    for (let i = 1; i <= n; i++) {
      if (!(weights[i] >= 0)) {
        throw new RangeError(`NegativeDistribution: bad weight ${weights[i]}`);
      }
      total += weights[i];
    }
    if (!(total > 0)) throw new RangeError("NegativeDistribution: weights sum to zero");
    this.prob = new Float64Array(n + 1);
    this.logProb = new Float32Array(n + 1);
    for (let i = 1; i <= n; i++) {
      this.prob[i] = weights[i] / total;
      this.logProb[i] = Math.log(this.prob[i]);
    }
    this.logProb[0] = -Infinity;
    // Vose: columns of height n * q; small ones are topped up by one large one (their alias).
    this.#accept = new Float64Array(n);
    this.#alias = new Int32Array(n);
    const scaled = new Float64Array(n);
    const small: number[] = [];
    const large: number[] = [];
    for (let i = 0; i < n; i++) {
      scaled[i] = this.prob[i + 1] * n;
      (scaled[i] < 1 ? small : large).push(i);
    }
    while (small.length && large.length) {
      const s = small.pop()!;
      const l = large.pop()!;
      this.#accept[s] = scaled[s];
      this.#alias[s] = l;
      scaled[l] += scaled[s] - 1;
      (scaled[l] < 1 ? small : large).push(l);
    }
    // What is left is 1 up to rounding.
    for (const i of [...small, ...large]) {
      this.#accept[i] = 1;
      this.#alias[i] = i;
    }
  }

  get numItems(): number {
    return this.#alias.length;
  }

  /** One item in 1..numItems. */
  draw(rng: Rng): number {
    const col = rng.int(this.#alias.length);
    const u = rng.nextU32() / 4294967296;
    return 1 + (u < this.#accept[col] ? col : this.#alias[col]);
  }

  /** q ∝ (count + 1)^power over the training split's item counts. */
  static popularity(counts: ArrayLike<number>, power: number): NegativeDistribution {
    const w = new Float64Array(counts.length);
    for (let i = 1; i < counts.length; i++) w[i] = Math.pow(counts[i] + 1, power);
    return new NegativeDistribution(w);
  }
}

/** The distribution a config asks for, or null for uniform draws. */
export function negativeDistribution(
  cfg: { loss: string; negativeSampling: "uniform" | "popularity"; popularityPower: number },
  src: InteractionSequences,
): NegativeDistribution | null {
  if (cfg.negativeSampling !== "popularity" || (cfg.loss !== "gbce" && cfg.loss !== "sampled")) {
    return null;
  }
  return NegativeDistribution.popularity(trainingItemCounts(src), cfg.popularityPower);
}
