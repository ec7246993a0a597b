/**
 * The native backend's C kernels (ffi/cpu/kernels.c) must give the wasm kernels' bits: every
 * unary op and gradient and the cross-entropy block rows, on lengths that run every tail, through
 * the two-thread split, and for whole training runs (the same checkpoint bytes with the C kernels
 * on and off). The start-up check that guards this must be able to fail: a library built with the
 * other multiply-add form is refused.
 *
 * Needs a C compiler (CI: .ci/install-deps.sh) and, for the backend tests, a CBLAS; without them
 * the tests are ignored and the reason printed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildCpuKernels } from "../ffi/cpu/build.ts";
import { openBlas } from "../ffi/blas.ts";
import { openCpuKernels } from "../ffi/cpu.ts";
import {
  cpuKernelsDiffer,
  replaceWithCpuKernels,
  withCpuKernels,
} from "../core/backends/cpu_kernels.ts";
import { NativeBackend } from "../core/backends/native.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { Rng } from "../core/random.ts";
import { gemmArgs } from "../core/backend.ts";
import * as op from "../core/ops/mod.ts";
import { backward, tensor, tidy, withBackend } from "../core/tensor.ts";
import { MAIN_TS, setFlags, TINY_SETS, tinyDataset } from "./helpers/tiny_run.ts";
import { assertSameRun } from "./helpers/same_run.ts";
import { assertClose, assertSameBits as assertSameOutputs } from "./helpers/assert_close.ts";

let built: { fused: string; unfused: string } | null = null;
let why = "";
try {
  built = {
    fused: await buildCpuKernels({ fused: true, quiet: true }),
    unfused: await buildCpuKernels({ fused: false, quiet: true }),
  };
} catch (e) {
  why = e instanceof Error ? e.message : String(e);
  console.log(`cpu kernel tests ignored: ${why}`);
}
const blas = openBlas();
const noBlas = "unavailable" in blas;
if (!noBlas) blas.close();
const ignore = built === null;

/** A one-thread wasm runtime (relaxed SIMD when the runtime has it, as the backends pick). */
async function runtime() {
  return await WasmBackend.loadRuntime({ threads: 1 });
}

/** A runtime and its kernels with the C library of its multiply-add form routed in. */
async function withC() {
  const rt = await runtime();
  return { rt, c: withCpuKernels(rt.kernels, rt.memory, openCpuKernels(library(rt.variant))) };
}

/** A two-thread native backend and a one-thread wasm backend for `fn`, disposed after it. */
async function withNativeAndWasm(
  fn: (native: NativeBackend, wasm: WasmBackend) => void | Promise<void>,
): Promise<void> {
  const opened = await NativeBackend.open({ threads: 2 });
  if ("unavailable" in opened) throw new Error(opened.unavailable);
  const wasm = await WasmBackend.create({ threads: 1 });
  try {
    await fn(opened, wasm);
  } finally {
    opened.dispose();
    wasm.dispose();
  }
}

function library(variant: string): string {
  return variant === "relaxed" ? built!.fused : built!.unfused;
}

Deno.test({
  name:
    "cpu kernels: every unary op and gradient, and dropout, the wasm kernel's bits, at every length",
  ignore,
  async fn() {
    const { rt, c } = await withC();
    const rng = new Rng(3);
    const lengths = [0, 1, 3, 4, 5, 15, 16, 17, 31, 33, 511, 4096 + 13, 100_003];
    const most = Math.max(...lengths);
    const bytes = 4 * most;
    const [x, y, g, a, b] = [0, 1, 2, 3, 4].map(() => rt.arena.alloc(bytes));
    const f = () => rt.arena.f32;
    for (const scale of [1, 6, 60, 1e6, 3e9]) {
      for (let i = 0; i < most; i++) {
        f()[(x >> 2) + i] = scale * rng.normal();
        f()[(g >> 2) + i] = rng.normal();
      }
      for (const op of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]) {
        const alpha = op === 8 ? 0.02 : op === 14 ? -1.3 : op === 15 ? 0.7 : 0;
        for (const n of lengths) {
          rt.kernels.unary(op, x, a, n, alpha);
          c.unary(op, x, b, n, alpha);
          assertSameBits(rt.arena.f32, a, b, n, `unary ${op} n=${n} scale=${scale}`);
          f().copyWithin(y >> 2, a >> 2, (a >> 2) + n);
          rt.kernels.unaryGrad(op, x, y, g, a, n, alpha);
          c.unaryGrad(op, x, y, g, b, n, alpha);
          assertSameBits(rt.arena.f32, a, b, n, `unaryGrad ${op} n=${n} scale=${scale}`);
        }
      }
      for (const n of lengths) {
        const seed = rng.int(2 ** 31) * 2 + 1, threshold = rng.int(1 << 24);
        rt.kernels.dropout(x, a, n, threshold, 1.25, seed);
        f().copyWithin(b >> 2, x >> 2, (x >> 2) + n);
        c.dropout(b, b, n, threshold, 1.25, seed); // in place, as the tape's dropout may run
        assertSameBits(rt.arena.f32, a, b, n, `dropout n=${n}`);
      }
    }
  },
});

