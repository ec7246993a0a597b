/**
 * Kernel-by-kernel parity cases: each case runs one Backend method on seeded inputs and returns
 * what it wrote, so a candidate backend (wasm, native, cuda) can be compared with the reference
 * JsBackend within float32 tolerance. Shapes are chosen to hit every code path a fast backend
 * may special-case: tile edges, broadcast patterns, chunked reductions, repeated indices.
 */
import assert from "node:assert/strict";
import {
  type Backend,
  type BinaryOp,
  maskSpan,
  type Storage,
  type UnaryOp,
} from "../../core/backend.ts";
import { Rng } from "../../core/random.ts";

export interface ParityCase {
  name: string;
  /** Runs the kernel(s) on `be`; returns the outputs to compare. */
  run(be: Backend): (Float32Array | Int32Array | number)[];
  /** Relative and absolute tolerance (0, 0: bit-exact). */
  rtol?: number;
  atol?: number;
}

function randn(seed: number, n: number, scale = 1): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal() * scale);
}

function uniform(seed: number, n: number, lo: number, hi: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r.uniform());
}

function ints(seed: number, n: number, bound: number): Int32Array {
  const r = new Rng(seed);
  return Int32Array.from({ length: n }, () => r.int(bound));
}

function up(be: Backend, data: Float32Array | Int32Array): Storage {
  return be.upload(data, data instanceof Int32Array ? "i32" : "f32");
}

function contiguous(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

/** Strides of an input of `inShape` broadcast over `outShape` (0 on broadcast dims). */
function bstrides(inShape: readonly number[], outShape: readonly number[]): number[] {
  const c = contiguous(inShape);
  return outShape.map((d, i) => (inShape[i] === 1 && d !== 1 ? 0 : c[i]));
}

const prod = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);

interface GemmCase {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  batch: number;
  shareA?: boolean;
  shareB?: boolean;
  alpha?: number;
  beta?: 0 | 1;
  offsets?: boolean;
  /** Row strides this much longer than the rows (lda, ldb, ldc): blocks of wider matrices. */
  pad?: number;
}

function gemmCase(c: GemmCase): ParityCase {
  const tag = `${c.batch}x[${c.m}x${c.k}]${c.transA ? "T" : ""}@[${c.k}x${c.n}]${
    c.transB ? "T" : ""
  } a=${c.alpha ?? 1} b=${c.beta ?? 0}${c.shareA ? " shareA" : ""}${c.shareB ? " shareB" : ""}${
    c.offsets ? " offsets" : ""
  }${c.pad ? ` ld+${c.pad}` : ""}`;
  return {
    name: `gemm ${tag}`,
    rtol: 1e-4,
    atol: 1e-4,
    run(be) {
      const off = c.offsets ? 7 : 0;
      const pad = c.pad ?? 0;
      // Stored rows x row length of each operand, and its row stride.
      const [rA, wA] = c.transA ? [c.k, c.m] : [c.m, c.k];
      const [rB, wB] = c.transB ? [c.n, c.k] : [c.k, c.n];
      const lda = wA + pad, ldb = wB + pad, ldc = c.n + pad;
      const spanA = rA * lda, spanB = rB * ldb, spanC = c.m * ldc;
      const strideA = c.shareA ? 0 : spanA + (c.offsets ? 3 : 0);
      const strideB = c.shareB ? 0 : spanB + (c.offsets ? 5 : 0);
      const strideC = spanC + (c.offsets ? 2 : 0);
      const lenA = off + (c.batch - 1) * strideA + spanA;
      const lenB = off + (c.batch - 1) * strideB + spanB;
      const lenC = off + (c.batch - 1) * strideC + spanC;
      const a = up(be, randn(1, lenA));
      const b = up(be, randn(2, lenB));
      const cInit = randn(3, lenC);
      // beta = 0 must ignore C entirely, NaN included.
      if ((c.beta ?? 0) === 0) cInit.fill(NaN);
      const cs = up(be, cInit);
      be.gemm({
        a,
        b,
        c: cs,
        m: c.m,
        n: c.n,
        k: c.k,
        transA: c.transA,
        transB: c.transB,
        batch: c.batch,
        strideA,
        strideB,
        strideC,
        aOffset: off,
        bOffset: off,
        cOffset: off,
        ...(pad ? { lda, ldb, ldc } : {}),
        alpha: c.alpha ?? 1,
        beta: c.beta ?? 0,
      });
      const out = be.download(cs) as Float32Array;
      // Elements between the batch's matrices are not written; NaN there compares equal anyway.
      return [out];
    },
  };
}

