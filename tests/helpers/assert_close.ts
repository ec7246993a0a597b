/** Elementwise closeness with absolute + relative tolerance and a message naming the index. */
import assert from "node:assert/strict";

export function assertClose(
  name: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  rtol = 1e-4,
  atol = 1e-5,
): void {
  assert.equal(got.length, want.length, `${name}: length`);
  for (let i = 0; i < got.length; i++) {
    const tol = atol + rtol * Math.abs(want[i]);
    assert.ok(
      Math.abs(got[i] - want[i]) <= tol,
      `${name}[${i}]: got ${got[i]}, want ${want[i]}`,
    );
  }
}

/** Each output of `got` bit for bit equal to `want`'s, a message naming the output and index. */
export function assertSameBits(
  got: Float32Array[],
  want: Float32Array[],
  what: string,
  names: readonly string[],
): void {
  assert.equal(got.length, want.length);
  got.forEach((g, i) => {
    const a = new Uint32Array(g.buffer, g.byteOffset, g.length);
    const b = new Uint32Array(want[i].buffer, want[i].byteOffset, want[i].length);
    const at = a.findIndex((v, j) => v !== b[j]);
    assert.equal(at, -1, `${what}: ${names[i]}[${at}] ${g[at]} vs ${want[i][at]}`);
  });
}
