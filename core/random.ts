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
  /**
   * State words a, b, c, d. A typed array rather than four fields: words above 2^30 are not
   * small integers to V8, and a field holding one is re-boxed on every write (a draw cost
   * ~60 ns that way, a few ns this way).
   */
  readonly #s = new Uint32Array(4);
  #spareNormal: number | null = null;

  constructor(seed: number) {
    // Seed expansion through hash32 so nearby seeds give unrelated streams.
    this.#s[0] = hash32(seed >>> 0);
    this.#s[1] = hash32((seed ^ 0x9e3779b9) >>> 0);
    this.#s[2] = hash32((seed + 0x6a09e667) >>> 0);
    this.#s[3] = 1;
    for (let i = 0; i < 15; i++) this.nextU32();
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const s = this.#s;
    const a = s[0], b = s[1], c = s[2], d = s[3];
    const t = (((a + b) >>> 0) + d) >>> 0;
    s[3] = d + 1; // the array stores modulo 2^32
    s[0] = b ^ (b >>> 9);
    s[1] = c + (c << 3);
    s[2] = (((c << 21) | (c >>> 11)) >>> 0) + t;
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

  /**
   * Index drawn with probability proportional to the first `count` weights (non-negative, not
   * all zero; all of them by default).
   */
  categorical(weights: ArrayLike<number>, count = weights.length): number {
    let total = 0;
    for (let i = 0; i < count; i++) total += weights[i];
    if (!(total > 0)) throw new RangeError("Rng.categorical: weights sum to zero");
    let r = this.uniform() * total;
    for (let i = 0; i < count; i++) {
      r -= weights[i];
      if (r < 0) return i;
    }
    return count - 1;
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
    return [...this.#s, this.#spareNormal ?? NaN];
  }

  /** Restores a state captured by getState. */
  setState(state: readonly number[]): void {
    if (state.length !== 5) throw new Error("Rng.setState: expected 5 numbers");
    for (let i = 0; i < 4; i++) this.#s[i] = state[i] >>> 0;
    this.#spareNormal = Number.isNaN(state[4]) ? null : state[4];
  }

  /** A new generator whose stream is a deterministic function of this one's next draw. */
  fork(): Rng {
    return new Rng(this.nextU32());
  }
}