export function gemmCases(): ParityCase[] {
  const cases: ParityCase[] = [];
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      cases.push(gemmCase({ m: 70, n: 33, k: 65, transA, transB, batch: 1 }));
      cases.push(gemmCase({ m: 5, n: 7, k: 3, transA, transB, batch: 4, offsets: true }));
    }
  }
  cases.push(gemmCase({ m: 50, n: 50, k: 64, transA: false, transB: true, batch: 6 }));
  cases.push(gemmCase({ m: 9, n: 11, k: 8, transA: false, transB: false, batch: 3, shareB: true }));
  cases.push(gemmCase({ m: 9, n: 11, k: 8, transA: true, transB: false, batch: 3, shareA: true }));
  cases.push(
    gemmCase({ m: 33, n: 17, k: 40, transA: false, transB: false, batch: 2, alpha: 0.5, beta: 1 }),
  );
  cases.push(gemmCase({ m: 6, n: 4, k: 0, transA: false, transB: false, batch: 2 }));
  cases.push(gemmCase({ m: 6, n: 4, k: 0, transA: false, transB: false, batch: 2, beta: 1 }));
  cases.push(gemmCase({ m: 1, n: 1, k: 1, transA: false, transB: false, batch: 1 }));
  cases.push(gemmCase({ m: 130, n: 257, k: 64, transA: false, transB: false, batch: 1 }));
  // Attention heads read and written in place: blocks of wider rows, every transpose.
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      cases.push(gemmCase({ m: 50, n: 50, k: 32, transA, transB, batch: 3, pad: 32 }));
      cases.push(gemmCase({ m: 7, n: 13, k: 5, transA, transB, batch: 2, pad: 3, offsets: true }));
    }
  }
  cases.push(gemmCase({ m: 6, n: 4, k: 0, transA: false, transB: false, batch: 2, pad: 2 }));
  return cases;
}

const UNARY_OPS: [UnaryOp, number, (seed: number, n: number) => Float32Array][] = [
  ["neg", 0, (s, n) => randn(s, n)],
  ["exp", 0, (s, n) => randn(s, n, 3)],
  ["log", 0, (s, n) => uniform(s, n, 0.01, 10)],
  ["sqrt", 0, (s, n) => uniform(s, n, 0.01, 10)],
  ["tanh", 0, (s, n) => randn(s, n, 3)],
  ["sigmoid", 0, (s, n) => randn(s, n, 10)],
  ["gelu", 0, (s, n) => randn(s, n, 4)],
  ["relu", 0, (s, n) => randn(s, n)],
  ["leaky_relu", 0.2, (s, n) => randn(s, n)],
  ["softplus", 0, (s, n) => randn(s, n, 30)],
  ["sin", 0, (s, n) => randn(s, n, 5)],
  ["cos", 0, (s, n) => randn(s, n, 5)],
  ["abs", 0, (s, n) => randn(s, n)],
  ["square", 0, (s, n) => randn(s, n)],
  ["scale", -0.37, (s, n) => randn(s, n)],
  ["add_scalar", 1.5, (s, n) => randn(s, n)],
  ["pow_scalar", 1.7, (s, n) => uniform(s, n, 0.01, 4)],
];

