// Dropout from the counter-based uniform of core/random.ts:
//   u(seed, i) = (hash32(i ^ hash32(seed)) >>> 8) / 2^24, hash32 = lowbias32.
// The TS side turns p into the integer threshold ceil(p * 2^24), so u >= p is compared exactly.

function hash32(x: u32): u32 {
  x ^= x >>> 16;
  x *= 0x7feb352d;
  x ^= x >>> 15;
  x *= 0x846ca68b;
  x ^= x >>> 16;
  return x;
}

// @ts-ignore: decorator
@inline function hash32V(x: v128): v128 {
  x = v128.xor(x, i32x4.shr_u(x, 16));
  x = i32x4.mul(x, i32x4.splat(0x7feb352d));
  x = v128.xor(x, i32x4.shr_u(x, 15));
  x = i32x4.mul(x, i32x4.splat(0x846ca68b));
  return v128.xor(x, i32x4.shr_u(x, 16));
}

/**
 * out[i] = x[i] * ((u(seed, i) * 2^24 >= threshold) ? scale : 0) for i < n: dropout with the mask
 * drawn in place, so it is never stored (x and out may be the same buffer).
 */
export function dropout(x: usize, out: usize, n: i32, threshold: i32, scale: f32, seed: u32): void {
  const hs = i32x4.splat(hash32(seed));
  const thr = i32x4.splat(threshold);
  const vs = f32x4.splat(scale);
  let ix = i32x4(0, 1, 2, 3);
  const four = i32x4.splat(4);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const u = i32x4.shr_u(hash32V(v128.xor(ix, hs)), 8); // < 2^24, so signed compare is exact
    const at = <usize>i << 2;
    v128.store(out + at, f32x4.mul(v128.load(x + at), v128.and(vs, i32x4.ge_s(u, thr))));
    ix = i32x4.add(ix, four);
  }
  const hsc = hash32(seed);
  for (; i < n; i++) {
    const u = hash32(<u32>i ^ hsc) >>> 8;
    const at = <usize>i << 2;
    store<f32>(out + at, load<f32>(x + at) * (<i32>u >= threshold ? scale : 0));
  }
}