Deno.test({
  name: "cpu kernels: cross-entropy block rows, forward and gradient, the wasm kernel's bits",
  ignore,
  async fn() {
    const { rt, c } = await withC();
    const rng = new Rng(5);
    for (const [rows, cols, colOffset] of [[3, 1, 0], [7, 3, 2], [5, 17, 0], [9, 1030, 500]]) {
      for (const first of [1, 0]) {
        for (const keep of [false, true]) {
          const x = Float32Array.from({ length: rows * cols }, () => 4 * rng.normal());
          const targets = Int32Array.from({ length: rows }, () => rng.int(cols + colOffset + 3));
          const prev = Float32Array.from({ length: rows }, () => rng.normal());
          const w = Float32Array.from({ length: rows }, () => rng.uniform());
          const run = (k: typeof c): Float32Array => {
            const n = rows * cols;
            const p = rt.arena.alloc(4 * (n + 5 * rows));
            const lse = p + 4 * n, picked = lse + 4 * rows, shift = picked + 4 * rows;
            const tp = shift + 4 * rows, wp = tp + 4 * rows;
            const f = rt.arena.f32;
            f.set(x, p >> 2);
            f.set(prev, lse >> 2);
            rt.arena.i32.set(targets, tp >> 2);
            f.set(w, wp >> 2);
            k.crossEntropyBlock(p, tp, lse, picked, rows, cols, colOffset, first, keep ? shift : 0);
            k.crossEntropyBlockGrad(p, tp, lse, wp, rows, cols, colOffset, keep ? shift : 0);
            const out = rt.arena.f32.slice(p >> 2, (p >> 2) + n + 3 * rows);
            rt.arena.free(p, 4 * (n + 5 * rows));
            return out;
          };
          const want = run(rt.kernels), got = run(c);
          const label = `rows ${rows} cols ${cols} offset ${colOffset} first ${first} kept ${keep}`;
          assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(want.buffer), label);
        }
      }
    }
  },
});

Deno.test({
  name:
    "cpu kernels: layer norm and its gradient, rows in groups and alone, the wasm kernel's bits",
  ignore,
  async fn() {
    const { rt, c } = await withC();
    const rng = new Rng(8);
    for (const [rows, cols] of [[1, 64], [7, 64], [9, 13], [5, 3], [4, 1]]) {
      const n = rows * cols;
      const x = Float32Array.from({ length: n }, () => 2 * rng.normal() + 0.5);
      const gamma = Float32Array.from({ length: cols }, () => 1 + 0.1 * rng.normal());
      const beta = Float32Array.from({ length: cols }, () => 0.1 * rng.normal());
      const g = Float32Array.from({ length: n }, () => rng.normal());
      const acc = Float32Array.from({ length: 2 * cols }, () => rng.normal()); // dgamma, dbeta
      const run = (k: typeof c): Float32Array => {
        // x, gamma, beta, g | out, dx, mean, rstd, dgamma, dbeta
        const bytes = 4 * (4 * n + 4 * cols + 2 * rows);
        const p = rt.arena.alloc(bytes);
        const gm = p + 4 * n, bt = gm + 4 * cols, gp = bt + 4 * cols, out = gp + 4 * n;
        const dx = out + 4 * n, mean = dx + 4 * n, rstd = mean + 4 * rows, dg = rstd + 4 * rows;
        const f = rt.arena.f32;
        f.set(x, p >> 2);
        f.set(gamma, gm >> 2);
        f.set(beta, bt >> 2);
        f.set(g, gp >> 2);
        f.set(acc, dg >> 2);
        k.layerNorm(p, gm, bt, out, mean, rstd, rows, cols, 1e-12);
        k.layerNormGrad(p, gm, mean, rstd, gp, dx, dg, dg + 4 * cols, rows, cols);
        const result = f.slice(out >> 2, (out >> 2) + 2 * n + 2 * rows + 2 * cols);
        rt.arena.free(p, bytes);
        return result;
      };
      const want = run(rt.kernels), got = run(c);
      assert.deepEqual(
        new Uint32Array(got.buffer),
        new Uint32Array(want.buffer),
        `${rows} x ${cols}`,
      );
    }
  },
});