export function elementwiseCases(): ParityCase[] {
  const cases: ParityCase[] = [];
  const n = 1037;
  for (const [op, alpha, gen] of UNARY_OPS) {
    cases.push({
      name: `unary ${op}`,
      rtol: 2e-5,
      atol: 1e-6,
      run(be) {
        const x = up(be, gen(10, n));
        const y = be.alloc(n, "f32");
        be.unary(op, x, y, n, alpha);
        return [be.download(y)];
      },
    });
    cases.push({
      name: `unaryGrad ${op}`,
      rtol: 2e-5,
      atol: 1e-6,
      run(be) {
        const xs = gen(11, n);
        const x = up(be, xs);
        // y from the same backend, as the tape would pass it.
        const y = be.alloc(n, "f32");
        be.unary(op, x, y, n, alpha);
        const g = up(be, randn(12, n));
        const out = be.alloc(n, "f32");
        be.unaryGrad(op, x, y, g, out, n, alpha);
        return [be.download(out)];
      },
    });
  }

  const shapes: [number[], number[], number[]][] = [
    [[1000], [1000], [1000]],
    [[4, 5], [4, 5], [1, 5]],
    [[4, 5], [4, 1], [4, 5]],
    [[3, 4, 5], [3, 1, 5], [1, 4, 1]],
    [[2, 3, 1, 4, 2, 3], [2, 1, 1, 4, 1, 3], [1, 3, 1, 1, 2, 3]],
    [[256, 50, 64], [256, 50, 64], [1, 50, 64]],
  ];
  for (const op of ["add", "sub", "mul", "div"] as BinaryOp[]) {
    for (const [shape, as, bs] of shapes) {
      cases.push({
        name: `binary ${op} [${as}] . [${bs}] -> [${shape}]`,
        rtol: 1e-6,
        atol: 0,
        run(be) {
          const a = up(be, randn(20, prod(as)));
          const b = up(be, op === "div" ? uniform(21, prod(bs), 0.5, 2) : randn(21, prod(bs)));
          const out = be.alloc(prod(shape), "f32");
          be.binary(op, a, bstrides(as, shape), b, bstrides(bs, shape), out, shape);
          return [be.download(out)];
        },
      });
    }
  }
  // A transposed (non-contiguous) operand, as a view would pass it.
  cases.push({
    name: "binary add with a transposed operand",
    rtol: 1e-6,
    atol: 0,
    run(be) {
      const a = up(be, randn(22, 12));
      const b = up(be, randn(23, 12));
      const out = be.alloc(12, "f32");
      be.binary("add", a, [1, 3], b, [4, 1], out, [3, 4]);
      return [be.download(out)];
    },
  });

  const reductions: [string, number[], number[]][] = [
    ["last dim", [37, 50], [1, 0]],
    ["first dim", [300, 64], [0, 1]],
    ["middle dims", [4, 6, 7, 5], [5, 0, 0, 1]],
    ["all", [13, 17, 3], [0, 0, 0]],
    ["none", [6, 7], [7, 1]],
    ["long rows", [3, 5000], [1, 0]],
    ["long columns (chunked)", [20000, 7], [0, 1]],
    ["to a transposed layout", [4, 3, 5], [1, 0, 4]],
  ];
  for (const [label, shape, outStrides] of reductions) {
    for (const accumulate of [false, true]) {
      cases.push({
        name: `reduceSum ${label}${accumulate ? " accumulate" : ""}`,
        rtol: 1e-5,
        atol: 1e-4,
        run(be) {
          const outSize = shape.reduce((p, d, i) => (outStrides[i] ? p * d : p), 1);
          const x = up(be, randn(30, prod(shape)));
          const out = up(be, randn(31, outSize));
          be.reduceSum(x, shape, out, outStrides, outSize, accumulate);
          return [be.download(out)];
        },
      });
    }
  }

  cases.push({
    name: "axpy",
    rtol: 1e-6,
    atol: 1e-7,
    run(be) {
      const x = up(be, randn(40, 5000));
      const out = up(be, randn(41, 5000));
      be.axpy(x, out, 4999, -0.25);
      return [be.download(out)];
    },
  });
  for (const n of [1, 777, 200_003]) {
    cases.push({
      name: `sumSquares n=${n}`,
      rtol: 1e-6,
      atol: 0,
      run(be) {
        const x = up(be, randn(42, n + 3));
        return [be.sumSquares(x, n)];
      },
    });
  }

  const perms: [number[], number[]][] = [
    [[7, 9], [1, 0]],
    [[2, 3, 4], [1, 0, 2]],
    [[2, 3, 4], [0, 2, 1]],
    [[2, 3, 4], [2, 0, 1]],
    [[2, 5, 3, 4], [0, 2, 1, 3]],
    [[2, 1, 3, 1, 2, 2], [5, 4, 3, 2, 1, 0]],
    [[4, 6], [0, 1]],
  ];
  for (const [shape, perm] of perms) {
    cases.push({
      name: `permute [${shape}] by [${perm}]`,
      rtol: 0,
      atol: 0,
      run(be) {
        const x = up(be, randn(50, prod(shape)));
        const out = be.alloc(prod(shape), "f32");
        be.permute(x, shape, perm, out);
        return [be.download(out)];
      },
    });
  }
  cases.push({
    name: "permute int32",
    rtol: 0,
    atol: 0,
    run(be) {
      const x = up(be, ints(51, 24, 1000));
      const out = be.alloc(24, "i32");
      be.permute(x, [2, 3, 4], [2, 1, 0], out);
      return [be.download(out)];
    },
  });
  return cases;
}

