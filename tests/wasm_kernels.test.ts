/**
 * wasm backend kernels beyond the shared parity cases: sweeps over odd sizes (tile and vector
 * edges), poisoned outputs (NaN everywhere the kernel must write, sentinels where it must not),
 * accuracy of the vector math on wide ranges, bit-exact dropout, and error handling.
 */
import assert from "node:assert/strict";
import {
  type Backend,
  type GemmArgs,
  gemmArgs,
  type Storage,
  type UnaryOp,
} from "../core/backend.ts";
import { JsBackend } from "../core/backends/js.ts";
import { unaryDerivative, unaryForward } from "../core/backends/scalar_math.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { hashUniform, Rng } from "../core/random.ts";

const js = new JsBackend();
const wasm = await WasmBackend.create({ threads: 1 });
// The worker is never started for threads: 1, so nothing outlives the tests.

const SENTINEL = 12345.5;

function randn(seed: number, n: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  rtol: number,
  atol: number,
  what: string,
): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i];
    if (g === w || (Number.isNaN(g) && Number.isNaN(w))) continue;
    if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) {
      assert.fail(`${what}: [${i}] = ${g}, want ${w} (rtol ${rtol}, atol ${atol})`);
    }
  }
}

interface GemmSpec {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  batch?: number;
  shareA?: boolean;
  shareB?: boolean;
  alpha?: number;
  beta?: 0 | 1;
}

/**
 * Runs one gemm on `be` with offsets and gaps between the batch's C matrices. C is NaN where
 * beta = 0 must overwrite, random where beta = 1 accumulates, SENTINEL in gaps and margins.
 */
function runGemm(be: Backend, s: GemmSpec): Float32Array {
  const batch = s.batch ?? 1;
  const { m, n, k } = s;
  const off = 5;
  const strideA = s.shareA ? 0 : m * k + 3;
  const strideB = s.shareB ? 0 : k * n + 1;
  const strideC = m * n + 2;
  const a = be.upload(randn(1, off + (batch - 1) * strideA + m * k), "f32");
  const b = be.upload(randn(2, off + (batch - 1) * strideB + k * n), "f32");
  const cLen = off + (batch - 1) * strideC + m * n + 4;
  const init = new Float32Array(cLen).fill(SENTINEL);
  const fresh = randn(3, cLen);
  for (let bi = 0; bi < batch; bi++) {
    for (let i = 0; i < m * n; i++) {
      const o = off + bi * strideC + i;
      init[o] = s.beta === 1 ? fresh[o] : NaN;
    }
  }
  const c = be.upload(init, "f32");
  const args: GemmArgs = {
    a,
    b,
    c,
    m,
    n,
    k,
    transA: s.transA,
    transB: s.transB,
    batch,
    strideA,
    strideB,
    strideC,
    aOffset: off,
    bOffset: off,
    cOffset: off,
    alpha: s.alpha ?? 1,
    beta: s.beta ?? 0,
  };
  be.gemm(args);
  const out = be.download(c) as Float32Array;
  for (const st of [a, b, c]) be.free(st);
  return out;
}

function checkGemm(s: GemmSpec): void {
  const got = runGemm(wasm, s);
  const want = runGemm(js, s);
  const tag = `gemm ${s.batch ?? 1}x[${s.m}x${s.k}]${s.transA ? "T" : ""}@[${s.k}x${s.n}]${
    s.transB ? "T" : ""
  } alpha=${s.alpha ?? 1} beta=${s.beta ?? 0}`;
  for (let i = 0; i < got.length; i++) {
    if (want[i] === SENTINEL) assert.equal(got[i], SENTINEL, `${tag}: wrote outside C at ${i}`);
    else assert.ok(!Number.isNaN(got[i]), `${tag}: element ${i} not written`);
  }
  const tol = 2e-6 * Math.sqrt(Math.max(1, s.k)) * 4;
  assertClose(got, want, tol, tol, tag);
}

Deno.test("wasm gemm: odd sizes, all four transposes, poisoned C", () => {
  const sizes = [1, 3, 7, 17, 63, 65];
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      for (const m of sizes) {
        for (const n of [1, 7, 9, 65]) {
          for (const k of [1, 17, 63]) checkGemm({ m, n, k, transA, transB });
        }
      }
    }
  }
});

