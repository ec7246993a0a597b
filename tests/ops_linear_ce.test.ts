/**
 * op.linearCrossEntropy (core/ops/linear_ce.ts), full CE over an item table in item blocks:
 * loss and both gradients against the plain crossEntropy(matmul(h, table^T)) on every CPU
 * backend with blocks that do and do not divide the table; a finite-difference check; the
 * "auto" block choice; and the wasm arena's peak over a step, which must not grow with the
 * catalog beyond the table's gradient while the plain path's does.
 */
import assert from "node:assert/strict";
import type { Backend } from "../core/backend.ts";
import { JsBackend } from "../core/backends/js.ts";
import { NativeBackend } from "../core/backends/native.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { backward, type Tensor, tensor, tidy, withBackend } from "../core/tensor.ts";
import { gradCheck } from "./helpers/gradcheck.ts";

interface Result {
  loss: number;
  dh: Float32Array;
  dt: Float32Array;
}

function randomProblem(seed: number, rows: number, items: number, d: number) {
  const r = new Rng(seed);
  const h = Float32Array.from({ length: rows * d }, () => r.normal());
  const table = Float32Array.from({ length: items * d }, () => r.normal() * 0.5);
  const targets = Int32Array.from({ length: rows }, () => r.int(items));
  targets[0] = 0; // the padding column is a class like any other, as in the plain path
  targets[rows - 1] = items - 1;
  return { h, table, targets, rows, items, d };
}

/** Loss and gradients of one step on `be`: block 0 = the plain path. */
function step(be: Backend, p: ReturnType<typeof randomProblem>, block: number): Result {
  return withBackend(be, () =>
    tidy(() => {
      const h = tensor(p.h, [p.rows, p.d]);
      const table = tensor(p.table, [p.items, p.d]);
      h.requiresGrad = true;
      table.requiresGrad = true;
      const targets = tensor(p.targets, [p.rows], "i32");
      const loss = block > 0
        ? op.linearCrossEntropy(h, table, targets, block)
        : op.crossEntropy(op.matmul(h, table, false, true), targets);
      backward(loss);
      const out = { loss: loss.item(), dh: h.grad!.toFloat32(), dt: table.grad!.toFloat32() };
      h.grad!.dispose();
      table.grad!.dispose();
      return out;
    }));
}

function assertClose(got: Result, want: Result, what: string, tol = 2e-5): void {
  assert.ok(
    Math.abs(got.loss - want.loss) <= tol * Math.max(1, Math.abs(want.loss)),
    `${what}: loss ${got.loss} vs ${want.loss}`,
  );
  for (const [name, g, w] of [["dh", got.dh, want.dh], ["dtable", got.dt, want.dt]] as const) {
    let scale = 0;
    for (const v of w) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < w.length; i++) {
      if (Math.abs(g[i] - w[i]) > tol * scale + 1e-7) {
        assert.fail(`${what}: ${name}[${i}] ${g[i]} vs ${w[i]} (max |ref| ${scale})`);
      }
    }
  }
}

const js = new JsBackend();
const wasm = await WasmBackend.create({ threads: 1 });
const opened = await NativeBackend.open({ threads: 1 });
const native = "unavailable" in opened ? null : opened;
if ("unavailable" in opened) console.log(`native CE parity skipped: ${opened.unavailable}`);

Deno.test("linearCrossEntropy: loss, dh and dtable equal plain CE for any block size", () => {
  const p = randomProblem(1, 23, 257, 12);
  const plain = step(js, p, 0);
  for (const block of [1, 7, 64, 100, 256, 257, 1000]) {
    assertClose(step(js, p, block), plain, `js block ${block}`);
  }
});

Deno.test("linearCrossEntropy: wasm and native agree with the js reference and their plain CE", () => {
  const p = randomProblem(2, 70, 1001, 32);
  const reference = step(js, p, 0);
  const backends: [string, Backend][] = [["wasm", wasm]];
  if (native) backends.push(["native", native]);
  for (const [name, be] of backends) {
    const plain = step(be, p, 0);
    assertClose(plain, reference, `${name} plain vs js`);
    for (const block of [64, 333, 1001]) {
      const chunked = step(be, p, block);
      assertClose(chunked, reference, `${name} block ${block} vs js`);
      assertClose(chunked, plain, `${name} block ${block} vs its plain CE`);
    }
  }
});