export function memoryCases(): ParityCase[] {
  return [
    {
      name: "upload/download round trip (f32, i32, ranges)",
      rtol: 0,
      atol: 0,
      run(be) {
        const f = up(be, randn(60, 100));
        const i = up(be, ints(61, 100, 1 << 30));
        return [be.download(f), be.download(f, 10, 20), be.download(i), be.download(i, 99, 1)];
      },
    },
    {
      name: "fill f32 and i32 with ranges",
      rtol: 0,
      atol: 0,
      run(be) {
        const f = up(be, randn(62, 100));
        be.fill(f, 2.5, 10, 30);
        const g = be.alloc(50, "f32");
        be.fill(g, -1);
        const i = up(be, ints(63, 40, 100));
        be.fill(i, 7, 5);
        return [be.download(f), be.download(g), be.download(i)];
      },
    },
    {
      name: "copy2d strided, offsets, accumulate",
      rtol: 1e-6,
      atol: 0,
      run(be) {
        const src = up(be, randn(64, 200));
        const dst = up(be, randn(65, 300));
        be.copy2d(src, 3, 10, dst, 5, 12, 9, 7, false);
        be.copy2d(src, 100, 7, dst, 150, 7, 10, 7, false);
        be.copy2d(src, 0, 20, dst, 1, 30, 5, 20, true);
        // Short rows (a concat along an inner axis of size 1), copied and accumulated.
        be.copy2d(src, 150, 1, dst, 200, 2, 40, 1, false);
        be.copy2d(src, 60, 3, dst, 201, 2, 30, 1, true);
        be.copy2d(src, 7, 5, dst, 250, 9, 5, 8, true);
        const isrc = up(be, ints(66, 50, 100));
        const idst = be.alloc(30, "i32");
        be.fill(idst, 0);
        be.copy2d(isrc, 2, 10, idst, 0, 6, 5, 6, false);
        return [be.download(dst), be.download(idst)];
      },
    },
  ];
}

/**
 * crossEntropyBlock over every block of a [rows x items] logit matrix, then crossEntropyBlockGrad
 * of each block: the running lse, the picked target logits and every block's gradient. Targets
 * hit every block, the first and last column, and (one row) no column at all.
 */
function crossEntropyBlocksCase(rows: number, items: number, block: number): ParityCase {
  return {
    name: `crossEntropyBlock and Grad ${rows}x${items} in blocks of ${block}`,
    rtol: 1e-5,
    atol: 1e-6,
    run(be) {
      const x = randn(120, rows * items, 4);
      const raw = ints(121, rows, items);
      raw[0] = 0;
      raw[rows - 1] = items - 1;
      if (rows > 2) raw[1] = items + 5;
      const targets = up(be, raw);
      const w = up(be, randn(122, rows));
      const lse = be.alloc(rows, "f32");
      const picked = be.alloc(rows, "f32");
      const blocks: Storage[] = [];
      for (let j0 = 0; j0 < items; j0 += block) {
        const cols = Math.min(block, items - j0);
        const z = new Float32Array(rows * cols);
        for (let r = 0; r < rows; r++) {
          z.set(x.subarray(r * items + j0, r * items + j0 + cols), r * cols);
        }
        const s = up(be, z);
        be.crossEntropyBlock(s, targets, lse, picked, rows, cols, j0, j0 === 0);
        blocks.push(s);
      }
      const out: Float32Array[] = [be.download(lse) as Float32Array];
      out.push(be.download(picked) as Float32Array);
      blocks.forEach((s, i) => {
        const cols = Math.min(block, items - i * block);
        be.crossEntropyBlockGrad(s, targets, lse, w, rows, cols, i * block);
        out.push(be.download(s) as Float32Array);
      });
      return out;
    },
  };
}