Deno.test("wasm gemm: K, N and M beyond one cache block (KC=256, MC=96)", () => {
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      checkGemm({ m: 101, n: 45, k: 300, transA, transB });
      checkGemm({ m: 13, n: 1100, k: 70, transA, transB, alpha: -0.5, beta: 1 });
    }
  }
});

Deno.test("wasm gemm: batched strides, shared operands, alpha, accumulate", () => {
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      checkGemm({ m: 7, n: 9, k: 5, transA, transB, batch: 5 });
      checkGemm({ m: 7, n: 9, k: 5, transA, transB, batch: 3, shareA: true, alpha: 2, beta: 1 });
      checkGemm({ m: 13, n: 3, k: 17, transA, transB, batch: 4, shareB: true, alpha: 0.25 });
    }
  }
  checkGemm({ m: 6, n: 8, k: 0, transA: false, transB: false, batch: 2 });
  checkGemm({ m: 6, n: 8, k: 0, transA: false, transB: false, batch: 2, beta: 1 });
});

/** op(A) @ op(B) on the wasm backend, A and B given untransposed (m x k, k x n) and laid out
 * as the transposes ask. */
function product(
  a: Float32Array,
  b: Float32Array,
  m: number,
  n: number,
  k: number,
  tA: boolean,
  tB: boolean,
) {
  const t = (x: Float32Array, rows: number, cols: number) =>
    Float32Array.from(
      { length: rows * cols },
      (_, i) => x[(i % rows) * cols + Math.floor(i / rows)],
    );
  const as = wasm.upload(tA ? t(a, m, k) : a, "f32");
  const bs = wasm.upload(tB ? t(b, k, n) : b, "f32");
  const cs = wasm.upload(new Float32Array(m * n).fill(NaN), "f32");
  wasm.gemm(gemmArgs(as, bs, cs, m, n, k, { transA: tA, transB: tB }));
  const out = wasm.download(cs) as Float32Array;
  for (const st of [as, bs, cs]) wasm.free(st);
  return out;
}

Deno.test("wasm gemm: an element's bits do not depend on packing, tile or edge path", () => {
  // 250 rows pack B; the 59-row prefix reads B in place and ends in a 5-row edge tile; the
  // transposed layouts go through the packing copies. Every path must sum the same products
  // in the same order with the same multiply-add.
  const m = 250, n = 70, k = 300;
  const a = randn(11, m * k), b = randn(12, k * n);
  const full = product(a, b, m, n, k, false, false);
  for (const [tA, tB] of [[true, false], [false, true], [true, true]]) {
    assert.deepEqual(product(a, b, m, n, k, tA, tB), full, `transA=${tA} transB=${tB}`);
  }
  const rows = 59;
  const prefix = full.subarray(0, rows * n);
  for (const [tA, tB] of [[false, false], [true, false], [false, true]]) {
    const got = product(a.subarray(0, rows * k), b, rows, n, k, tA, tB);
    assert.deepEqual(got, prefix, `first ${rows} rows, transA=${tA} transB=${tB}`);
  }
});

const UNARY: [UnaryOp, number, number, number][] = [
  // op, alpha, input range lo, hi
  ["neg", 0, -3, 3],
  ["exp", 0, -20, 20],
  ["log", 0, 1e-3, 1e3],
  ["sqrt", 0, 1e-3, 1e3],
  ["tanh", 0, -6, 6],
  ["sigmoid", 0, -20, 20],
  ["gelu", 0, -6, 6],
  ["relu", 0, -3, 3],
  ["leaky_relu", 0.1, -3, 3],
  ["softplus", 0, -30, 30],
  ["sin", 0, -10, 10],
  ["cos", 0, -10, 10],
  ["abs", 0, -3, 3],
  ["square", 0, -3, 3],
  ["scale", 1.75, -3, 3],
  ["add_scalar", -0.5, -3, 3],
  ["pow_scalar", 2.5, 0.01, 5],
];