/** Runs `f` with `be` reporting `keeps` as its keepsCrossEntropyExp. */
function keepingExp<T>(be: Backend, keeps: boolean, f: () => T): T {
  const own = Object.getOwnPropertyDescriptor(be, "keepsCrossEntropyExp");
  Object.defineProperty(be, "keepsCrossEntropyExp", { value: keeps, configurable: true });
  try {
    return f();
  } finally {
    if (own) Object.defineProperty(be, "keepsCrossEntropyExp", own);
  }
}

Deno.test("linearCrossEntropy: one block of every item is plain CE on wasm and native", () => {
  // nextItemLoss's plain path: the logits kept from the forward pass and turned into their
  // gradient in place. Recomputing the exponentials in the backward gives the same bits as
  // log-softmax + pick (the same log-sum-exp and g - e^y * sum(g) roundings); keeping them (the
  // default) gives the same loss bits and gradients equal to float32 rounding, but not the same
  // bits: e^(z - max) e^(max - lse) against e^(z - lse).
  for (const [seed, rows, items, d] of [[4, 33, 257, 16], [5, 64, 1031, 24]]) {
    const p = randomProblem(seed, rows, items, d);
    for (const be of native ? [wasm, native] : [wasm]) {
      assert.equal(be.keepsCrossEntropyExp, true);
      const plain = step(be, p, 0);
      const recomputed = keepingExp(be, false, () => step(be, p, items));
      assert.equal(recomputed.loss, plain.loss, `${be.name} loss`);
      assert.deepEqual(recomputed.dh, plain.dh, `${be.name} dh`);
      assert.deepEqual(recomputed.dt, plain.dt, `${be.name} dtable`);
      const kept = step(be, p, items);
      assert.equal(kept.loss, plain.loss, `${be.name} loss, kept exponentials`);
      assertClose(kept, plain, `${be.name}, kept exponentials`, 1e-6);
      assert.ok(kept.dh.some((v, i) => v !== plain.dh[i]), "the kept path ran");
    }
  }
});

Deno.test("linearCrossEntropy: kept exponentials on the js reference, and on a backend without them", () => {
  const p = randomProblem(6, 20, 130, 8);
  const plain = step(js, p, 0);
  const kept = step(js, p, 130);
  assert.equal(js.keepsCrossEntropyExp, true);
  assertClose(kept, plain, "js, kept exponentials", 1e-6);
  // A backend that cannot keep them (cuda) is never handed a shift buffer.
  const calls: number[] = [];
  const fwd = wasm.crossEntropyBlock.bind(wasm);
  wasm.crossEntropyBlock = (...a) => (calls.push(a[8] === undefined ? 0 : 1), fwd(...a));
  try {
    keepingExp(wasm, false, () => step(wasm, p, 130));
    step(wasm, p, 130);
  } finally {
    wasm.crossEntropyBlock = fwd;
  }
  assert.deepEqual(calls, [0, 1]);
});

Deno.test("linearCrossEntropy: two wasm threads give the same bits as one", async () => {
  const two = await WasmBackend.create({ threads: 2 });
  try {
    // Rows x block above the row kernels' threading threshold (65536 elements); blocks, and one
    // block of every item (the kept exponentials, split between the threads).
    const p = randomProblem(3, 300, 700, 16);
    for (const block of [300, 700]) {
      const a = step(wasm, p, block);
      const b = step(two, p, block);
      assert.ok(two.threadedCalls > 0);
      assert.equal(a.loss, b.loss);
      assert.deepEqual(a.dh, b.dh);
      assert.deepEqual(a.dt, b.dt);
    }
  } finally {
    two.dispose();
  }
});

Deno.test("gradcheck: linearCrossEntropy (rows and mean) with blocks that do not divide the table", () => {
  const targets = [0, 6, 3, 9];
  for (const block of [1, 4, 10]) {
    gradCheck(
      `linear_cross_entropy block ${block}`,
      [{ shape: [4, 5] }, { shape: [10, 5] }],
      ([h, t]) => op.linearCrossEntropy(h, t, tensor(targets, [4], "i32"), block),
    );
  }
  gradCheck(
    "linear_cross_entropy rows",
    [{ shape: [4, 3] }, { shape: [7, 3] }],
    ([h, t]) => op.linearCrossEntropyRows(h, t, tensor([1, 6, 0, 2], [4], "i32"), 3),
  );
});