Deno.test({
  name: "cpu kernels: GEMM, every transpose, slice and edge, the wasm kernel's bits",
  ignore,
  async fn() {
    const { rt, c } = await withC();
    const rng = new Rng(11);
    const scratch = rt.arena.alloc(rt.kernels.GEMM_SCRATCH_BYTES.value as number);
    for (let t = 0; t < 40; t++) {
      const m = 1 + rng.int(40), n = 1 + rng.int(70), k = rng.int(t % 5 === 0 ? 600 : 70);
      const tA = rng.int(2), tB = rng.int(2), beta = rng.int(2), items = 1 + rng.int(3);
      const alpha = rng.int(2) ? 1 : 0.3;
      const sa = m * k, sb = k * n, sc = m * n;
      const total = items * (sa + sb + 2 * sc);
      const p = rt.arena.alloc(4 * total);
      const a = p, b = a + 4 * items * sa, ca = b + 4 * items * sb, cb = ca + 4 * items * sc;
      const f = rt.arena.f32;
      for (let i = 0; i < items * (sa + sb + sc); i++) f[(a >> 2) + i] = rng.normal();
      f.copyWithin(cb >> 2, ca >> 2, (ca >> 2) + items * sc);
      const r0 = rng.int(m), r1 = r0 + 1 + rng.int(m - r0), c0 = rng.int(n);
      const c1 = c0 + 1 + rng.int(n - c0);
      const lda = tA ? m : k, ldb = tB ? k : n;
      for (const [kern, out] of [[rt.kernels, ca], [c, cb]] as const) {
        kern.gemm(
          a,
          b,
          out,
          m,
          n,
          k,
          tA,
          tB,
          items,
          sa,
          sb,
          sc,
          1,
          0,
          0,
          0,
          lda,
          ldb,
          n,
          alpha,
          beta,
          r0,
          r1,
          c0,
          c1,
          scratch,
        );
      }
      assertSameBits(rt.arena.f32, ca, cb, items * sc, `gemm ${m}x${n}x${k} tA ${tA} tB ${tB}`);
      rt.arena.free(p, 4 * total);
    }
  },
});

Deno.test({
  name: "cpu kernels: DuAF's modality fusion and its gradient, the wasm kernel's bits",
  ignore,
  async fn() {
    const { rt, c } = await withC();
    const rng = new Rng(13);
    for (const [rows, m, dim] of [[9, 3, 64], [4, 2, 30], [7, 4, 5], [3, 1, 128]]) {
      const n = rows * dim, out = n + rows * m + rows * m * dim;
      const bytes = 4 * ((m + 2) * n + 2 * out + m);
      const p = rt.arena.alloc(bytes);
      const t = p + 4 * m * n, q = t + 4 * n, outs = [q + 4 * n, q + 4 * n + 4 * out];
      const ptrs = outs[1] + 4 * out;
      for (let i = 0; i < (m + 2) * n; i++) rt.arena.f32[(p >> 2) + i] = 2 * rng.normal();
      for (let j = 0; j < m; j++) rt.arena.i32[(ptrs >> 2) + j] = p + 4 * j * n;
      rt.arena.f32.fill(0, outs[0] >> 2, (outs[1] >> 2) + out);
      [rt.kernels, c].forEach((k, i) => {
        const h = outs[i], omega = h + 4 * n, keys = omega + 4 * rows * m;
        k.modalityFusion(ptrs, m, t, q, h, omega, keys, 1, rows, dim, 1 / Math.sqrt(dim));
      });
      // Row 0 is outside the range: both leave it as it was.
      assertSameBits(rt.arena.f32, outs[0], outs[1], out, `fusion rows ${rows} m ${m} dim ${dim}`);
      // The gradient from the same forward outputs, with and without a gradient of the weights.
      const grads = (m + 2) * n;
      const gb = 4 * (n + rows * m + 2 * grads + 16);
      const g = rt.arena.alloc(gb);
      const gh = g, gomega = gh + 4 * n, gouts = [gomega + 4 * rows * m, 0];
      gouts[1] = gouts[0] + 4 * grads;
      const gptrs = gouts[1] + 4 * grads;
      for (let i = 0; i < n + rows * m; i++) rt.arena.f32[(g >> 2) + i] = rng.normal();
      const h = outs[0], omega = h + 4 * n, keys = omega + 4 * rows * m;
      for (const withOmega of [false, true]) {
        rt.arena.f32.fill(0, gouts[0] >> 2, (gouts[1] >> 2) + grads);
        [rt.kernels, c].forEach((k, i) => {
          const ge = gouts[i], gt = ge + 4 * m * n, gq = gt + 4 * n;
          for (let j = 0; j < 4; j++) {
            rt.arena.i32[(gptrs >> 2) + j] = j < m ? p + 4 * j * n : 0;
            rt.arena.i32[(gptrs >> 2) + 4 + j] = j < m ? ge + 4 * j * n : 0;
          }
          const gw = withOmega ? gomega : 0;
          k.modalityFusionGrad(gptrs, m, q, omega, keys, gh, gw, gt, gq, 1, rows, dim, 0.3);
        });
        const what = `fusion gradient rows ${rows} m ${m} dim ${dim} gomega ${withOmega}`;
        assertSameBits(rt.arena.f32, gouts[0], gouts[1], grads, what);
      }
      rt.arena.free(g, gb);
      rt.arena.free(p, bytes);
    }
  },
});