Deno.test("wasm unary and unaryGrad: every op, vector tails 1..9, 63, 65, poisoned output", () => {
  for (const [op, alpha, lo, hi] of UNARY) {
    for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9, 63, 65]) {
      const r = new Rng(n);
      const xs = Float32Array.from({ length: n }, () => lo + (hi - lo) * r.uniform());
      const gs = randn(n + 100, n);
      const outs = [wasm, js].map((be) => {
        const x = be.upload(xs, "f32");
        const y = be.upload(new Float32Array(n + 1).fill(NaN), "f32");
        be.fill(y, SENTINEL, n, 1);
        be.unary(op, x, y, n, alpha);
        const g = be.upload(gs, "f32");
        const d = be.upload(new Float32Array(n + 1).fill(NaN), "f32");
        be.fill(d, SENTINEL, n, 1);
        // both backends differentiate at the same y, so only the derivative is compared
        const yRef = be.upload(xs.map((v) => unaryForward(op, v, alpha)), "f32");
        be.unaryGrad(op, x, yRef, g, d, n, alpha);
        return [be.download(y), be.download(d)];
      });
      assert.equal(outs[0][0][n], SENTINEL, `${op} n=${n}: wrote past the end`);
      assert.equal(outs[0][1][n], SENTINEL, `${op} n=${n}: grad wrote past the end`);
      assertClose(outs[0][0], outs[1][0], 2e-6, 1e-7, `${op} n=${n}`);
      assertClose(outs[0][1], outs[1][1], 4e-6, 1e-6, `${op} grad n=${n}`);
    }
  }
});

Deno.test("wasm GELU gradient from its output: zero, signed zero, subnormals, both tails", () => {
  // The kernel takes Phi(x) = y / x from the forward's output, and 1/2 at x = 0.
  const xs = Float32Array.from([0, -0, 1e-40, -1e-40, 1e-20, -1e-20, -7, -30, 7, 30, -0.7517]);
  const n = xs.length;
  const x = wasm.upload(xs, "f32");
  const y = wasm.alloc(n, "f32");
  wasm.unary("gelu", x, y, n, 0);
  const d = wasm.alloc(n, "f32");
  wasm.unaryGrad("gelu", x, y, wasm.upload(new Float32Array(n).fill(1), "f32"), d, n, 0);
  const got = wasm.download(d) as Float32Array;
  for (let i = 0; i < n; i++) {
    const v = xs[i];
    const want = unaryDerivative("gelu", v, unaryForward("gelu", v, 0), 0);
    assert.ok(Number.isFinite(got[i]), `x=${v}: ${got[i]}`);
    assert.ok(Math.abs(got[i] - want) <= 2e-7, `x=${v}: ${got[i]} vs ${want}`);
  }
  assert.equal(got[0], 0.5);
  assert.equal(got[1], 0.5);
});

Deno.test("wasm vector math: relative accuracy over wide ranges", () => {
  const cases: [UnaryOp, number, number, boolean, number][] = [
    // op, lo, hi, geometric spacing, max relative error
    ["exp", -87, 88.7, false, 3e-7],
    ["log", 1e-37, 1e37, true, 3e-7],
    ["log", 0.5, 2, false, 3e-7],
    ["tanh", -10, 10, false, 3e-7],
    ["sigmoid", -80, 80, false, 3e-7],
    ["softplus", -80, 80, false, 3e-7],
    ["gelu", -6, 10, false, 1.5e-6], // left tail: the rounding of x*x inside exp(-x*x/2)
    ["sin", -50, 50, false, 3e-7],
    ["cos", -50, 50, false, 3e-7],
  ];
  const n = 20011;
  for (const [op, lo, hi, geo, tol] of cases) {
    const xs = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const t = i / (n - 1);
      xs[i] = geo ? Math.exp(Math.log(lo) + t * Math.log(hi / lo)) : lo + t * (hi - lo);
    }
    const x = wasm.upload(xs, "f32");
    const y = wasm.alloc(n, "f32");
    wasm.unary(op, x, y, n, 0);
    const ys = wasm.download(y);
    for (let i = 0; i < n; i++) {
      const ref = unaryForward(op, xs[i], 0);
      // relative error, with an absolute floor for values near a zero crossing
      const err = Math.abs(ys[i] - ref) / Math.max(Math.abs(ref), 1e-6);
      if (err > tol) assert.fail(`${op}(${xs[i]}) = ${ys[i]}, want ${ref} (rel ${err})`);
    }
  }
});

