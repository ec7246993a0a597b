/**
 * The native backend (CBLAS sgemm on the wasm arena): GEMM parity with the wasm backend and the
 * reference JsBackend, pointers that stay valid across memory growth, bounds checks before any
 * native call, and the factory's clean fallback when no CBLAS loads.
 *
 * Needs a CBLAS (CI installs Debian's libopenblas0, .ci/install-deps.sh); without one the tests
 * that need it are ignored and the reason is printed.
 */
import { gemmArgs, type Storage } from "../core/backend.ts";
import assert from "node:assert/strict";
import { openBlas, pointerOf } from "../ffi/blas.ts";
import { JsBackend } from "../core/backends/js.ts";
import { NativeBackend, nativeBackendFactory } from "../core/backends/native.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { allParityCases, assertParity, gemmCases } from "./helpers/backend_parity.ts";

const probe = openBlas();
const ignore = "unavailable" in probe;
if ("unavailable" in probe) console.log(`native backend tests ignored: ${probe.unavailable}`);
else probe.close();

const opened = ignore ? null : await NativeBackend.open({ threads: 1 });
const native = opened && !("unavailable" in opened) ? opened : null;
const wasm = ignore ? null : await WasmBackend.create({ threads: 1 });
const ref = new JsBackend();

for (const c of gemmCases()) {
  Deno.test({
    name: `native parity: ${c.name}`,
    ignore,
    fn() {
      assertParity(c, native!, ref);
      assertParity(c, native!, wasm!);
    },
  });
}

// Every other op is the wasm kernel; one pass over the small cases shows the subclass wiring.
Deno.test({
  name: "native parity: non-GEMM ops run the wasm kernels",
  ignore,
  fn() {
    const small = allParityCases().filter((c) =>
      !c.name.startsWith("gemm") && /unary (exp|gelu)|softmax 37|layerNorm 300|dropout|adam|copy2d/
        .test(c.name)
    );
    assert.ok(small.length >= 6);
    for (const c of small) assertParity(c, native!, wasm!);
  },
});

Deno.test({
  name: "native: GEMM stays correct after the wasm memory grows",
  ignore,
  fn() {
    const be = native!;
    const a = be.upload(Float32Array.from([1, 2, 3, 4]), "f32");
    const b = be.upload(Float32Array.from([5, 6, 7, 8]), "f32");
    const c = be.alloc(4, "f32");
    const args = gemmArgs(a, b, c, 2, 2, 2);
    be.gemm(args);
    assert.deepEqual([...be.download(c)], [19, 22, 43, 50]);
    const before = be.memory.buffer.byteLength;
    const big = be.alloc(64 * 1024 * 1024 / 4, "f32"); // forces at least 64 MiB of growth
    assert.ok(be.memory.buffer.byteLength > before);
    const c2 = be.alloc(4, "f32");
    be.gemm({ ...args, c: c2, alpha: 2 });
    assert.deepEqual([...be.download(c2)], [38, 44, 86, 100]);
    for (const s of [a, b, c, c2, big]) be.free(s);
  },
});

Deno.test({
  name: "native: a GEMM reaching past a storage is refused before the native call",
  ignore,
  fn() {
    const be = native!;
    const a = be.alloc(6, "f32");
    const c = be.alloc(4, "f32");
    const guard = be.upload(new Float32Array(16).fill(7), "f32");
    assert.throws(
      () => be.gemm(gemmArgs(a, a, c, 2, 3, 3)),
      RangeError,
    );
    assert.deepEqual([...be.download(guard)], new Array(16).fill(7));
  },
});

