/**
 * cuda vs the reference JsBackend, kernel by kernel (forward and backward pieces), within float32
 * tolerance; plus the properties only a GPU run can show: GEMM through cuBLAS and through the
 * built-in kernel agree, reductions and scatterAdd are bit-for-bit repeatable, the memory pool
 * reuses blocks, and a bad index is reported instead of corrupting memory.
 *
 * Needs a CUDA GPU, a driver and the shim (`deno task build:cuda`); elsewhere every test here is
 * ignored and the reason is printed once.
 */
import assert from "node:assert/strict";
import type { Backend } from "../core/backend.ts";
import { CudaBackend, loadCudaShim } from "../core/backends/cuda.ts";
import { JsBackend } from "../core/backends/js.ts";
import { allParityCases, assertParity, gemmCases } from "./helpers/backend_parity.ts";

const shim = await loadCudaShim();
const cuda = "unavailable" in shim ? null : new CudaBackend(shim);
const ignore = cuda === null;
if (cuda === null) {
  console.log(`cuda parity tests ignored: ${(shim as { unavailable: string }).unavailable}`);
} else {
  console.log(`cuda parity tests on ${cuda.description}`);
}
const ref = new JsBackend();

for (const c of allParityCases()) {
  Deno.test({ name: `cuda parity: ${c.name}`, ignore, fn: () => assertParity(c, cuda!, ref) });
}

Deno.test({
  name: "cuda parity: built-in GEMM kernel (no cuBLAS) matches the reference",
  ignore,
  fn() {
    const be = cuda!;
    const had = be.usingCublas;
    be.setCublas(false);
    try {
      for (const c of gemmCases()) assertParity(c, be, ref);
    } finally {
      if (had) be.setCublas(true);
    }
  },
});

Deno.test({
  name: "cuda: reductions and scatterAdd repeat bit for bit",
  ignore,
  fn() {
    const be = cuda!;
    const n = 300_000, dim = 64, rows = 1000;
    const gh = Float32Array.from({ length: n * dim }, (_, i) => Math.sin(i * 0.37) * 10);
    const ih = Int32Array.from({ length: n }, (_, i) => (i * 7919) % rows);
    const g = be.upload(gh, "f32");
    const idx = be.upload(ih, "i32");
    const once = () => {
      const out = be.alloc(rows * dim, "f32");
      be.fill(out, 0);
      be.scatterAdd(g, idx, out, n, dim);
      const col = be.alloc(dim, "f32");
      be.reduceSum(g, [n, dim], col, [0, 1], dim, false);
      const ss = be.sumSquares(g, n * dim);
      const r = [be.download(out), be.download(col), ss] as const;
      be.free(out);
      be.free(col);
      return r;
    };
    const [a1, b1, s1] = once();
    const [a2, b2, s2] = once();
    assert.deepEqual(a1, a2);
    assert.deepEqual(b1, b2);
    assert.equal(s1, s2);
    be.free(g);
    be.free(idx);
  },
});

Deno.test({
  name: "cuda: the pool hands freed blocks back instead of calling cudaMalloc",
  ignore,
  fn() {
    const be = cuda!;
    const warm = be.alloc(12345, "f32");
    be.free(warm);
    const before = be.poolStats();
    for (let i = 0; i < 100; i++) be.free(be.alloc(12345, "f32"));
    const after = be.poolStats();
    assert.equal(after.mallocs, before.mallocs);
    assert.equal(after.inUse, before.inUse);
  },
});

Deno.test({
  name: "cuda: an out-of-range index is reported at the next sync",
  ignore,
  fn() {
    const be = cuda!;
    const table = be.upload(new Float32Array(40), "f32");
    const idx = be.upload(Int32Array.from([1, 10, 2]), "i32");
    const out = be.alloc(12, "f32");
    be.gather(table, idx, out, 3, 4);
    assert.throws(() => be.sync(), /index out of range in gather/);
    be.sync(); // the flag is cleared once reported
    for (const s of [table, idx, out]) be.free(s);
  },
});

