/**
 * The native backend's C kernels (ffi/cpu/kernels.c) against the wasm kernels they mirror, and
 * the C GEMM against CBLAS, on one thread, on the same memory, each call timed in turns (medians
 * of --rounds) with the outputs compared bit for bit against wasm's:
 *
 * - elementwise: exp, tanh, GELU and its gradient, sin (small and wide angles), dropout over 4 Mi
 *   floats (ns an element);
 * - the cross-entropy block rows over [2048 x 12102] logits (a Beauty step's);
 * - the attention softmax of a prefix batch's scores, and the full-ranking ranks of 2048 users;
 * - GEMM on a Beauty step's shapes (d = 64, 12,102 items): the dense products, the
 *   full-catalogue logits and their gradients, and attention's per-head products of a prefix
 *   batch (312 sequences of 46 positions, 2 heads of 32) as one batched call.
 *
 *   deno task bench cpu [--rounds 7] [--lib PATH]
 */
import { parseArgs } from "node:util";
import { buildCpuKernels } from "../ffi/cpu/build.ts";
import { openCpuKernels } from "../ffi/cpu.ts";
import { openBlas } from "../ffi/blas.ts";
import { withCpuKernels } from "../core/backends/cpu_kernels.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import type { KernelExports } from "../core/backends/wasm/kernels.ts";
import { Rng } from "../core/random.ts";
import { cpuModel, median, medianMs } from "./measure.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { rounds: { type: "string", default: "7" }, lib: { type: "string" } },
});
const rounds = Number(values.rounds);

const rt = await WasmBackend.loadRuntime({ threads: 1 });
const wasm = rt.kernels;
// --lib: another build of kernels.c (e.g. one compiled without AVX-512), instead of this host's.
const libPath = values.lib ??
  await buildCpuKernels({ fused: rt.variant === "relaxed", quiet: true });
const c = withCpuKernels(wasm, rt.memory, openCpuKernels(libPath));
const blas = openBlas();
if ("unavailable" in blas) throw new Error(`no CBLAS: ${blas.unavailable}`);
blas.setThreads(1);
const arena = rt.arena;
const scratch = arena.alloc(wasm.GEMM_SCRATCH_BYTES.value as number);
const base = () => Deno.UnsafePointer.of(new Uint8Array(rt.memory.buffer as ArrayBuffer))!;
const rng = new Rng(1);

const time = (runners: (() => void)[]) => medianMs(runners, rounds);

function differing(a: number, b: number, n: number): number {
  const u = arena.i32;
  let d = 0;
  for (let i = 0; i < n; i++) if (u[(a >> 2) + i] !== u[(b >> 2) + i]) d++;
  return d;
}

function fillNormal(at: number, n: number, scale: number): void {
  const f = arena.f32;
  for (let i = 0; i < n; i++) f[(at >> 2) + i] = scale * rng.normal();
}

console.log(`cpu: ${cpuModel()}; ${libPath}; wasm ${rt.variant} SIMD; ${blas.description}`);
console.log(
  "\n| elementwise, 4 Mi floats, one thread | wasm ns/element | C ns/element | wasm / C | bits |",
);
console.log("|---|---|---|---|---|");
{
  const n = 4 << 20;
  const x = arena.alloc(4 * n), g = arena.alloc(4 * n), y = arena.alloc(4 * n);
  const oa = arena.alloc(4 * n), ob = arena.alloc(4 * n);
  fillNormal(x, n, 2);
  fillNormal(g, n, 1);
  wasm.unary(6, x, y, n, 0);
  // A time embedding's angles (alpha t + beta: days times 2 pi / period) for the wide sin rows.
  fillNormal(y, n, 3000);
  const wide = arena.alloc(4 * n);
  arena.f32.copyWithin(wide >> 2, y >> 2, (y >> 2) + n);
  wasm.unary(6, x, y, n, 0);
  const cases: [string, (k: KernelExports, out: number) => void][] = [
    ["exp", (k, o) => k.unary(1, x, o, n, 0)],
    ["tanh", (k, o) => k.unary(4, x, o, n, 0)],
    ["GELU", (k, o) => k.unary(6, x, o, n, 0)],
    ["GELU gradient", (k, o) => k.unaryGrad(6, x, y, g, o, n, 0)],
    ["sin", (k, o) => k.unary(10, x, o, n, 0)],
    ["sin, angles of sd 3000", (k, o) => k.unary(10, wide, o, n, 0)],
    ["sin gradient, angles of sd 3000", (k, o) => k.unaryGrad(10, wide, wide, g, o, n, 0)],
    ["dropout (p = 0.2)", (k, o) => k.dropout(x, o, n, 3355444, 1.25, 7)],
  ];
  for (const [name, run] of cases) {
    const [a, b] = time([() => run(wasm, oa), () => run(c, ob)]);
    const ns = (ms: number) => (ms * 1e6 / n).toFixed(2);
    const bits = differing(oa, ob, n) ? `${differing(oa, ob, n)} differ` : "same";
    console.log(`| ${name} | ${ns(a)} | ${ns(b)} | ${(a / b).toFixed(1)}x | ${bits} |`);
  }
  for (const p of [x, g, y, oa, ob, wide]) arena.free(p, 4 * n);
}