Deno.test({
  name: "blas: sgemm reads and writes a view over a SharedArrayBuffer in place",
  ignore,
  fn() {
    const blas = openBlas();
    assert.ok(!("unavailable" in blas));
    const mem = new WebAssembly.Memory({ initial: 1, maximum: 4, shared: true });
    const f = new Float32Array(mem.buffer);
    f.set([1, 2, 3, 4, 5, 6], 10); // A 2x3 at element 10
    f.set([1, 0, 0, 1, 1, 1], 20); // B 3x2 at element 20
    const base = pointerOf(f);
    const at = (e: number) => Deno.UnsafePointer.offset(base, e * 4);
    blas.sgemm(false, false, 2, 2, 3, 1, at(10), 3, at(20), 2, 0, at(30), 2);
    assert.deepEqual([...f.subarray(30, 34)], [4, 5, 10, 11]);
    // op(A) = A^T with A stored 3x2: the same product through the transpose path.
    f.set([1, 4, 2, 5, 3, 6], 40);
    blas.sgemm(true, false, 2, 2, 3, 1, at(40), 2, at(20), 2, 0, at(50), 2);
    assert.deepEqual([...f.subarray(50, 54)], [4, 5, 10, 11]);
    blas.close();
  },
});

Deno.test("native: the factory falls back cleanly when no CBLAS loads", async () => {
  const blasPath = "/nonexistent/libopenblas.so.0";
  const r = await NativeBackend.open({ blasPath, cpuKernels: "off" });
  assert.ok("unavailable" in r);
  assert.match(r.unavailable, /did not load/);
  assert.ok(!r.unavailable.includes("\n"));
  // With the C kernels it runs only if their GEMM takes every product (AVX-512).
  const c = await NativeBackend.open({ blasPath, threads: 1 });
  if ("unavailable" in c) {
    assert.match(c.unavailable, /did not load.*(C kernels off|do not take every GEMM)/);
  } else {
    assert.ok(c.kernelGemm && c.blas === null);
    assert.doesNotMatch(c.description, /BLAS/);
    c.dispose();
  }
  const none = openBlas({ candidates: ["libduaf-no-such-blas.so"] });
  assert.ok("unavailable" in none);
  assert.match(none.unavailable, /^no CBLAS found .*DUAF_BLAS/);
  const made = await nativeBackendFactory.create();
  if (!("unavailable" in made)) {
    assert.equal(made.name, "native");
    made.dispose?.();
  }
});

Deno.test({
  name: "native: dropout shared by two kernel threads draws one thread's mask",
  ignore,
  async fn() {
    const two = await NativeBackend.open({ threads: 2 });
    if ("unavailable" in two) throw new Error(two.unavailable);
    try {
      const n = 300_001;
      const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i) + 2);
      const run = (be: NativeBackend | WasmBackend) => {
        const xs = be.upload(x, "f32");
        const out = be.alloc(n, "f32");
        const before = be instanceof NativeBackend ? be.threadedCalls : 0;
        be.dropout(xs, out, n, 0.3, 12345);
        const split = be instanceof NativeBackend && be.threadedCalls > before;
        const got = be.download(out);
        be.free(xs);
        be.free(out);
        return { got, split };
      };
      const shared = run(two);
      assert.ok(shared.split, "the worker took no share");
      assert.deepEqual(shared.got, run(native!).got);
      assert.deepEqual(shared.got, run(wasm!).got);
    } finally {
      two.dispose();
    }
  },
});

Deno.test({
  name: "native: a layer norm gradient shared by two kernel threads gives one thread's bits",
  ignore,
  async fn() {
    const two = await NativeBackend.open({ threads: 2 });
    if ("unavailable" in two) throw new Error(two.unavailable);
    try {
      // Rows past the split threshold, not a multiple of four on either side of the split.
      const [rows, cols] = [2051, 64];
      const f = (seed: number, n: number) =>
        Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7.1 + i * 0.37));
      const run = (be: NativeBackend) => {
        const x = be.upload(f(1, rows * cols), "f32");
        const g = be.upload(f(2, rows * cols), "f32");
        const gamma = be.upload(f(3, cols), "f32");
        const [mean, rstd] = [
          be.upload(f(4, rows), "f32"),
          be.upload(f(5, rows).map((v) => 1 + v * v), "f32"),
        ];
        const dx = be.alloc(rows * cols, "f32");
        const [dg, db] = [be.upload(f(6, cols), "f32"), be.upload(f(7, cols), "f32")];
        const before = be.threadedCalls;
        be.layerNormGrad(x, gamma, mean, rstd, g, dx, dg, db, rows, cols);
        const split = be.threadedCalls > before;
        const out = [dx, dg, db].map((s) => be.download(s));
        for (const s of [x, g, gamma, mean, rstd, dx, dg, db]) be.free(s);
        return { out, split };
      };
      const shared = run(two);
      assert.ok(shared.split, "the worker took no share");
      assert.deepEqual(shared.out, run(native!).out);
    } finally {
      two.dispose();
    }
  },
});