Deno.test({
  name: "cpu kernels: axpy, scatterAdd and the broadcasting binary ops, the wasm kernel's bits",
  ignore,
  async fn() {
    const { rt, c } = await withC();
    const rng = new Rng(19);
    const f = () => rt.arena.f32;
    for (const n of [1, 5, 64, 1000]) {
      const p = rt.arena.alloc(4 * 3 * n);
      for (let i = 0; i < 3 * n; i++) f()[(p >> 2) + i] = 3 * rng.normal();
      f().copyWithin((p >> 2) + 2 * n, (p >> 2) + n, (p >> 2) + 2 * n);
      rt.kernels.axpy(p, p + 4 * n, n, -0.7);
      c.axpy(p, p + 8 * n, n, -0.7);
      assertSameBits(f(), p + 4 * n, p + 8 * n, n, `axpy n ${n}`);
      rt.arena.free(p, 4 * 3 * n);
    }
    // scatterAdd into 5 rows of 9, a row indexed three times (its sums in order), then a bad index.
    {
      const g = rt.arena.alloc(4 * (8 * 9 + 2 * 5 * 9 + 8));
      const outs = [g + 4 * 72, g + 4 * 117], idx = g + 4 * 162;
      for (let i = 0; i < 72 + 45; i++) f()[(g >> 2) + i] = 3 * rng.normal();
      for (const index of [[4, 0, 4, 2, 4, 1, 3, 0], [1, 5]]) {
        rt.arena.i32.set(index, idx >> 2);
        f().copyWithin(outs[1] >> 2, outs[0] >> 2, (outs[0] >> 2) + 45);
        const found = [rt.kernels, c].map((k, i) =>
          k.scatterAdd(g, idx, outs[i], 5, index.length, 9)
        );
        assert.deepEqual(found, index.length === 2 ? [1, 1] : [-1, -1]);
        assertSameBits(f(), outs[0], outs[1], 45, `scatterAdd ${index}`);
      }
      rt.arena.free(g, 4 * (8 * 9 + 2 * 5 * 9 + 8));
    }
    // [2, 3, 17] outputs from operands broadcast or strided in each dim (element strides).
    const shape = [2, 3, 17];
    const layouts = [
      [[51, 17, 1], [51, 17, 1]],
      [[51, 17, 1], [0, 0, 1]],
      [[0, 17, 1], [1, 0, 0]],
      [[1, 2, 6], [51, 17, 1]],
      [[0, 1, 3], [17, 0, 1]],
    ];
    const n = 2 * 3 * 17;
    const bytes = 4 * (4 * n + 12);
    const p = rt.arena.alloc(bytes);
    const a = p, b = a + 4 * n, outs = [b + 4 * n, b + 8 * n], params = b + 12 * n;
    for (let i = 0; i < 2 * n; i++) f()[(a >> 2) + i] = rng.uniform() < 0.1 ? 0 : 2 * rng.normal();
    for (const [sa, sb] of layouts) {
      for (let op = 0; op < 4; op++) {
        for (const [k, o] of [[rt.kernels, outs[0]], [c, outs[1]]] as const) {
          rt.arena.i32.set([...shape, ...sa, ...sb], params >> 2);
          k.binary(op, a, b, o, 3, params);
        }
        assertSameBits(f(), outs[0], outs[1], n, `binary op ${op} strides ${sa} / ${sb}`);
      }
    }
    rt.arena.free(p, bytes);
  },
});