export function rowCases(): ParityCase[] {
  const cases: ParityCase[] = [];
  for (const [rows, items, block] of [[37, 101, 37], [5, 1000, 1000], [3, 7, 1], [64, 130, 64]]) {
    cases.push(crossEntropyBlocksCase(rows, items, block));
  }
  // Attention's fused softmax: [a, heads, q] rows, masks broadcast over heads, queries or all.
  const masked: [number, number, number, number, [number, number, number] | null][] = [
    [3, 2, 50, 50, [50, 0, 1]], // [B, 1, L, L] causal + padding
    [4, 2, 1, 50, [1, 0, 0]], // [B, 1, 1, L] padding keys
    [2, 3, 7, 9, [0, 0, 1]], // [1, 1, q, L]
    [2, 3, 5, 6, [15, 5, 1]], // a full mask
    [2, 2, 3, 37, null],
  ];
  for (const [a, heads, q, cols, maskRows] of masked) {
    cases.push({
      name: `maskedSoftmax [${a},${heads},${q},${cols}] mask rows ${maskRows ?? "none"}`,
      rtol: 1e-5,
      atol: 1e-6,
      run(be) {
        const rows = a * heads * q;
        const x = up(be, randn(73, rows * cols, 4));
        const span = maskRows ? maskSpan(rows, cols, heads, q, maskRows) : 0;
        const m = maskRows
          ? up(be, uniform(74, span, -3, 3).map((v) => v < -2 ? -10000 : v))
          : null;
        const y = be.alloc(rows * cols, "f32");
        be.maskedSoftmax(x, m, y, rows, cols, 0.125 + 0.01, heads, q, maskRows ?? [0, 0, 0]);
        return [be.download(y)];
      },
    });
  }
  for (const [rows, cols] of [[37, 50], [5, 1000], [3, 1], [64, 33]]) {
    for (const log of [false, true]) {
      cases.push({
        name: `${log ? "logSoftmax" : "softmax"} ${rows}x${cols}`,
        rtol: 1e-5,
        atol: 1e-6,
        run(be) {
          const x = up(be, randn(70, rows * cols, 4));
          const y = be.alloc(rows * cols, "f32");
          be.softmax(x, y, rows, cols, log);
          return [be.download(y)];
        },
      });
      cases.push({
        name: `${log ? "logSoftmax" : "softmax"}Grad ${rows}x${cols}`,
        rtol: 1e-4,
        atol: 1e-6,
        run(be) {
          const x = up(be, randn(71, rows * cols, 4));
          const y = be.alloc(rows * cols, "f32");
          be.softmax(x, y, rows, cols, log);
          const g = up(be, randn(72, rows * cols));
          const dx = be.alloc(rows * cols, "f32");
          be.softmaxGrad(y, g, dx, rows, cols, log);
          const scaled = be.alloc(rows * cols, "f32");
          be.softmaxGrad(y, g, scaled, rows, cols, log, 0.17);
          return [be.download(dx), be.download(scaled)];
        },
      });
    }
  }
  for (const [rows, cols] of [[300, 64], [7, 300], [5000, 64], [3, 1]]) {
    cases.push({
      name: `layerNorm ${rows}x${cols}`,
      rtol: 1e-4,
      atol: 1e-5,
      run(be) {
        const x = up(be, randn(80, rows * cols, 3));
        const gamma = up(be, randn(81, cols));
        const beta = up(be, randn(82, cols));
        const out = be.alloc(rows * cols, "f32");
        const mean = be.alloc(rows, "f32");
        const rstd = be.alloc(rows, "f32");
        be.layerNorm(x, gamma, beta, out, mean, rstd, rows, cols, 1e-5);
        return [be.download(out), be.download(mean), be.download(rstd)];
      },
    });
    cases.push({
      name: `layerNormGrad ${rows}x${cols}`,
      rtol: 1e-4,
      atol: 2e-4,
      run(be) {
        const x = up(be, randn(83, rows * cols, 3));
        const gamma = up(be, randn(84, cols));
        const beta = up(be, randn(85, cols));
        const out = be.alloc(rows * cols, "f32");
        const mean = be.alloc(rows, "f32");
        const rstd = be.alloc(rows, "f32");
        be.layerNorm(x, gamma, beta, out, mean, rstd, rows, cols, 1e-5);
        const g = up(be, randn(86, rows * cols));
        const dx = be.alloc(rows * cols, "f32");
        // dgamma/dbeta accumulate: start from nonzero values.
        const dgamma = up(be, randn(87, cols));
        const dbeta = up(be, randn(88, cols));
        be.layerNormGrad(x, gamma, mean, rstd, g, dx, dgamma, dbeta, rows, cols);
        return [be.download(dx), be.download(dgamma), be.download(dbeta)];
      },
    });
  }
  // DuAF fusion: dims with and without a SIMD tail, one to four modalities, scaled scores.
  for (
    const [rows, dim, m, scale] of [[1280, 64, 3, 1], [37, 7, 1, 1], [5, 3, 4, 2.5], [9, 66, 2, 1]]
  ) {
    const inputs = (be: Backend) => ({
      e: Array.from({ length: m }, (_, j) => up(be, randn(120 + j, rows * dim))),
      t: up(be, randn(125, rows * dim)),
      q: up(be, randn(126, rows * dim, 0.5)),
      h: be.alloc(rows * dim, "f32"),
      omega: be.alloc(rows * m, "f32"),
      keys: be.alloc(rows * m * dim, "f32"),
    });
    cases.push({
      name: `modalityFusion ${rows}x${dim}, ${m} modalities, scale ${scale}`,
      rtol: 1e-4,
      atol: 1e-5,
      run(be) {
        const { e, t, q, h, omega, keys } = inputs(be);
        be.modalityFusion({ e, t, q, h, omega, keys, rows, dim, scale });
        return [be.download(h), be.download(omega), be.download(keys)];
      },
    });
    for (const withOmega of [false, true]) {
      cases.push({
        name: `modalityFusionGrad ${rows}x${dim}, ${m} modalities${withOmega ? ", gω" : ""}`,
        rtol: 1e-4,
        atol: 1e-4,
        run(be) {
          const { e, t, q, h, omega, keys } = inputs(be);
          be.modalityFusion({ e, t, q, h, omega, keys, rows, dim, scale });
          const gh = up(be, randn(127, rows * dim));
          const gw = withOmega ? up(be, randn(128, rows * m)) : null;
          const ge = e.map(() => be.alloc(rows * dim, "f32"));
          const gt = be.alloc(rows * dim, "f32");
          const gq = be.alloc(rows * dim, "f32");
          be.modalityFusionGrad({
            e,
            q,
            omega,
            keys,
            gh,
            gomega: gw,
            ge,
            gt,
            gq,
            rows,
            dim,
            scale,
          });
          return [...ge.map((x) => be.download(x)), be.download(gt), be.download(gq)];
        },
      });
    }
  }
  return cases;
}