console.log("\n| cross-entropy rows, [2048 x 12102] | wasm ms | C ms | wasm / C | bits |");
console.log("|---|---|---|---|---|");
{
  const rows = 2048, cols = 12102, n = rows * cols;
  const src = arena.alloc(4 * n), xa = arena.alloc(4 * n), xb = arena.alloc(4 * n);
  const small = arena.alloc(4 * rows * 12);
  const tgt = small, w = tgt + 4 * rows;
  const outs = [w + 4 * rows, w + 4 * 6 * rows]; // lse, picked, shift for each
  fillNormal(src, n, 3);
  for (let r = 0; r < rows; r++) {
    arena.i32[(tgt >> 2) + r] = rng.int(cols);
    arena.f32[(w >> 2) + r] = 1 / rows;
  }
  const runs = [wasm, c].map((k, i) => {
    const x = i ? xb : xa, lse = outs[i], picked = lse + 4 * rows, shift = picked + 4 * rows;
    return {
      fwd: () => {
        arena.f32.copyWithin(x >> 2, src >> 2, (src >> 2) + n);
        k.crossEntropyBlock(x, tgt, lse, picked, rows, cols, 0, 1, shift);
      },
      grad: () => k.crossEntropyBlockGrad(x, tgt, lse, w, rows, cols, 0, shift),
    };
  });
  // The copy of the logits is part of both forward timings (the kernel works in place).
  const [fa, fb] = time([runs[0].fwd, runs[1].fwd]);
  const bitsF = differing(xa, xb, n) + differing(outs[0], outs[1], 3 * rows);
  console.log(
    `| forward (logits copied in, max, e^(x - max) kept, log-sum-exp) | ${fa.toFixed(1)} | ${
      fb.toFixed(1)
    } | ${(fa / fb).toFixed(1)}x | ${bitsF ? `${bitsF} differ` : "same"} |`,
  );
  const ga: number[] = [], gb: number[] = [];
  for (let r = 0; r < rounds; r++) {
    // Each gradient pass rescales the kept exponentials in place: one pass per fresh forward.
    for (const [run, into] of [[runs[0], ga], [runs[1], gb]] as const) {
      run.fwd();
      const t = performance.now();
      run.grad();
      into.push(performance.now() - t);
    }
  }
  const bitsG = differing(xa, xb, n);
  console.log(
    `| gradient (the kept exponentials rescaled) | ${median(ga).toFixed(1)} | ${
      median(gb).toFixed(1)
    } | ${(median(ga) / median(gb)).toFixed(1)}x | ${bitsG ? `${bitsG} differ` : "same"} |`,
  );
  for (const [p, bytes] of [[src, 4 * n], [xa, 4 * n], [xb, 4 * n], [small, 4 * rows * 12]]) {
    arena.free(p, bytes);
  }
}

console.log("\n| rows, one thread | wasm ms | C ms | wasm / C | bits |");
console.log("|---|---|---|---|---|");
{
  // Attention softmax of a prefix batch's scores (312 sequences, 2 heads, 46 positions) with a
  // [B, 1, L, L] mask; full-ranking ranks of 2048 users' targets among 12,102 items.
  const [b, heads, len] = [312, 2, 46];
  const n = b * heads * len * len, maskN = b * len * len;
  const x = arena.alloc(4 * n), mask = arena.alloc(4 * maskN);
  const oa = arena.alloc(4 * n), ob = arena.alloc(4 * n);
  fillNormal(x, n, 2);
  for (let i = 0; i < maskN; i++) {
    arena.f32[(mask >> 2) + i] = (i % len) > ((i / len | 0) % len) ? -1e9 : 0;
  }
  const sm = (k: KernelExports, o: number) => () =>
    k.maskedSoftmax(x, mask, o, b * heads * len, len, 0.17, 1, heads, len, len, 0, 1, 0);
  const [a, c2] = time([sm(wasm, oa), sm(c, ob)]);
  const d = differing(oa, ob, n);
  console.log(
    `| attention softmax, [312 x 2 x 46 x 46], causal mask | ${a.toFixed(2)} | ${c2.toFixed(2)} | ${
      (a / c2).toFixed(1)
    }x | ${d ? `${d} differ` : "same"} |`,
  );
  for (const [ptr, bytes] of [[x, n], [mask, maskN], [oa, n], [ob, n]]) arena.free(ptr, 4 * bytes);
  const rows = 2048, cols = 12102;
  const scores = arena.alloc(4 * rows * cols), ints = arena.alloc(4 * (4 * rows + 1));
  fillNormal(scores, rows * cols, 1);
  const tgt = ints, off = tgt + 4 * rows, ra = off + 4 * (rows + 1), rb = ra + 4 * rows;
  for (let r = 0; r < rows; r++) {
    arena.i32[(tgt >> 2) + r] = rng.int(cols);
    arena.i32[(off >> 2) + r] = 0;
  }
  arena.i32[(off >> 2) + rows] = 0;
  const rank = (k: KernelExports, o: number) => () =>
    k.rankRows(scores, tgt, off, off, o, rows, cols);
  const [ta, tb] = time([rank(wasm, ra), rank(c, rb)]);
  const dr = differing(ra, rb, rows);
  console.log(
    `| full-ranking ranks, [2048 x 12102] | ${ta.toFixed(2)} | ${tb.toFixed(2)} | ${
      (ta / tb).toFixed(1)
    }x | ${dr ? `${dr} differ` : "same"} |`,
  );
  arena.free(scores, 4 * rows * cols);
  arena.free(ints, 4 * (4 * rows + 1));
}