Deno.test({
  name: "cuda rankRows: the reference's ranks, ties and excluded columns included",
  ignore,
  fn() {
    const rows = 70, cols = 5000;
    // Scores on a coarse grid: many ties, which both must count the same way.
    const x = Float32Array.from({ length: rows * cols }, (_, i) => ((i * 7919) % 13) - 6);
    const targets = Int32Array.from({ length: rows }, (_, r) => (r * 131) % cols);
    const offsets = new Int32Array(rows + 1);
    const columns: number[] = [];
    for (let r = 0; r < rows; r++) {
      // The target among its own excluded columns in some rows, as evaluation passes them.
      for (let k = 0; k < r % 40; k++) columns.push((r * 17 + k * 101) % cols);
      if (r % 3 === 0) columns.push(targets[r]);
      offsets[r + 1] = columns.length;
    }
    const ranks = (be: Backend) => {
      const [xs, ts, os, cs] = [
        be.upload(x, "f32"),
        be.upload(targets, "i32"),
        be.upload(offsets, "i32"),
        be.upload(Int32Array.from(columns), "i32"),
      ];
      const out = be.alloc(rows, "i32");
      be.rankRows!(xs, ts, os, cs, out, rows, cols);
      const r = be.download(out);
      for (const st of [xs, ts, os, cs, out]) be.free(st);
      return r;
    };
    assert.deepEqual(ranks(cuda!), ranks(ref));
    const be = cuda!;
    const [xs, ts, os, out] = [
      be.upload(x.subarray(0, cols), "f32"),
      be.upload(Int32Array.from([cols]), "i32"),
      be.upload(Int32Array.from([0, 0]), "i32"),
      be.alloc(1, "i32"),
    ];
    be.rankRows(xs, ts, os, os, out, 1, cols);
    assert.throws(() => be.sync(), /index out of range in rankRows/);
    for (const st of [xs, ts, os, out]) be.free(st);
  },
});

Deno.test({
  name: "cuda: queued uploads arrive intact across laps of the staging ring",
  ignore,
  fn() {
    const be = cuda!;
    // 48 uploads of 1 MiB (the ring holds 32 MiB), each summed by a kernel queued right after it
    // while the host array is overwritten at once: a slot reused before its copy ran, or a copy
    // reading the caller's array late, shows up as a wrong sum. Sums stay below 2^24: exact.
    const n = 256 * 1024;
    const host = new Float32Array(n);
    const total = be.alloc(1, "f32");
    const sums = be.alloc(48, "f32");
    for (let k = 0; k < 48; k++) {
      host.fill(k + 1);
      const s = be.upload(host, "f32");
      be.reduceSum(s, [n], total, [0], 1, false);
      be.copy2d(total, 0, 1, sums, k, 1, 1, 1, false);
      be.free(s);
      host.fill(-7);
    }
    const got = be.download(sums);
    for (let k = 0; k < 48; k++) assert.equal(got[k], (k + 1) * n, `upload ${k}`);
    // One large upload (over a quarter of the ring) takes the synchronous path.
    const big = Float32Array.from({ length: 3_000_000 }, (_, i) => i % 1000);
    const s = be.upload(big, "f32");
    assert.deepEqual(be.download(s), big);
    for (const t of [s, total, sums]) be.free(t);
  },
});

Deno.test({
  name:
    "cuda: scatterAdd sums long runs split across chunks (padding, positions) like the reference",
  ignore,
  fn() {
    const be = cuda!;
    // Half the indices hit row 0 (a run of ~50k, like padding), the rest cycle over 50 rows
    // (like position ids) or hit random rows; dims 64 and 3 (columns not a multiple of a warp).
    for (const dim of [64, 3]) {
      const n = 102_400, rows = 12_101;
      const idx = Int32Array.from(
        { length: n },
        (_, i) => i % 2 === 0 ? 0 : i % 3 === 0 ? i % 50 : (i * 7919) % rows,
      );
      const g = Float32Array.from({ length: n * dim }, (_, i) => Math.sin(i * 0.013));
      const scatter = (b: Backend) => {
        const gs = b.upload(g, "f32"), is = b.upload(idx, "i32"), out = b.alloc(rows * dim, "f32");
        b.fill(out, 0.5);
        b.scatterAdd(gs, is, out, n, dim);
        const r = b.download(out);
        for (const s of [gs, is, out]) b.free(s);
        return r;
      };
      const got = scatter(be), want = scatter(ref);
      let worst = 0;
      for (let i = 0; i < want.length; i++) {
        worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
      }
      assert.ok(worst < 1e-4, `dim ${dim}: worst relative difference ${worst}`);
      assert.deepEqual(scatter(be), got, "repeatable bit for bit");
    }
  },
});