export function indexingCases(): ParityCase[] {
  return [
    {
      name: "gather f32 rows",
      rtol: 0,
      atol: 0,
      run(be) {
        const table = up(be, randn(90, 1000 * 16));
        const idx = up(be, ints(91, 777, 1000));
        const out = be.alloc(777 * 16, "f32");
        be.gather(table, idx, out, 777, 16);
        return [be.download(out)];
      },
    },
    {
      name: "gather i32 rows",
      rtol: 0,
      atol: 0,
      run(be) {
        const table = up(be, ints(92, 50 * 3, 1 << 20));
        const idx = up(be, ints(93, 40, 50));
        const out = be.alloc(120, "i32");
        be.gather(table, idx, out, 40, 3);
        return [be.download(out)];
      },
    },
    {
      name: "scatterAdd with heavily repeated indices",
      // ~6700 float32 additions into row 0: summation order shows at ~1e-4.
      rtol: 1e-4,
      atol: 1e-3,
      run(be) {
        const n = 20000, dim = 64, rows = 300;
        const g = up(be, randn(94, n * dim));
        // Index 0 (padding) on a third of the positions, as in padded sequences.
        const raw = ints(95, n, rows);
        for (let i = 0; i < n; i += 3) raw[i] = 0;
        const idx = up(be, raw);
        const out = up(be, randn(96, rows * dim));
        be.scatterAdd(g, idx, out, n, dim);
        return [be.download(out)];
      },
    },
    {
      name: "scatterAdd small",
      rtol: 1e-6,
      atol: 1e-6,
      run(be) {
        const g = up(be, randn(97, 5 * 3));
        const idx = up(be, Int32Array.from([2, 0, 2, 2, 1]));
        const out = be.alloc(4 * 3, "f32");
        be.fill(out, 0);
        be.scatterAdd(g, idx, out, 5, 3);
        return [be.download(out)];
      },
    },
    {
      name: "pick and pickGrad",
      rtol: 1e-6,
      atol: 0,
      run(be) {
        const rows = 513, cols = 37;
        const x = up(be, randn(98, rows * cols));
        const idx = up(be, ints(99, rows, cols));
        const out = be.alloc(rows, "f32");
        be.pick(x, idx, out, rows, cols);
        const g = up(be, randn(100, rows));
        const dx = up(be, randn(101, rows * cols));
        be.pickGrad(g, idx, dx, rows, cols);
        return [be.download(out), be.download(dx)];
      },
    },
  ];
}

