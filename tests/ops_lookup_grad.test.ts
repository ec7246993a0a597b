// A table looked up twice: the lookup whose gradient comes second, of few rows against a large
// table, is summed row by row in a compact buffer and added into the first one's dense gradient,
// with the bits of two dense gradients added (each row summed from zero in index order, then the
// two sums added), repeated rows included, on the js and wasm backends.
import assert from "node:assert/strict";
import type { Backend } from "../core/backend.ts";
import { JsBackend } from "../core/backends/js.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { backward, tensor, tidy, withBackend } from "../core/tensor.ts";

const ROWS = 200, DIM = 5;

/** Row sums of g's rows at idx, each from zero in index order, in float32: a dense lookup grad. */
function denseGrad(idx: Int32Array, g: Float32Array): Float32Array {
  const out = new Float32Array(ROWS * DIM);
  idx.forEach((r, i) => {
    for (let c = 0; c < DIM; c++) out[r * DIM + c] = Math.fround(out[r * DIM + c] + g[i * DIM + c]);
  });
  return out;
}

function check(be: Backend) {
  const rng = new Rng(4);
  const normal = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  // 90 indices over most rows and 40 over 12 rows: each few enough for the compact sum.
  const idx1 = Int32Array.from({ length: 90 }, (_, i) => (i * 37) % ROWS);
  const idx2 = Int32Array.from({ length: 40 }, (_, i) => (i * 7) % 12 + 3);
  const [w, g1, g2] = [normal(ROWS * DIM), normal(90 * DIM), normal(40 * DIM)];
  const scattered: number[] = [];
  const scatterAdd = be.scatterAdd.bind(be);
  be.scatterAdd = (g, idx, out, n, dim) => {
    scattered.push(out.size);
    scatterAdd(g, idx, out, n, dim);
  };
  try {
    const grad = withBackend(be, () =>
      tidy(() => {
        const table = tensor(w, [ROWS, DIM]);
        table.requiresGrad = true;
        const e1 = op.embedding(table, tensor(idx1, [90], "i32"));
        const e2 = op.embedding(table, tensor(idx2, [40], "i32"));
        const y = op.add(
          op.sum(op.mul(e1, tensor(g1, [90, DIM]))),
          op.sum(op.mul(e2, tensor(g2, [40, DIM]))),
        );
        backward(y);
        return table.grad!.toFloat32();
      }));
    const [d1, d2] = [denseGrad(idx1, g1), denseGrad(idx2, g2)];
    const want = d1.map((v, i) => Math.fround(v + d2[i]));
    assert.deepEqual(grad, want, be.name);
    assert.ok(scattered.some((n) => n < ROWS * DIM), `${be.name}: no compact scatter`);
  } finally {
    delete (be as { scatterAdd?: unknown }).scatterAdd;
  }
}

Deno.test("embedding's gradient: a small lookup adds its rows into the table's sum, same bits", async () => {
  check(new JsBackend());
  const wasm = await WasmBackend.create({ threads: 1 });
  try {
    check(wasm);
  } finally {
    wasm.dispose();
  }
});
