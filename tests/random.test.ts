/**
 * The seeded generator: its stream is sfc32 exactly (checked against the definition written out
 * plainly), a captured state resumes the same stream, and the derived draws respect their
 * arguments.
 */
import assert from "node:assert/strict";
import { hash32, Rng } from "../core/random.ts";

/** sfc32 as published, seeded as Rng documents: hash32 expansion, d = 1, 15 discarded draws. */
function referenceStream(seed: number, n: number): number[] {
  let a = hash32(seed >>> 0);
  let b = hash32((seed ^ 0x9e3779b9) >>> 0);
  let c = hash32((seed + 0x6a09e667) >>> 0);
  let d = 1;
  const next = () => {
    const t = (a + b + d) % 2 ** 32;
    d = (d + 1) % 2 ** 32;
    a = (b ^ (b >>> 9)) >>> 0;
    b = (c + c * 8) % 2 ** 32;
    c = ((((c << 21) | (c >>> 11)) >>> 0) + t) % 2 ** 32;
    return t;
  };
  for (let i = 0; i < 15; i++) next();
  return Array.from({ length: n }, next);
}

Deno.test("rng: the stream is sfc32 for any seed", () => {
  for (const seed of [0, 1, 7, 2020, 0xffffffff, -5]) {
    const rng = new Rng(seed);
    const got = Array.from({ length: 5000 }, () => rng.nextU32());
    assert.deepEqual(got, referenceStream(seed, 5000), `seed ${seed}`);
  }
});

Deno.test("rng: a captured state resumes the same draws, spare normal included", () => {
  const rng = new Rng(3);
  for (let i = 0; i < 101; i++) rng.normal(); // odd count: a spare normal is cached
  const state = rng.getState();
  const want = Array.from({ length: 50 }, () => [rng.normal(), rng.uniform(), rng.int(97)]);
  const other = new Rng(999);
  other.setState(state);
  assert.deepEqual(
    Array.from({ length: 50 }, () => [other.normal(), other.uniform(), other.int(97)]),
    want,
  );
});

Deno.test("rng: categorical draws only among the first `count` weights", () => {
  const rng = new Rng(11);
  const weights = new Float64Array([1, 2, 3, 1000, 1000]);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) seen.add(rng.categorical(weights, 3));
  assert.deepEqual([...seen].sort(), [0, 1, 2]);
  assert.throws(() => rng.categorical(new Float64Array([0, 0, 5]), 2), /sum to zero/);
});
