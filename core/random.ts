/**
 * Seeded randomness. Every random draw in duaf comes from an Rng passed explicitly, or from the
 * counter-based hashUniform (for kernels that must draw identically on every backend).
 * Nothing in the project calls Math.random.
 */

/** lowbias32 integer hash (Chris Wellons): a cheap, well-mixed 32-bit permutation. */
export function hash32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/**
 * Counter-based uniform in [0, 1) with 24 bits: u(seed, i) = (hash32(i ^ hash32(seed)) >>> 8) / 2^24.
 * Backends implement exactly this formula (wasm, cuda), so dropout masks agree across backends.
 */
export function hashUniform(seed: number, i: number): number {
  return (hash32((i ^ hash32(seed >>> 0)) >>> 0) >>> 8) / 16777216;
}

/**
 * sfc32 generator (Chris Doty-Humphrey's Small Fast Counting RNG): 128-bit state, passes
 * PractRand, and needs only 32-bit integer arithmetic, so it is fast and exact in JavaScript.
 */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  #spareNormal: number | null = null;

  constructor(seed: number) {
    // Seed expansion through hash32 so nearby seeds give unrelated streams.
    this.#a = hash32(seed >>> 0);
    this.#b = hash32((seed ^ 0x9e3779b9) >>> 0);
    this.#c = hash32((seed + 0x6a09e667) >>> 0);
    this.#d = 1;
    for (let i = 0; i < 15; i++) this.nextU32();
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = (this.#b ^ (this.#b >>> 9)) >>> 0;
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1) with 53 bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n). Unbiased (rejection). */
  int(n: number): number {
    if (!(n > 0) || n > 0x100000000) throw new RangeError(`Rng.int: bad bound ${n}`);
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** Standard normal (Box-Muller, caching the second value). */
  normal(): number {
    if (this.#spareNormal !== null) {
      const s = this.#spareNormal;
      this.#spareNormal = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Poisson(lambda): Knuth's product method for small lambda, normal approximation above 30. */
  poisson(lambda: number): number {
    if (!(lambda >= 0)) throw new RangeError(`Rng.poisson: bad rate ${lambda}`);
    if (lambda === 0) return 0;
    if (lambda > 30) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * this.normal()));
    const l = Math.exp(-lambda);
    let k = 0;
    let p = 1;
    do {
      k++;
      p *= this.uniform();
    } while (p > l);
    return k - 1;
  }

  /** Index drawn with probability proportional to weights (non-negative, not all zero). */
  categorical(weights: ArrayLike<number>): number {
    let total = 0;
    for (let i = 0; i < weights.length; i++) total += weights[i];
    if (!(total > 0)) throw new RangeError("Rng.categorical: weights sum to zero");
    let r = this.uniform() * total;
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i];
      if (r < 0) return i;
    }
    return weights.length - 1;
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T extends { length: number; [i: number]: unknown }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }

  /** The full generator state (for checkpoints that resume mid-run). */
  getState(): number[] {
    return [this.#a, this.#b, this.#c, this.#d, this.#spareNormal ?? NaN];
  }

  /** Restores a state captured by getState. */
  setState(state: readonly number[]): void {
    if (state.length !== 5) throw new Error("Rng.setState: expected 5 numbers");
    [this.#a, this.#b, this.#c, this.#d] = state.map((x) => x >>> 0);
    this.#spareNormal = Number.isNaN(state[4]) ? null : state[4];
  }

  /** A new generator whose stream is a deterministic function of this one's next draw. */
  fork(): Rng {
    return new Rng(this.nextU32());
  }
}
