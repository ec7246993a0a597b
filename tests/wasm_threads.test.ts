/**
 * Two kernel threads must give the same bits as one: every split (batch, rows, columns,
 * elements, softmax rows) leaves each output element to exactly one thread, computed in the
 * same order as the single-threaded kernel would.
 */
import { gemmArgs } from "../core/backend.ts";
import assert from "node:assert/strict";
import type { Backend } from "../core/backend.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { kernelUrl } from "../core/backends/wasm/kernels.ts";
import {
  POLL_MS,
  PollWindow,
  RECHECK_MS,
  runnableThreads,
  SHORT_POLL_MS,
} from "../core/backends/wasm/thread.ts";
import { Rng } from "../core/random.ts";
import { assertSameBits } from "./helpers/assert_close.ts";
import { tensor } from "../core/tensor.ts";
import { activateBackend } from "../core/train/run.ts";

function randn(seed: number, n: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

interface Shape {
  label: string;
  batch: number;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  beta: 0 | 1;
}

// Each is above the two-thread threshold and exercises one way of splitting the work.
const SHAPES: Shape[] = [
  { label: "batch split", batch: 8, m: 50, n: 50, k: 64, transA: false, transB: true, beta: 0 },
  {
    label: "two-item batch split",
    batch: 2,
    m: 40,
    n: 301,
    k: 100,
    transA: true,
    transB: false,
    beta: 1,
  },
  { label: "row split", batch: 1, m: 301, n: 70, k: 64, transA: false, transB: false, beta: 0 },
  { label: "row split, A^T", batch: 1, m: 299, n: 33, k: 130, transA: true, transB: true, beta: 1 },
  { label: "column split", batch: 1, m: 5, n: 1100, k: 200, transA: false, transB: false, beta: 0 },
];

function gemmOnce(be: Backend, s: Shape): Float32Array {
  const a = be.upload(randn(1, s.batch * s.m * s.k), "f32");
  const b = be.upload(randn(2, s.batch * s.k * s.n), "f32");
  const c = be.upload(randn(3, s.batch * s.m * s.n), "f32");
  be.gemm(
    gemmArgs(a, b, c, s.m, s.n, s.k, {
      transA: s.transA,
      transB: s.transB,
      batch: s.batch,
      strideA: s.m * s.k,
      strideB: s.k * s.n,
      strideC: s.m * s.n,
      alpha: 0.75,
      beta: s.beta,
    }),
  );
  return be.download(c) as Float32Array;
}

function rowKernels(be: Backend): Float32Array[] {
  const n = 300 * 257;
  const x = be.upload(randn(4, n), "f32");
  const g = be.upload(randn(5, n), "f32");
  const y = be.alloc(n, "f32");
  const d = be.alloc(n, "f32");
  const out: Float32Array[] = [];
  be.unary("gelu", x, y, n, 0);
  out.push(be.download(y) as Float32Array);
  be.unaryGrad("gelu", x, y, g, d, n, 0);
  out.push(be.download(d) as Float32Array);
  be.softmax(x, y, 300, 257, false);
  out.push(be.download(y) as Float32Array);
  be.softmaxGrad(y, g, d, 300, 257, false);
  out.push(be.download(d) as Float32Array);
  be.softmax(x, y, 300, 257, true);
  be.softmaxGrad(y, g, d, 300, 257, true);
  out.push(be.download(d) as Float32Array);
  const gamma = be.upload(randn(6, 257), "f32");
  const beta = be.upload(randn(7, 257), "f32");
  const mean = be.alloc(300, "f32");
  const rstd = be.alloc(300, "f32");
  be.layerNorm(x, gamma, beta, y, mean, rstd, 300, 257, 1e-5);
  for (const s of [y, mean, rstd]) out.push(be.download(s) as Float32Array);
  // DuAF fusion over 3 modality rows of 257 (x, g and y as modalities, d as time and query).
  const e = [x, g, y];
  const omega = be.alloc(300 * 3, "f32");
  const keys = be.alloc(3 * n, "f32");
  const h = be.alloc(n, "f32");
  be.modalityFusion({ e, t: d, q: d, h, omega, keys, rows: 300, dim: 257, scale: 1 });
  for (const s of [h, omega, keys]) out.push(be.download(s) as Float32Array);
  const ge = e.map(() => be.alloc(n, "f32"));
  const gt = be.alloc(n, "f32");
  const gq = be.alloc(n, "f32");
  be.modalityFusionGrad({
    e,
    q: d,
    omega,
    keys,
    gh: g,
    gomega: omega,
    ge,
    gt,
    gq,
    rows: 300,
    dim: 257,
    scale: 1,
  });
  for (const s of [...ge, gt, gq]) out.push(be.download(s) as Float32Array);
  return out;
}

Deno.test("wasm threads: 2 threads give bit-identical results to 1", async () => {
  const one = await WasmBackend.create({ threads: 1 });
  const two = await WasmBackend.create({ threads: 2 });
  try {
    assert.equal(two.threads, 2);
    for (const s of SHAPES) {
      const before = two.threadedCalls;
      const got = gemmOnce(two, s);
      assert.equal(two.threadedCalls, before + 1, `${s.label}: the worker took no share`);
      assert.deepEqual(got, gemmOnce(one, s), `gemm ${s.label}`);
    }
    const before = two.threadedCalls;
    const got = rowKernels(two);
    assert.equal(two.threadedCalls, before + 9, "row kernels were not split");
    const want = rowKernels(one);
    got.forEach((g, i) => assert.deepEqual(g, want[i], `row kernel #${i}`));
    // Small work stays on the calling thread.
    const small = two.threadedCalls;
    gemmOnce(two, { ...SHAPES[0], batch: 1, m: 8, n: 8, k: 8 });
    assert.equal(two.threadedCalls, small);
  } finally {
    two.dispose();
  }
  // After dispose the backend keeps working on one thread.
  assert.equal(two.threads, 1);
  assert.deepEqual(gemmOnce(two, SHAPES[2]), gemmOnce(one, SHAPES[2]));
});

/**
 * axpy, the binary ops (contiguous, a broadcast row, a strided operand), fill, copy2d and Adam
 * on both threads.
 */
function elementKernels(be: Backend): Float32Array[] {
  const [rows, cols] = [1100, 129];
  const n = rows * cols;
  const x = be.upload(randn(8, n), "f32");
  const y = be.upload(randn(9, n), "f32");
  const row = be.upload(randn(10, cols), "f32");
  const out = be.alloc(n, "f32");
  const got: Float32Array[] = [];
  be.axpy(x, y, n, 0.3);
  got.push(be.download(y) as Float32Array);
  be.binary("add", x, [1], y, [1], out, [n]);
  got.push(be.download(out) as Float32Array);
  be.binary("mul", x, [cols, 1], row, [0, 1], out, [rows, cols]);
  got.push(be.download(out) as Float32Array);
  // x read transposed ([cols, rows] as [rows, cols]), divided by a column broadcast.
  be.binary("div", x, [1, cols], row, [1, 0], out, [cols, rows]);
  got.push(be.download(out) as Float32Array);
  be.fill(out, 0.25, 3, n - 5);
  got.push(be.download(out) as Float32Array);
  // Every other row of x's first columns added into out's rows, then copied over them.
  be.copy2d(x, 1, 2 * cols, out, 2, cols, rows / 2, cols - 7, true);
  got.push(be.download(out) as Float32Array);
  be.copy2d(y, 0, cols, out, 0, cols, rows, cols, false);
  got.push(be.download(out) as Float32Array);
  const m = be.upload(randn(11, n), "f32");
  const v = be.upload(randn(12, n).map(Math.abs), "f32");
  be.adam({
    p: y,
    g: x,
    m,
    v,
    n,
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    decoupled: true,
    biasCorrection1: 0.1,
    biasCorrection2: 0.002,
  });
  for (const s of [y, m, v]) got.push(be.download(s) as Float32Array);
  return got;
}

Deno.test("wasm threads: the element kernels split with the same bits", async () => {
  const one = await WasmBackend.create({ threads: 1 });
  const two = await WasmBackend.create({ threads: 2 });
  try {
    const before = two.threadedCalls;
    const got = elementKernels(two);
    assert.equal(two.threadedCalls, before + 8, "the element kernels were not split");
    // The first differing bits (deepEqual's diff of 140,000 floats takes minutes to print).
    const names = ["axpy", "add", "mul", "div", "fill", "copy2d +=", "copy2d", "adam p", "m", "v"];
    assertSameBits(got, elementKernels(one), "element kernels", names);
  } finally {
    two.dispose();
  }
});

Deno.test("each command's backend stops the kernel thread of the one it replaces", async () => {
  // A process running many commands (the test suite runs the CLI in-process) must not pile up
  // kernel workers: dozens of them once hung a run.
  const first = (await activateBackend("wasm")).backend as WasmBackend;
  const x = tensor([1, 2, 3], [3]);
  const second = (await activateBackend("wasm")).backend as WasmBackend;
  try {
    assert.notEqual(second, first);
    assert.equal(first.threads, 1);
    assert.equal(second.threads, (navigator.hardwareConcurrency ?? 1) >= 2 ? 2 : 1);
    // What the first backend made stays readable.
    assert.deepEqual([...x.toFloat32()], [1, 2, 3]);
  } finally {
    second.dispose();
  }
});

Deno.test("DUAF_WASM_THREADS sets the default thread count; other values are refused", async () => {
  const before = Deno.env.get("DUAF_WASM_THREADS");
  try {
    for (const [v, want] of [["1", 1], ["2", 2]] as const) {
      Deno.env.set("DUAF_WASM_THREADS", v);
      const b = await WasmBackend.create();
      try {
        assert.equal(b.threads, want);
      } finally {
        b.dispose();
      }
    }
    Deno.env.set("DUAF_WASM_THREADS", "4");
    await assert.rejects(() => WasmBackend.create(), /DUAF_WASM_THREADS: expected 1 or 2, got '4'/);
  } finally {
    if (before === undefined) Deno.env.delete("DUAF_WASM_THREADS");
    else Deno.env.set("DUAF_WASM_THREADS", before);
  }
});

Deno.test("DUAF_WASM_DIR: where a bundled CLI finds the kernel modules", () => {
  const before = Deno.env.get("DUAF_WASM_DIR");
  try {
    Deno.env.set("DUAF_WASM_DIR", "/opt/duaf/wasm");
    assert.equal(kernelUrl("relaxed").href, "file:///opt/duaf/wasm/kernels-relaxed.wasm");
    Deno.env.delete("DUAF_WASM_DIR");
    assert.match(kernelUrl("simd").href, /\/wasm\/build\/kernels-simd\.wasm$/);
  } finally {
    if (before === undefined) Deno.env.delete("DUAF_WASM_DIR");
    else Deno.env.set("DUAF_WASM_DIR", before);
  }
});

Deno.test("kernel threads poll long only while no other thread wants the cores", () => {
  let runnable: number | null = 2;
  let reads = 0;
  const w = new PollWindow(2, () => {
    reads++;
    return runnable;
  });
  assert.equal(w.ms(0), POLL_MS);
  runnable = 3;
  assert.equal(w.ms(RECHECK_MS - 1), POLL_MS, "looked again before RECHECK_MS");
  assert.equal(reads, 1);
  assert.equal(w.ms(RECHECK_MS), SHORT_POLL_MS);
  runnable = null; // unknown (not Linux, no permission): as if contended
  assert.equal(w.ms(2 * RECHECK_MS), SHORT_POLL_MS);
  runnable = 1;
  assert.equal(w.ms(3 * RECHECK_MS), POLL_MS);
  // Linux's count includes the caller, so it is at least one where it can be read.
  const n = runnableThreads();
  assert.ok(n === null || n >= 1, `runnable threads ${n}`);
  if (Deno.build.os === "linux") assert.notEqual(n, null);
});
