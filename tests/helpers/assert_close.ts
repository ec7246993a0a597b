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