Deno.test("wasm vector math: special values", () => {
  const xs = new Float32Array([0, -0, Infinity, -Infinity, NaN, -1, 1e-40, 100, -100]);
  const n = xs.length;
  const x = wasm.upload(xs, "f32");
  const y = wasm.alloc(n, "f32");
  const run = (op: UnaryOp) => {
    wasm.unary(op, x, y, n, 0);
    return Array.from(wasm.download(y));
  };
  const logs = run("log");
  assert.deepEqual(logs.slice(0, 5), [-Infinity, -Infinity, Infinity, NaN, NaN]);
  assert.ok(Number.isNaN(logs[5]));
  assert.ok(Math.abs(logs[6] - Math.log(Math.fround(1e-40))) < 1e-4, `log of subnormal ${logs[6]}`);
  const exps = run("exp");
  assert.deepEqual(exps.slice(0, 4), [1, 1, Infinity, 0]);
  assert.ok(Number.isNaN(exps[4]));
  assert.equal(exps[7], Infinity);
  assert.equal(exps[8], 0);
  const th = run("tanh");
  assert.deepEqual([th[2], th[3], th[7], th[8]], [1, -1, 1, -1]);
  const sg = run("sigmoid");
  assert.deepEqual([sg[0], sg[2], sg[3], sg[7], sg[8]], [0.5, 1, 0, 1, 0]);
});

Deno.test("wasm dropout equals the js backend bit for bit", () => {
  for (const n of [1, 3, 4, 5, 17, 4099]) {
    const x = randn(n, n);
    for (const p of [0, 0.1, 1 / 3, 0.5, 0.999, 1]) {
      for (const seed of [0, 7, -1, 0x80000001, 2 ** 32 + 5]) {
        const outs = [wasm, js].map((be) => {
          const s = be.upload(x, "f32");
          const o = be.upload(new Float32Array(n).fill(NaN), "f32");
          be.dropout(s, o, n, p, seed);
          return be.download(o);
        });
        assert.deepEqual(outs[0], outs[1], `n=${n} p=${p} seed=${seed}`);
      }
    }
  }
});

Deno.test("wasm dropout is x times a mask of 0 and f32(1/(1-p)) drawn by hashUniform", () => {
  const n = 4099;
  const x = randn(3, n);
  for (const [p, seed] of [[0.1, 11], [0.5, 0xfffffffe], [1 / 3, 2]]) {
    const keep = Math.fround(1 / (1 - p));
    const s = wasm.upload(x, "f32");
    const o = wasm.alloc(n, "f32");
    wasm.dropout(s, o, n, p, seed);
    const got = wasm.download(o);
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const m = hashUniform(seed, i) >= p ? keep : 0;
      if (m) kept++;
      assert.equal(got[i], Math.fround(x[i] * m), `p=${p} i=${i}`);
    }
    // The mask is a draw, not all-kept or all-dropped.
    assert.ok(Math.abs(kept / n - (1 - p)) < 0.03, `p=${p}: kept ${kept} of ${n}`);
  }
});

Deno.test("wasm binary, reduceSum, softmax, layerNorm: odd widths", () => {
  for (const cols of [1, 2, 3, 5, 7, 17, 63, 65]) {
    const rows = 3;
    const size = rows * cols;
    const outs = [wasm, js].map((be) => {
      const x = be.upload(randn(cols, size), "f32");
      const v = be.upload(randn(cols + 1, cols), "f32");
      const res: (Float32Array | Int32Array)[] = [];
      const o = be.upload(new Float32Array(size).fill(NaN), "f32");
      be.binary("mul", x, [cols, 1], v, [0, 1], o, [rows, cols]);
      res.push(be.download(o));
      be.binary("sub", v, [0, 1], x, [cols, 1], o, [rows, cols]);
      res.push(be.download(o));
      const r = be.upload(new Float32Array(rows).fill(NaN), "f32");
      be.reduceSum(x, [rows, cols], r, [1, 0], rows, false);
      res.push(be.download(r));
      be.softmax(x, o, rows, cols, false);
      res.push(be.download(o));
      be.softmax(x, o, rows, cols, true);
      res.push(be.download(o));
      const gamma = be.upload(randn(cols + 2, cols), "f32");
      const beta = be.upload(randn(cols + 3, cols), "f32");
      const mean = be.alloc(rows, "f32");
      const rstd = be.alloc(rows, "f32");
      be.layerNorm(x, gamma, beta, o, mean, rstd, rows, cols, 1e-5);
      res.push(be.download(o));
      return res;
    });
    outs[0].forEach((got, i) => assertClose(got, outs[1][i], 1e-5, 1e-5, `cols=${cols} #${i}`));
  }
});