Deno.test({
  name: "cpu kernels: attention softmax and full-ranking ranks, the wasm kernel's bits",
  ignore,
  async fn() {
    const { rt, c } = await withC();
    const rng = new Rng(17);
    const f = () => rt.arena.f32;
    // [b, heads, q, cols] rows with masks broadcast as [b, 1, q, cols] or [b, 1, 1, cols].
    for (
      const [b, heads, q, cols, perQuery] of [[4, 2, 50, 50, 1], [3, 3, 9, 9, 0], [2, 1, 5, 700, 1]]
    ) {
      const rows = b * heads * q, n = rows * cols;
      const maskRows = b * (perQuery ? q : 1);
      const bytes = 4 * (3 * n + maskRows * cols);
      const p = rt.arena.alloc(bytes);
      const x = p, outs = [x + 4 * n, x + 8 * n], mask = x + 12 * n;
      for (let i = 0; i < n; i++) f()[(x >> 2) + i] = 3 * rng.normal();
      for (let i = 0; i < maskRows * cols; i++) {
        f()[(mask >> 2) + i] = rng.uniform() < 0.2 ? -1e9 : 0;
      }
      const [sb, sh, sq] = perQuery ? [q, 0, 1] : [1, 0, 0];
      for (const hasMask of [1, 0]) {
        const half = rows >> 1; // a second thread's share starts part-way: rowBegin
        [rt.kernels, c].forEach((k, i) => {
          k.maskedSoftmax(x, mask, outs[i], half, cols, 0.125, hasMask, heads, q, sb, sh, sq, 0);
          const o = 4 * half * cols;
          k.maskedSoftmax(
            x + o,
            mask,
            outs[i] + o,
            rows - half,
            cols,
            0.125,
            hasMask,
            heads,
            q,
            sb,
            sh,
            sq,
            half,
          );
        });
        assertSameBits(
          rt.arena.f32,
          outs[0],
          outs[1],
          n,
          `maskedSoftmax ${b}x${heads}x${q}x${cols} mask ${hasMask}`,
        );
      }
      rt.arena.free(p, bytes);
    }
    for (const [rows, cols] of [[17, 12102], [5, 3], [40, 1001]]) {
      const n = rows * cols, ex = 3 * rows;
      const bytes = 4 * (n + rows + (rows + 1) + ex + 2 * rows);
      const p = rt.arena.alloc(bytes);
      const x = p, tgt = x + 4 * n, off = tgt + 4 * rows, exc = off + 4 * (rows + 1);
      const outs = [exc + 4 * ex, exc + 4 * ex + 4 * rows];
      for (let i = 0; i < n; i++) f()[(x >> 2) + i] = Math.round(4 * rng.normal()) / 4; // ties
      for (let r = 0; r < rows; r++) {
        rt.arena.i32[(tgt >> 2) + r] = rng.int(cols);
        rt.arena.i32[(off >> 2) + r] = 3 * r;
        for (let e = 0; e < 3; e++) rt.arena.i32[(exc >> 2) + 3 * r + e] = rng.int(cols);
      }
      rt.arena.i32[(off >> 2) + rows] = ex;
      const got = [rt.kernels, c].map((k, i) => {
        const bad = k.rankRows(x, tgt, off, exc, outs[i], rows, cols);
        return [bad, ...rt.arena.i32.subarray(outs[i] >> 2, (outs[i] >> 2) + rows)];
      });
      assert.deepEqual(got[1], got[0], `rankRows ${rows}x${cols}`);
      // An out-of-range target is reported, not read.
      rt.arena.i32[(tgt >> 2) + 2] = cols;
      assert.equal(
        c.rankRows(x, tgt, off, exc, outs[1], rows, cols),
        rt.kernels.rankRows(x, tgt, off, exc, outs[0], rows, cols),
      );
      rt.arena.free(p, bytes);
    }
  },
});

Deno.test({
  name: "cpu kernels: the start-up check refuses a library that rounds differently",
  ignore,
  async fn() {
    const rt = await runtime();
    const other = rt.variant === "relaxed" ? built!.unfused : built!.fused;
    const wrong = withCpuKernels(rt.kernels, rt.memory, openCpuKernels(other));
    assert.match(cpuKernelsDiffer(rt.kernels, wrong, rt.arena) ?? "", /^unary(Grad)? op \d+$/);
    const r = replaceWithCpuKernels(rt, { path: other });
    assert.equal(r.replaced, null);
    assert.match(r.status, /^C kernels off \(unary.* differs from wasm on this CPU\)$/);
    const right = replaceWithCpuKernels(rt, { path: library(rt.variant) });
    assert.ok(right.replaced, right.status);
    assert.equal(replaceWithCpuKernels(rt, { unavailable: "x" }).status, "C kernels off (x)");
  },
});

