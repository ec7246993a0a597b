/**
 * The cuda backend's fused calls: attention's core (one kernel each way) against the separate
 * ops on the reference JsBackend, to float32 tolerance (its products sum in their own order, not
 * cuBLAS's) and bit for bit between two runs; the residual add with dropout and layer norm, the
 * lookup with its position add, and the row dropout against cuda's own separate calls, bit for
 * bit. Needs a CUDA GPU and the shim; elsewhere the tests are ignored (cuda_host.test.ts runs
 * these calls through the no-op stand-in).
 */
import assert from "node:assert/strict";
import * as op from "../core/ops/mod.ts";
import type { Backend } from "../core/backend.ts";
import { CudaBackend, loadCudaShim } from "../core/backends/cuda.ts";
import { JsBackend } from "../core/backends/js.ts";
import { Rng } from "../core/random.ts";
import { backward, full, type Tensor, tensor, tidy, withBackend } from "../core/tensor.ts";
import { assertClose, assertSameBits } from "./helpers/assert_close.ts";
import { type Case, CASES, fusedAttentionCalls, OUTPUTS, run } from "./helpers/attention_cases.ts";

const shim = await loadCudaShim();
const cuda = "unavailable" in shim ? null : new CudaBackend(shim);
const ignore = cuda === null;
if (cuda === null) {
  console.log(`cuda fused tests ignored: ${(shim as { unavailable: string }).unavailable}`);
}
const ref = new JsBackend();

const LONGER: Case[] = [
  {
    what: "200 keys (maxLen 200)",
    batch: 3,
    lq: 200,
    lk: 200,
    d: 64,
    heads: 2,
    mask: "causal",
    p: 0.2,
  },
  { what: "one head of 64", batch: 6, lq: 50, lk: 50, d: 64, heads: 1, mask: "padding", p: 0.1 },
  {
    what: "one query at a step over 200 keys",
    batch: 5,
    lq: 1,
    lk: 200,
    d: 64,
    heads: 2,
    mask: "causal",
    p: 0.3,
    steps: true,
  },
];

/** Keys and values of one head past a block's shared memory (232 KB on an H100): declined. */
const DECLINED: Case = {
  what: "keys past shared memory: the separate calls",
  batch: 2,
  lq: 4,
  lk: 1200,
  d: 64,
  heads: 1,
  mask: "none",
  p: 0.2,
  separate: true,
};

Deno.test({
  name: "cuda headAttention: the fused kernels match the separate ops to float32 tolerance",
  ignore,
  fn() {
    for (const c of [...CASES, ...LONGER, DECLINED]) {
      for (const taped of [true, false]) {
        const what = `${c.what}${taped ? "" : ", no tape"}`;
        const got = run(cuda!, c, true, taped);
        const want = run(ref, c, false, taped);
        got.forEach((g, i) => assertClose(`${what}: ${OUTPUTS[i]}`, g, want[i], 1e-3, 1e-4));
        assertSameBits(run(cuda!, c, true, taped), got, `${what}, run again`, OUTPUTS);
      }
    }
  },
});

Deno.test({
  name: "cuda headAttention: one call each way; keys past shared memory take the separate calls",
  ignore,
  fn() {
    assert.equal(fusedAttentionCalls(cuda!, () => run(cuda!, CASES[0], true, true)), 2);
    assert.equal(fusedAttentionCalls(cuda!, () => run(cuda!, LONGER[2], true, true)), 2);
    assert.equal(fusedAttentionCalls(cuda!, () => run(cuda!, DECLINED, true, true)), 0);
  },
});

/** Output and input gradients of f over tensors of these shapes (random data, seeded). */
function outputAndGrads(
  be: Backend,
  shapes: number[][],
  f: (xs: Tensor[]) => Tensor,
): Float32Array[] {
  const r = new Rng(shapes.flat().reduce((a, b) => a * 7 + b, 1));
  const data = shapes.map((s) =>
    Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => r.normal())
  );
  return withBackend(be, () =>
    tidy(() => {
      const xs = data.map((d, i) => tensor(d, shapes[i]));
      for (const x of xs) x.requiresGrad = true;
      const y = f(xs);
      const g = Float32Array.from({ length: y.size }, () => r.normal());
      const out = y.toFloat32();
      backward(y, tensor(g, y.shape), { release: true });
      return [out, ...xs.map((x) => x.grad!.toFloat32())];
    }));
}

Deno.test({
  name: "cuda addLayerNorm, embeddingAdd and dropoutRows: the separate calls' bits",
  ignore,
  fn() {
    const be = cuda!;
    const [rows, cols] = [700, 64];
    const shapes = [[rows, cols], [rows, cols], [cols], [cols]];
    for (const drop of [undefined, { p: 0.3, seed: 12345 }]) {
      const fused = outputAndGrads(
        be,
        shapes,
        ([a, b, g, bt]) => op.addLayerNorm(a, b, g, bt, 1e-12, drop),
      );
      const separate = outputAndGrads(
        be,
        shapes,
        ([a, b, g, bt]) =>
          op.layerNorm(op.add(drop ? op.dropout(a, drop.p, drop.seed, true) : a, b), g, bt, 1e-12),
      );
      const names = ["y", "da", "db", "dgamma", "dbeta"];
      assertSameBits(fused, separate, `addLayerNorm, dropout ${drop?.p ?? 0}`, names);
    }

    const items = 1000;
    const idx = Int32Array.from({ length: rows }, (_, i) => (i * 7919) % items);
    const lookup = (f: (table: Tensor, i: Tensor, b: Tensor) => Tensor) =>
      outputAndGrads(
        be,
        [[items, cols], [rows, cols]],
        ([table, b]) => f(table, tensor(idx, [rows], "i32"), b),
      );
    assertSameBits(
      lookup((t, i, b) => op.embeddingAdd(t, i, b)),
      lookup((t, i, b) => op.add(op.embedding(t, i), b)),
      "embeddingAdd",
      ["y", "dtable", "db"],
    );

    const of = 5000;
    const picked = Int32Array.from({ length: rows }, (_, i) => (i * 613) % of);
    const dropRows = (viaMask: boolean) =>
      outputAndGrads(be, [[rows, cols]], ([x]) => {
        if (!viaMask) return op.dropoutRows(x, 0.25, 777, of, picked);
        const mask = op.dropout(full([of, cols], 1), 0.25, 777, true);
        return op.mul(x, op.embedding(mask, tensor(picked, [rows], "i32")));
      });
    assertSameBits(dropRows(false), dropRows(true), "dropoutRows", ["y", "dx"]);
  },
});
