// argmaxRows: the first column of each row's largest value, against a plain host loop, with ties,
// NaN, -inf and tails of every width, on the js and wasm kernels and through op.argmaxRows
// (including its download path on a backend without the kernel).
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { tensor, withBackend } from "../core/tensor.ts";

const wasm = await WasmBackend.create({ threads: 1 });

/** The meaning written out: the first strictly largest non-NaN value; column 0 if all NaN. */
function expected(x: Float32Array, rows: number, cols: number): Int32Array {
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = -1;
    for (let c = 0; c < cols; c++) {
      const v = x[r * cols + c];
      if (Number.isNaN(v)) continue;
      if (best < 0 || v > x[r * cols + best]) best = c;
    }
    out[r] = Math.max(best, 0);
  }
  return out;
}

function cases(): { x: Float32Array; rows: number; cols: number }[] {
  const r = new Rng(11);
  const out = [];
  for (const cols of [1, 2, 3, 4, 5, 7, 8, 9, 63, 130]) {
    const rows = 8;
    // Few distinct values, so ties are common; NaN and -inf here and there.
    const x = Float32Array.from({ length: rows * cols }, () => {
      const u = r.uniform();
      return u < 0.05 ? NaN : u < 0.1 ? -Infinity : Math.floor(r.uniform() * 5) - 2;
    });
    // Rows of only NaN, only -inf, NaN then -inf, and -0 before +0.
    x.fill(NaN, 0, cols);
    x.fill(-Infinity, cols, 2 * cols);
    x.fill(-Infinity, 2 * cols, 3 * cols);
    x[2 * cols] = NaN;
    x.fill(0, 3 * cols, 4 * cols);
    x[3 * cols] = -0;
    out.push({ x, rows, cols });
  }
  return out;
}

Deno.test("argmaxRows: the js and wasm kernels equal the written-out meaning", () => {
  for (const { x, rows, cols } of cases()) {
    const want = expected(x, rows, cols);
    for (const be of [new JsBackend(), wasm]) {
      const out = be.alloc(rows, "i32");
      be.argmaxRows!(be.upload(x, "f32"), out, rows, cols);
      assert.deepEqual(be.download(out), want, `${be.name} cols=${cols}`);
    }
  }
});

Deno.test("op.argmaxRows: on the kernel and on downloaded rows alike", () => {
  // A backend without the kernel (as cuda is): the op ranks downloaded rows.
  const noKernel = new JsBackend();
  Object.defineProperty(noKernel, "argmaxRows", { value: undefined });
  for (const { x, rows, cols } of cases()) {
    const want = expected(x, rows, cols);
    for (const be of [wasm, noKernel]) {
      const got = withBackend(be, () => op.argmaxRows(tensor(x, [rows, cols])));
      assert.deepEqual(got, want, `${be.name} cols=${cols}`);
    }
  }
  assert.throws(() => op.argmaxRows(tensor(new Float32Array(0), [3, 0])), /at least one column/);
});