Deno.test({
  name: "cpu kernels: the native backend on two threads gives the wasm backend's bits",
  ignore: ignore || noBlas,
  async fn() {
    await withNativeAndWasm((opened, wasm) => {
      assert.match(
        opened.cpuKernels,
        /^elementwise, cross-entropy rows and (GEMM|small batched GEMMs) on C kernels/,
      );
      const n = 300 * 257;
      const rng = new Rng(9);
      const xs = Float32Array.from({ length: n }, () => 3 * rng.normal());
      const gs = Float32Array.from({ length: n }, () => rng.normal());
      const before = opened.threadedCalls;
      const outs = [opened, wasm].map((be) => {
        const x = be.upload(xs, "f32"), g = be.upload(gs, "f32");
        const y = be.alloc(n, "f32"), d = be.alloc(n, "f32");
        be.unary("gelu", x, y, n, 0);
        be.unaryGrad("gelu", x, y, g, d, n, 0);
        be.unary("tanh", x, d, n, 0);
        // Attention's scores: one product per (sequence, head), heads side by side in a row.
        const [seqs, heads, len, dh] = [16, 2, 46, 32];
        const q = be.upload(xs.subarray(0, seqs * len * heads * dh), "f32");
        const s = be.alloc(seqs * heads * len * len, "f32");
        be.gemm(
          gemmArgs(q, q, s, len, len, dh, {
            transB: true,
            batch: seqs,
            strideA: len * heads * dh,
            strideB: len * heads * dh,
            strideC: heads * len * len,
            batch2: heads,
            strideA2: dh,
            strideB2: dh,
            strideC2: len * len,
            lda: heads * dh,
            ldb: heads * dh,
            alpha: 0.125,
          }),
        );
        // A weight gradient, X^T G over 2400 rows: split across the threads by K slices.
        const [tokens, width] = [2400, 32];
        const xk = be.upload(xs.subarray(0, tokens * width), "f32");
        const gk = be.upload(gs.subarray(0, tokens * width), "f32");
        const dw = be.upload(gs.subarray(0, width * width), "f32");
        be.gemm(gemmArgs(xk, gk, dw, width, width, tokens, { transA: true, beta: 1 }));
        // A bias's gradient: column sums of [2400 x 32], split across the threads by columns.
        const db = be.upload(gs.subarray(0, width), "f32");
        be.reduceSum(gk, [tokens, width], db, [0, 1], width, true);
        return [y, d, s, dw, db].map((t) => be.download(t)) as Float32Array[];
      });
      assert.ok(opened.threadedCalls > before, "the calls were split across both threads");
      const names = ["gelu", "tanh", "scores", "weight grad", "bias grad"];
      // With narrower vectors CBLAS takes the weight gradient (one large product) with roundings
      // of its own: close to the kernels' there (sums of 2400 products of about 3), and every
      // other output their bits.
      const onBlas = opened.kernelGemm ? [] : [3];
      const kernels = <T>(xs: T[]) => xs.filter((_, i) => !onBlas.includes(i));
      assertSameOutputs(kernels(outs[0]), kernels(outs[1]), "two threads", kernels(names));
      for (const i of onBlas) {
        assertClose(`${names[i]} on CBLAS`, outs[0][i], outs[1][i], 1e-5, 1e-3);
      }
    });
  },
});

Deno.test({
  name:
    "cpu kernels: cross-entropy fused with its products, on two threads, the separate calls' bits",
  ignore: ignore || noBlas,
  async fn() {
    await withNativeAndWasm((opened, wasm) => {
      if (!opened.kernelGemm) {
        // Narrower vectors: CBLAS takes the large products, so the backend does not fuse (the
        // kernels themselves are still checked against wasm at start-up).
        const none = opened.alloc(1, "f32");
        const args = { h: none, table: none, targets: none, z: none, lse: none, picked: none };
        assert.equal(
          opened.linearCrossEntropyKept({ ...args, shift: none, rows: 1, items: 1, d: 1 }),
          false,
        );
        return;
      }
      // Rows not a multiple of the register tile, items past two KC blocks with a partial panel,
      // a target outside the table; and a table narrower than one vector.
      for (const [rows, items, d] of [[301, 1000, 48], [13, 17, 64], [7, 300, 5]]) {
        const rng = new Rng(rows);
        const hs = Float32Array.from({ length: rows * d }, () => rng.normal());
        const ts = Float32Array.from({ length: items * d }, () => 0.3 * rng.normal());
        const tgs = Int32Array.from(
          { length: rows },
          (_, i) => i === 3 ? items : (i * 7919) % items,
        );
        const ws = Float32Array.from({ length: rows }, (_, i) => 1 / (i + 1));
        const before = opened.threadedCalls;
        const outs = [opened, wasm].map((be) => {
          const h = be.upload(hs, "f32"), table = be.upload(ts, "f32");
          const targets = be.upload(tgs, "i32"), w = be.upload(ws, "f32");
          const z = be.alloc(rows * items, "f32"), dh = be.alloc(rows * d, "f32");
          const dtable = be.alloc(items * d, "f32");
          const [lse, picked, shift] = [0, 1, 2].map(() => be.alloc(rows, "f32"));
          const args = { h, table, targets, z, lse, picked, shift, rows, items, d };
          let exps: Float32Array;
          if (be === opened) {
            assert.ok(opened.linearCrossEntropyKept(args));
            exps = be.download(z) as Float32Array;
            assert.ok(opened.linearCrossEntropyKeptGrad({ ...args, w, dh, dtable }));
            assert.deepEqual(be.download(z), exps, "z is left as the exponentials");
          } else {
            be.gemm(gemmArgs(h, table, z, rows, items, d, { transB: true }));
            be.crossEntropyBlock(z, targets, lse, picked, rows, items, 0, true, shift);
            exps = be.download(z) as Float32Array;
            be.crossEntropyBlockGrad(z, targets, lse, w, rows, items, 0, shift);
            be.gemm(gemmArgs(z, table, dh, rows, d, items, {}));
            be.gemm(gemmArgs(z, h, dtable, items, d, rows, { transA: true }));
          }
          return [exps, ...[lse, picked, shift, dh, dtable].map((s) => be.download(s))];
        });
        assert.ok(opened.threadedCalls > before, "both threads ran the fused calls");
        outs[0].forEach((got, i) => {
          const want = outs[1][i] as Float32Array;
          assert.deepEqual(
            new Uint32Array((got as Float32Array).buffer),
            new Uint32Array(want.buffer),
            `[${rows} x ${items} x ${d}], output ${i}`,
          );
        });
      }
    });
  },
});

