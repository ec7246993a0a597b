// Gradients that fan in accumulate in place: a tied table used by an embedding lookup and an
// output projection gets the sum of both, without a third table-sized buffer for it.
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { backward, tensor, tidy, withBackend } from "../core/tensor.ts";

const N = 4096, D = 64, ROWS = 8;
const TABLE_BYTES = N * D * 4;

function tiedStep(be: WasmBackend | JsBackend) {
  const r = new Rng(1);
  const t0 = Float32Array.from({ length: N * D }, () => 0.1 * r.normal());
  const idx = Int32Array.from({ length: ROWS }, () => r.int(N));
  const h0 = Float32Array.from({ length: ROWS * D }, () => r.normal());
  return withBackend(be, () =>
    tidy(() => {
      const table = tensor(t0, [N, D]);
      table.requiresGrad = true;
      const h = tensor(h0, [ROWS, D]);
      // The lookup's gradient and the projection's are both [N, D].
      const looked = op.embedding(table, tensor(idx, [ROWS], "i32"));
      const logits = op.matmul(op.add(h, looked), table, false, true);
      const loss = op.mean(op.square(logits));
      if (be instanceof WasmBackend) be.resetPeak();
      const before = be instanceof WasmBackend ? be.memoryStats().inUse : 0;
      backward(loss, undefined, { release: true });
      const peak = be instanceof WasmBackend ? be.memoryStats().peak - before : 0;
      return { grad: table.grad!.toFloat32(), peak };
    }));
}

Deno.test("fanned-in gradients: the same sum, and no third table-sized buffer", async () => {
  const wasm = await WasmBackend.create({ threads: 1 });
  try {
    const a = tiedStep(wasm);
    const ref = tiedStep(new JsBackend());
    for (let i = 0; i < a.grad.length; i += 97) {
      assert.ok(Math.abs(a.grad[i] - ref.grad[i]) <= 1e-5 * (1 + Math.abs(ref.grad[i])), `${i}`);
    }
    // Live at the worst moment: the accumulated gradient and one incoming contribution (plus
    // small [ROWS, N] activations); a new buffer for the sum would make it three tables.
    assert.ok(a.peak < 2.5 * TABLE_BYTES, `backward peak ${a.peak} bytes`);
  } finally {
    wasm.dispose();
  }
});

// An input read by several products (a residual stream feeding the query, key and value
// projections) gets each product's gradient added in the product's store, with the bits of
// adding each product's output afterwards (the same backend with Backend.gemmSliceK hidden).
Deno.test("fanned-in gradients: a linear's input gradient summed in its product's store", async () => {
  const wasm = await WasmBackend.create({ threads: 1 });
  try {
    const r = new Rng(7);
    const rows = 37, d = 24;
    const x0 = Float32Array.from({ length: rows * d }, () => r.normal());
    const ws = [0, 1, 2].map(() => Float32Array.from({ length: d * d }, () => 0.2 * r.normal()));
    const gs = [0, 1, 2].map(() => Float32Array.from({ length: rows * d }, () => r.normal()));
    const run = () =>
      withBackend(wasm, () =>
        tidy(() => {
          const x = tensor(x0, [rows, d]);
          x.requiresGrad = true;
          const b = tensor(new Float32Array(d), [d]);
          // y = x + sum_i linear_i(x) * g_i: x's gradient is 1 + sum_i g_i w_i.
          let y = x;
          for (let i = 0; i < 3; i++) {
            const branch = op.linear(x, tensor(ws[i], [d, d]), b);
            y = op.add(y, op.mul(branch, tensor(gs[i], [rows, d])));
          }
          const axpy = wasm.axpy.bind(wasm);
          let sums = 0;
          wasm.axpy = (...args) => (sums++, axpy(...args));
          backward(op.sum(y), undefined, { release: true });
          wasm.axpy = axpy;
          return { grad: x.grad!.toFloat32(), sums };
        }));
    const inStore = run();
    Object.defineProperty(wasm, "gemmSliceK", { value: undefined, configurable: true });
    const separate = run();
    assert.deepEqual(inStore.grad, separate.grad);
    // Separately, the later products' gradients are added by axpy; in the store, none is.
    assert.ok(separate.sums >= 2, `${separate.sums} separate sums`);
    assert.ok(inStore.sums < separate.sums, `${inStore.sums} sums in the products' stores`);
  } finally {
    wasm.dispose();
  }
});