Deno.test("wasm softmax and CE row kernels: rows with NaN, infinities and signed zeros", () => {
  // The row max uses pmax: a NaN is skipped there, but the sum of exponentials still carries it,
  // so a row with a NaN is NaN throughout, as with a NaN-propagating max.
  const cols = 11;
  const rows: number[][] = [
    [1, 2, NaN, 3, 0, 0, 0, 0, 0, 0, 0],
    [NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NaN],
    [
      -Infinity,
      -Infinity,
      -Infinity,
      -Infinity,
      -Infinity,
      0,
      -Infinity,
      -Infinity,
      -Infinity,
      -Infinity,
      -Infinity,
    ],
    [-0, -0, -0, -0, 0, -0, -0, -0, -0, -0, -0],
    [-0, -0, -0, -0, -0, -0, -0, -0, -0, -0, -0],
    [5, -1e30, 2, Infinity, 0, 0, 0, 0, 0, 0, 0],
  ];
  const x = wasm.upload(Float32Array.from(rows.flat()), "f32");
  const n = rows.length;
  for (const log of [false, true]) {
    const out = wasm.alloc(n * cols, "f32");
    wasm.softmax(x, out, n, cols, log);
    const got = wasm.download(out) as Float32Array;
    for (let r = 0; r < n; r++) {
      const row = rows[r];
      const m = Math.max(...row);
      const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
      for (let c = 0; c < cols; c++) {
        const want = log ? row[c] - m - Math.log(s) : Math.exp(row[c] - m) / s;
        const g = got[r * cols + c];
        if (Number.isNaN(want)) assert.ok(Number.isNaN(g), `log=${log} [${r},${c}] ${g}`);
        else if (!Number.isFinite(want)) assert.equal(g, want, `log=${log} [${r},${c}]`);
        else assert.ok(Math.abs(g - want) <= 1e-6 * Math.max(1, Math.abs(want)), `[${r},${c}]`);
      }
    }
  }
  const targets = wasm.upload(new Int32Array(n).fill(5), "i32");
  const lse = wasm.alloc(n, "f32");
  const picked = wasm.alloc(n, "f32");
  wasm.crossEntropyBlock(x, targets, lse, picked, n, cols, 0, true);
  const l = wasm.download(lse) as Float32Array;
  for (let r = 0; r < n; r++) {
    const m = Math.max(...rows[r]);
    const want = m + Math.log(rows[r].reduce((a, v) => a + Math.exp(v - m), 0));
    if (Number.isNaN(want)) assert.ok(Number.isNaN(l[r]), `lse[${r}] ${l[r]}`);
    else assert.ok(Math.abs(l[r] - want) <= 1e-6 * Math.max(1, Math.abs(want)), `lse[${r}]`);
  }
});

Deno.test("wasm indexing: a bad index throws before anything is written", () => {
  const table = wasm.upload(randn(1, 12), "f32");
  const idx = wasm.upload(Int32Array.from([0, 2, 4, 1]), "i32");
  const out = wasm.upload(new Float32Array(12).fill(7), "f32");
  assert.throws(() => wasm.gather(table, idx, out, 4, 3), /index 4 at position 2/);
  assert.throws(() => wasm.scatterAdd(table, idx, out, 4, 3), RangeError);
  assert.deepEqual(Array.from(wasm.download(out)), new Array(12).fill(7));
  const neg = wasm.upload(Int32Array.from([0, -1]), "i32");
  assert.throws(() => wasm.pick(table, neg, out, 2, 6), /index -1/);
  assert.throws(() => wasm.pickGrad(table, neg, out, 2, 6), RangeError);
  assert.deepEqual(Array.from(wasm.download(out)), new Array(12).fill(7));
});

Deno.test("wasm storage checks: bounds, freed storage, foreign storage", () => {
  const a: Storage = wasm.alloc(10, "f32");
  const b = wasm.alloc(10, "f32");
  assert.throws(() => wasm.axpy(a, b, 11, 1), RangeError);
  assert.throws(() => wasm.download(a, 5, 6), RangeError);
  assert.throws(
    () =>
      wasm.gemm({
        a,
        b,
        c: b,
        m: 2,
        n: 2,
        k: 3,
        transA: false,
        transB: false,
        batch: 2,
        strideA: 6,
        strideB: 0,
        strideC: 4,
        aOffset: 0,
        bOffset: 0,
        cOffset: 0,
        alpha: 1,
        beta: 0,
      }),
    RangeError,
  );
  wasm.free(a);
  assert.throws(() => wasm.fill(a, 1), /freed/);
  assert.throws(() => wasm.fill(js.alloc(3, "f32"), 1), TypeError);
});