Deno.test("ceBlockItems: plain below the auto limit, blocks bounded by the scratch budget", () => {
  assert.equal(op.ceBlockItems(2048, 12102, "auto"), 0); // Beauty: 99 MB of logits stays plain
  const big = op.ceBlockItems(2048, 169_000, "auto");
  assert.ok(big > 0 && big % 64 === 0);
  assert.ok(2048 * big * 4 <= op.CE_BLOCK_BYTES);
  assert.equal(op.ceBlockItems(1 << 20, 169_000, "auto"), 64); // never below one GEMM tile
  assert.equal(op.ceBlockItems(10, 100, 0), 0);
  assert.equal(op.ceBlockItems(10, 100, 30), 30);
  assert.equal(op.ceBlockItems(10, 100, 500), 100);
});

/** Peak arena bytes above what was live before one forward + backward on `table` [items, d]. */
function stepPeak(items: number, block: number): { peak: number; tableBytes: number } {
  const rows = 64, d = 16;
  const p = randomProblem(4, rows, items, d);
  return withBackend(wasm, () =>
    tidy(() => {
      const h = tensor(p.h, [rows, d]);
      const table = tensor(p.table, [items, d]);
      h.requiresGrad = true;
      table.requiresGrad = true;
      const targets = tensor(p.targets, [rows], "i32");
      wasm.resetPeak();
      const before = wasm.memoryStats().inUse;
      tidy(() => {
        const loss = block > 0
          ? op.linearCrossEntropy(h, table, targets, block)
          : op.crossEntropy(op.matmul(h, table, false, true), targets);
        backward(loss, undefined, { release: true });
      });
      const peak = wasm.memoryStats().peak - before;
      h.grad!.dispose();
      table.grad!.dispose();
      return { peak, tableBytes: items * d * 4 };
    }));
}

Deno.test("linearCrossEntropy: the arena's peak over a step grows with the catalog only by the table's gradient", () => {
  const block = 256;
  const scratch = 64 * block * 4;
  // Budget: the table's gradient, one block's scratch, and 64 KiB for [rows] vectors and rounding.
  const budget = (tableBytes: number) => tableBytes + scratch + 65536;
  const small = stepPeak(20_000, block);
  const large = stepPeak(80_000, block);
  for (const s of [small, large]) {
    assert.ok(s.peak <= budget(s.tableBytes), `chunked peak ${s.peak} > ${budget(s.tableBytes)}`);
  }
  assert.ok(
    Math.abs((large.peak - large.tableBytes) - (small.peak - small.tableBytes)) <= 4096,
    `peak beyond the table's gradient: ${small.peak - small.tableBytes} at 20k items, ${
      large.peak - large.tableBytes
    } at 80k`,
  );
  // The plain path on the same step needs its [64 x 80k] logits (20 MB) several times over.
  const plain = stepPeak(80_000, 0);
  assert.ok(plain.peak > 2 * budget(large.tableBytes), `plain peak ${plain.peak}`);
});

Deno.test("linearCrossEntropy: no tape without gradients, shape and target checks", () => {
  tidy(() => {
    const h = tensor([1, 2, 3, 4], [2, 2]);
    const t = tensor([1, 0, 0, 1, 1, 1], [3, 2]);
    const loss: Tensor = op.linearCrossEntropy(h, t, tensor([0, 2], [2], "i32"), 2);
    assert.equal(loss.requiresGrad, false);
    const plain = op.crossEntropy(op.matmul(h, t, false, true), tensor([0, 2], [2], "i32"));
    assert.ok(Math.abs(loss.item() - plain.item()) < 1e-6);
    assert.throws(() =>
      op.linearCrossEntropy(h, tensor([1, 2, 3], [1, 3]), tensor([0, 0], [2], "i32"))
    );
    assert.throws(() => op.linearCrossEntropy(h, t, tensor([0], [1], "i32")));
  });
});