export function randomAndOptimizerCases(): ParityCase[] {
  const cases: ParityCase[] = [];
  for (const [p, seed] of [[0.1, 1], [0.5, 0xffffffff], [0, 42], [0.6, 123456789]]) {
    cases.push({
      name: `dropout p=${p} seed=${seed} (bit-exact, out of place and in place)`,
      rtol: 0,
      atol: 0,
      run(be) {
        const x = up(be, randn(seed % 1000, 10007));
        const out = be.alloc(10007, "f32");
        be.dropout(x, out, 10007, p, seed);
        be.dropout(x, x, 10007, p, seed);
        return [be.download(out), be.download(x)];
      },
    });
  }
  for (const decoupled of [false, true]) {
    for (const weightDecay of [0, 0.01]) {
      cases.push({
        name: `adam decoupled=${decoupled} weightDecay=${weightDecay}, 3 steps`,
        rtol: 1e-5,
        atol: 1e-6,
        run(be) {
          const n = 1001;
          const p = up(be, randn(110, n));
          const m = be.alloc(n, "f32");
          const v = be.alloc(n, "f32");
          be.fill(m, 0);
          be.fill(v, 0);
          for (let t = 1; t <= 3; t++) {
            const g = up(be, randn(110 + t, n));
            be.adam({
              p,
              g,
              m,
              v,
              n,
              lr: 1e-3,
              beta1: 0.9,
              beta2: 0.999,
              eps: 1e-8,
              weightDecay,
              decoupled,
              biasCorrection1: 1 - 0.9 ** t,
              biasCorrection2: 1 - 0.999 ** t,
            });
            be.free(g);
          }
          return [be.download(p), be.download(m), be.download(v)];
        },
      });
    }
  }
  return cases;
}

export function allParityCases(): ParityCase[] {
  return [
    ...memoryCases(),
    ...gemmCases(),
    ...elementwiseCases(),
    ...rowCases(),
    ...indexingCases(),
    ...randomAndOptimizerCases(),
  ];
}

/** Runs `c` on both backends and asserts elementwise closeness (NaN matches NaN). */
export function assertParity(c: ParityCase, candidate: Backend, reference: Backend): void {
  const got = c.run(candidate);
  candidate.sync();
  const want = c.run(reference);
  assert.equal(got.length, want.length);
  const rtol = c.rtol ?? 1e-5;
  const atol = c.atol ?? 1e-6;
  for (let o = 0; o < want.length; o++) {
    const g = typeof got[o] === "number" ? [got[o] as number] : got[o] as ArrayLike<number>;
    const w = typeof want[o] === "number" ? [want[o] as number] : want[o] as ArrayLike<number>;
    assert.equal(g.length, w.length, `${c.name}: output ${o} length`);
    for (let i = 0; i < w.length; i++) {
      const a = g[i], b = w[i];
      if (Number.isNaN(b) && Number.isNaN(a)) continue;
      if (a === b) continue;
      const ok = Math.abs(a - b) <= atol + rtol * Math.abs(b);
      if (!ok) {
        assert.fail(
          `${c.name}: output ${o}[${i}] = ${a}, reference ${b} (rtol ${rtol}, atol ${atol})`,
        );
      }
    }
  }
}