Deno.test({
  name: "native: the fused ranking reuses a packed item table kept by the caller",
  // Where CBLAS takes the large products there is no fused ranking (its refusal is checked in
  // cpu_kernels.test.ts, "ranking fused with its scores").
  ignore: ignore || !native?.kernelGemm,
  async fn() {
    const two = await NativeBackend.open({ threads: 2 });
    if ("unavailable" in two) throw new Error(two.unavailable);
    try {
      const [items, d, rows] = [1000, 24, 97];
      const f = (seed: number, n: number) =>
        Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 3.3 + i * 0.71));
      const table = two.upload(f(1, items * d), "f32");
      const exOffsets = two.upload(new Int32Array(rows + 1), "i32");
      const exCols = two.upload(new Int32Array(1), "i32");
      const buffer = two.alloc(two.rankPackFloats(items, d), "f32");
      // Two batches of users against the same table: packed by the first call, reused by the
      // second; each gives the ranks of a call that packs for itself.
      for (const [seed, ready] of [[2, false], [3, true]] as const) {
        const users = two.upload(f(seed, rows * d), "f32");
        const targets = two.upload(
          Int32Array.from({ length: rows }, (_, r) => (r * 37) % items),
          "i32",
        );
        const rank = (pack?: { buffer: Storage; ready: boolean }): Int32Array | Float32Array => {
          const out = two.alloc(rows, "i32");
          const args = {
            users,
            items: table,
            targets,
            exOffsets,
            exCols,
            out,
            rows,
            cols: items,
            d,
          };
          assert.ok(two.rankScores({ ...args, pack }));
          const got = two.download(out);
          two.free(out);
          return got;
        };
        const kept = rank({ buffer, ready });
        assert.deepEqual(kept, rank());
        for (const s of [users, targets]) two.free(s);
      }
      for (const s of [table, exOffsets, exCols, buffer]) two.free(s);
    } finally {
      two.dispose();
    }
  },
});

Deno.test({
  name: "native: gather and gatherAdd split by rows; a bad index in either half throws",
  ignore,
  async fn() {
    const two = await NativeBackend.open({ threads: 2 });
    if ("unavailable" in two) throw new Error(two.unavailable);
    try {
      const [rows, n, dim] = [500, 3001, 64];
      const f = (seed: number, len: number) =>
        Float32Array.from({ length: len }, (_, i) => Math.sin(seed * 3.3 + i * 0.41));
      const index = Int32Array.from({ length: n }, (_, i) => (i * 7919) % rows);
      const run = (be: NativeBackend, idx: Int32Array) => {
        const table = be.upload(f(1, rows * dim), "f32");
        const b = be.upload(f(2, n * dim), "f32");
        const [i, out, sum] = [
          be.upload(idx, "i32"),
          be.alloc(n * dim, "f32"),
          be.alloc(n * dim, "f32"),
        ];
        try {
          const before = be.threadedCalls;
          be.gather(table, i, out, n, dim);
          assert.ok(be.gatherAdd(table, i, b, sum, n, dim));
          return { out: [be.download(out), be.download(sum)], split: be.threadedCalls - before };
        } finally {
          for (const s of [table, b, i, out, sum]) be.free(s);
        }
      };
      const got = run(two, index);
      assert.equal(got.split, 2, "the worker took no share");
      assert.deepEqual(got.out, run(native!, index).out);
      // Out of range in the main thread's rows, then in the worker's: the same error.
      for (const at of [5, n - 3]) {
        const bad = index.slice();
        bad[at] = rows;
        assert.throws(
          () => run(two, bad),
          new RegExp(`index ${rows} at position ${at} outside \\[0, ${rows}\\)`),
        );
      }
    } finally {
      two.dispose();
    }
  },
});