Deno.test({
  name: "cpu kernels: the chunked cross-entropy streamed, on two threads, the separate calls' bits",
  ignore: ignore || noBlas,
  async fn() {
    await withNativeAndWasm((opened, wasm) => {
      if (!opened.kernelGemm) return; // CBLAS takes the products: the backend does not stream
      // Blocks that are not a multiple of the K slice (256) and a partial last block, one wider
      // than a band's budget, rows not a multiple of the register tile, a target outside the
      // table, a table narrower than one vector; the gradient of h alone and of the table alone.
      const shapes = [[301, 1000, 48, 333], [13, 17, 64, 5], [7, 300, 5, 256], [
        600,
        9000,
        16,
        8192,
      ]];
      for (const [rows, items, d, block] of shapes) {
        const rng = new Rng(rows + block);
        const hs = Float32Array.from({ length: rows * d }, () => rng.normal());
        const ts = Float32Array.from({ length: items * d }, () => 0.3 * rng.normal());
        const tgs = Int32Array.from(
          { length: rows },
          (_, i) => i === 3 ? items : (i * 7919) % items,
        );
        for (const wants of [["h", "table"], ["h"], ["table"]]) {
          let streamed = 0;
          const forward = opened.linearCrossEntropyBlocks.bind(opened);
          const grad = opened.linearCrossEntropyBlocksGrad.bind(opened);
          opened.linearCrossEntropyBlocks = (a) => forward(a) && ++streamed > 0;
          opened.linearCrossEntropyBlocksGrad = (a) => grad(a) && ++streamed > 0;
          const outs = [opened, wasm].map((be) =>
            withBackend(be, () =>
              tidy(() => {
                const h = tensor(hs, [rows, d]), table = tensor(ts, [items, d]);
                h.requiresGrad = wants.includes("h");
                table.requiresGrad = wants.includes("table");
                const rowsLoss = op.linearCrossEntropyRows(
                  h,
                  table,
                  tensor(tgs, [rows], "i32"),
                  block,
                );
                backward(op.sum(op.mul(rowsLoss, tensor(hs.subarray(0, rows), [rows]))));
                return [rowsLoss, h.grad, table.grad].map((t) => t ? t.toFloat32() : null);
              }))
          );
          delete (opened as Partial<NativeBackend>).linearCrossEntropyBlocks;
          delete (opened as Partial<NativeBackend>).linearCrossEntropyBlocksGrad;
          assert.equal(streamed, 2, "both directions were streamed");
          outs[0].forEach((got, i) => {
            const want = outs[1][i];
            if (!got || !want) return assert.equal(got, want);
            assert.deepEqual(
              new Uint32Array(got.buffer),
              new Uint32Array(want.buffer),
              `[${rows} x ${items} x ${d}] blocks of ${block}, wanting ${wants}: output ${i}`,
            );
          });
        }
      }
    });
  },
});