console.log(
  "\n| GEMM, one thread | wasm GFLOP/s | C GFLOP/s | CBLAS GFLOP/s | C / CBLAS | C bits vs wasm |",
);
console.log("|---|---|---|---|---|---|");
interface Shape {
  label: string;
  m: number;
  n: number;
  k: number;
  tA: 0 | 1;
  tB: 0 | 1;
  /** Attention's layout: `batch` sequences of `heads` products side by side in each row. */
  heads?: number;
  batch?: number;
}
const SHAPES: Shape[] = [
  { label: "dense, x W", m: 28704, n: 64, k: 64, tA: 0, tB: 0 },
  { label: "dense, g W^T", m: 28704, n: 64, k: 64, tA: 0, tB: 1 },
  { label: "dense, x^T g (weight gradient)", m: 64, n: 64, k: 28704, tA: 1, tB: 0 },
  { label: "feed-forward, [2048 x 64] @ [64 x 256]", m: 2048, n: 256, k: 64, tA: 0, tB: 0 },
  { label: "logits, h E^T", m: 2048, n: 12102, k: 64, tA: 0, tB: 1 },
  { label: "logits' input gradient, G E", m: 2048, n: 64, k: 12102, tA: 0, tB: 0 },
  { label: "logits' table gradient, G^T h", m: 12102, n: 64, k: 2048, tA: 1, tB: 0 },
  {
    label: "attention scores q k^T, 312 x 2 heads",
    m: 46,
    n: 46,
    k: 32,
    tA: 0,
    tB: 1,
    heads: 2,
    batch: 312,
  },
  {
    label: "attention mix p v, 312 x 2 heads",
    m: 46,
    n: 32,
    k: 46,
    tA: 0,
    tB: 0,
    heads: 2,
    batch: 312,
  },
];
for (const s of SHAPES) {
  const heads = s.heads ?? 1, batch = s.batch ?? 1;
  // Operands as stored: A is m x k (or k x m), B is k x n (or n x k); heads side by side.
  const aRows = s.tA ? s.k : s.m, aCols = (s.tA ? s.m : s.k) * heads;
  const bRows = s.tB ? s.n : s.k, bCols = (s.tB ? s.k : s.n) * heads;
  const cCols = s.n * heads;
  const sa = aRows * aCols, sb = bRows * bCols, sc = s.m * cCols;
  const a = arena.alloc(4 * batch * sa), b = arena.alloc(4 * batch * sb);
  const ca = arena.alloc(4 * batch * sc), cb = arena.alloc(4 * batch * sc);
  const cc = arena.alloc(4 * batch * sc);
  fillNormal(a, batch * sa, 1);
  fillNormal(b, batch * sb, 1);
  const strideA2 = s.tA ? s.m : s.k, strideB2 = s.tB ? s.k : s.n;
  const kern = (k: KernelExports, out: number) => () =>
    k.gemm(
      a,
      b,
      out,
      s.m,
      s.n,
      s.k,
      s.tA,
      s.tB,
      batch,
      sa,
      sb,
      sc,
      heads,
      strideA2,
      strideB2,
      s.n,
      aCols,
      bCols,
      cCols,
      1,
      0,
      0,
      s.m,
      0,
      s.n,
      scratch,
    );
  const cblas = () => {
    const p = base();
    const at = (byte: number) => Deno.UnsafePointer.offset(p, byte);
    for (let i = 0; i < batch; i++) {
      for (let j = 0; j < heads; j++) {
        blas.sgemm(
          !!s.tA,
          !!s.tB,
          s.m,
          s.n,
          s.k,
          1,
          at(a + 4 * (i * sa + j * strideA2)),
          aCols,
          at(b + 4 * (i * sb + j * strideB2)),
          bCols,
          0,
          at(cc + 4 * (i * sc + j * s.n)),
          cCols,
        );
      }
    }
  };
  const [tw, tc, tb] = time([kern(wasm, ca), kern(c, cb), cblas]);
  const gflop = (2 * batch * heads * s.m * s.n * s.k) / 1e6;
  const d = differing(ca, cb, batch * sc);
  console.log(
    `| ${s.label} | ${(gflop / tw).toFixed(1)} | ${(gflop / tc).toFixed(1)} | ${
      (gflop / tb).toFixed(1)
    } | ${(tb / tc).toFixed(2)}x | ${d ? `${d} differ` : "same"} |`,
  );
  for (const [p, bytes] of [[a, sa], [b, sb], [ca, sc], [cb, sc], [cc, sc]]) {
    arena.free(p, 4 * batch * bytes);
  }
}