Deno.test({
  name: "cpu kernels: ranking fused with its scores, on two threads, gemm then rankRows' ranks",
  ignore: ignore || noBlas,
  async fn() {
    await withNativeAndWasm((opened, wasm) => {
      const none = opened.alloc(1, "f32");
      const dummy = { users: none, items: none, targets: none, exOffsets: none, exCols: none };
      if (!opened.kernelGemm) {
        // CBLAS scores the large products here, so the ranks would not be of gemm's scores.
        assert.equal(opened.rankScores({ ...dummy, out: none, rows: 1, cols: 1, d: 1 }), false);
        return;
      }
      // Rows past two bands of 48 on each thread with a partial register tile, items past two
      // table chunks with a partial vector; ties with the target and excluded columns.
      for (const [rows, cols, d] of [[301, 2100, 64], [5, 17, 3]]) {
        const rng = new Rng(rows);
        const us = Float32Array.from({ length: rows * d }, () => rng.normal());
        const its = Float32Array.from({ length: cols * d }, () => rng.normal());
        const tgs = Int32Array.from({ length: rows }, (_, r) => (r * 7919) % cols);
        const offsets = Int32Array.from({ length: rows + 1 }, (_, r) => 2 * r);
        const ex = Int32Array.from(
          { length: 2 * rows },
          (_, i) => i % 2 ? tgs[i >> 1] : rng.int(cols),
        );
        for (let r = 0; r < rows; r += 3) {
          const twin = (tgs[r] + 1) % cols; // an item whose row is the target's: a tie
          its.copyWithin(twin * d, tgs[r] * d, (tgs[r] + 1) * d);
        }
        const before = opened.threadedCalls;
        const ranks: number[][] = [opened, wasm].map((be): number[] => {
          const users = be.upload(us, "f32"), items = be.upload(its, "f32");
          const args = {
            users,
            items,
            targets: be.upload(tgs, "i32"),
            exOffsets: be.upload(offsets, "i32"),
            exCols: be.upload(ex, "i32"),
            out: be.alloc(rows, "i32"),
            rows,
            cols,
            d,
          };
          if (be === opened) assert.ok(opened.rankScores(args));
          else {
            const z = be.alloc(rows * cols, "f32");
            be.gemm(gemmArgs(users, items, z, rows, cols, d, { transB: true }));
            be.rankRows!(z, args.targets, args.exOffsets, args.exCols, args.out, rows, cols);
          }
          return Array.from(be.download(args.out));
        });
        if (rows > 96) assert.ok(opened.threadedCalls > before, "both threads ranked");
        assert.deepEqual(ranks[0], ranks[1], `[${rows} x ${cols} x ${d}]`);
      }
      // A target outside the table: the index named, as rankRows names it.
      const u = opened.upload(new Float32Array(4), "f32");
      assert.throws(
        () =>
          opened.rankScores({
            users: u,
            items: u,
            targets: opened.upload(Int32Array.from([0, 9]), "i32"),
            exOffsets: opened.upload(new Int32Array(3), "i32"),
            exCols: opened.upload(new Int32Array(1), "i32"),
            out: opened.alloc(2, "i32"),
            rows: 2,
            cols: 2,
            d: 1,
          }),
        /rankScores targets: index 9 at position 1 outside \[0, 2\)/,
      );
    });
  },
});

/**
 * The native backend with the C kernels is checked against what it must equal: the wasm backend
 * when its C GEMM takes every product (every op then has wasm's bits), else itself with the C
 * kernels off (the large products on CBLAS either way).
 */
Deno.test({
  name: "cpu kernels: training on native gives the checkpoint bytes of wasm (or of C kernels off)",
  ignore: ignore || noBlas,
  async fn() {
    const probe = await NativeBackend.open({ threads: 1 });
    if ("unavailable" in probe) throw new Error(probe.unavailable);
    const everyGemm = probe.kernelGemm;
    probe.dispose();
    const peer: { backend: string; env: Record<string, string>; used: RegExp } = everyGemm
      ? { backend: "wasm", env: {}, used: /^backend: wasm/m }
      : {
        backend: "native",
        env: { DUAF_CPU_KERNELS: "off" },
        used: /C kernels off \(DUAF_CPU_KERNELS=off\)/,
      };
    const root = await Deno.makeTempDir();
    try {
      const ds = await tinyDataset(root);
      for (const model of ["sasrec", "duafmat"]) {
        const runs = [
          { backend: "native", env: { DUAF_CPU_KERNELS: "auto" }, used: /on C kernels/ },
          peer,
        ];
        const dirs: string[] = [];
        for (const [i, run] of runs.entries()) {
          const out = join(root, `${model}-${i}`);
          const r = await new Deno.Command(Deno.execPath(), {
            args: ["run", "-A", MAIN_TS, "train", ds, "--model", model, "--out", out]
              .concat(setFlags(TINY_SETS), ["--backend", run.backend]),
            env: { ...run.env, DUAF_BLAS_THREADS: "1" },
            stdout: "piped",
            stderr: "piped",
          }).output();
          const stderr = new TextDecoder().decode(r.stderr);
          assert.equal(r.code, 0, stderr);
          assert.match(stderr, run.used);
          dirs.push(out);
        }
        await assertSameRun(dirs[0], dirs[1], `${model}, native against ${peer.backend}`);
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

function assertSameBits(f: Float32Array, a: number, b: number, n: number, what: string): void {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  for (let i = 0; i < n; i++) {
    const p = u[(a >> 2) + i], q = u[(b >> 2) + i];
    if (p !== q && !(Number.isNaN(f[(a >> 2) + i]) && Number.isNaN(f[(b >> 2) + i]))) {
      assert.fail(`${what}: element ${i}: ${f[(a >> 2) + i]} vs ${f[(b >> 2) + i]}`);
    }
  }
}
