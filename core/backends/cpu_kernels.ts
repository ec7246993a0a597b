/**
 * The native backend's C kernels (ffi/cpu/kernels.c) in place of the wasm kernels they mirror:
 * the transcendental elementwise ops and their gradients, the cross-entropy block rows and the
 * GEMM, which are compute-bound at wasm's 128-bit SIMD width. (The native backend gives its large
 * products to CBLAS; the GEMM kernel serves the small batched ones, attention's per-head
 * products, where one CBLAS call per (sequence, head) costs more than the arithmetic.)
 *
 * They are a speed trick, not a numerical choice: each computes every element with the wasm
 * kernel's float32 operations in the same order, so a run gives the same bits with or without
 * them. `withCpuKernels` checks that on this machine before it is used (`cpuKernelsDiffer`) and
 * keeps the wasm kernels otherwise, so a compiler or CPU that rounds differently costs speed, not
 * reproducibility.
 *
 * $DUAF_CPU_KERNELS: unset or "auto" builds the library with the host C compiler on first use
 * (about a second, once per source and CPU); "off" keeps every op on wasm; a path loads that
 * library instead of building.
 */
import { buildCpuKernels } from "../../ffi/cpu/build.ts";
import { type CpuKernelLibrary, openCpuKernels } from "../../ffi/cpu.ts";
import { envVar } from "../env.ts";
import type { Arena } from "./wasm/arena.ts";
import {
  type KernelExports,
  type KernelVariant,
  lceGradBytes,
  lcePackBytes,
  rankBandBytes,
} from "./wasm/kernels.ts";
import type { KernelSite } from "./wasm/wasm_backend.ts";

const LCE_THREADS_APART =
  "cpu kernels: the other kernel thread did not reach the fused cross-entropy's barrier";
const ATTENTION_TOO_LONG =
  "cpu kernels: fused attention past one K slice (the caller keeps it to KC keys and dims)";
const RANK_THREADS_APART =
  "cpu kernels: the other kernel thread did not reach the fused ranking's barrier";

/** The library to use for this kernel variant, or why there is none. */
export async function cpuKernelLibraryPath(
  variant: KernelVariant,
  setting = (envVar("DUAF_CPU_KERNELS") ?? "auto").trim(),
): Promise<{ path: string } | { unavailable: string }> {
  if (setting === "off" || setting === "0") return { unavailable: "DUAF_CPU_KERNELS=off" };
  if (setting !== "auto" && setting !== "") return { path: setting };
  try {
    return { path: await buildCpuKernels({ fused: variant === "relaxed", quiet: true }) };
  } catch (e) {
    return { unavailable: `not built: ${e instanceof Error ? e.message : e}` };
  }
}

/**
 * `kernels` with the calls the library implements routed to it. Ops it does not implement (the
 * library answers 0: pow) stay on wasm. The memory's address is taken again after a
 * grow replaces `memory.buffer` (a shared memory keeps its address; the check is cheap).
 */
export function withCpuKernels(
  kernels: KernelExports,
  memory: WebAssembly.Memory,
  lib: CpuKernelLibrary,
): KernelExports {
  const s = lib.symbols;
  let buffer: ArrayBufferLike | null = null;
  let base: Deno.PointerObject | null = null;
  const at = (): Deno.PointerObject => {
    if (memory.buffer !== buffer || base === null) {
      buffer = memory.buffer;
      base = Deno.UnsafePointer.of(new Uint8Array(buffer as ArrayBuffer));
      if (base === null) throw new Error("cpu kernels: wasm memory has no backing store");
    }
    return base;
  };
  return {
    ...kernels,
    unary(op, x, out, n, alpha) {
      if (!s.duaf_unary(at(), op, x, out, n, alpha)) kernels.unary(op, x, out, n, alpha);
    },
    unaryGrad(op, x, y, g, out, n, alpha) {
      if (!s.duaf_unary_grad(at(), op, x, y, g, out, n, alpha)) {
        kernels.unaryGrad(op, x, y, g, out, n, alpha);
      }
    },
    crossEntropyBlock(x, targets, lse, picked, rows, cols, colOffset, first, shift) {
      s.duaf_ce_block(at(), x, targets, lse, picked, rows, cols, colOffset, first, shift);
    },
    crossEntropyBlockGrad(x, targets, lse, w, rows, cols, colOffset, shift) {
      s.duaf_ce_block_grad(at(), x, targets, lse, w, rows, cols, colOffset, shift);
    },
    gemm(a, b, c, m, n, k, tA, tB, batch, sA, sB, sC, b2, sA2, sB2, sC2, lda, ldb, ldc, ...rest) {
      const [alpha, beta, r0, r1, c0, c1, scratch, bias = 0] = rest;
      s.duaf_gemm(
        at(),
        a,
        b,
        c,
        m,
        n,
        k,
        tA,
        tB,
        batch,
        sA,
        sB,
        sC,
        b2,
        sA2,
        sB2,
        sC2,
        lda,
        ldb,
        ldc,
        alpha,
        beta,
        r0,
        r1,
        c0,
        c1,
        scratch,
        bias,
      );
    },
    gemmEpilogue(...args) {
      s.duaf_gemm_epilogue(at(), ...args);
    },
    scatterAdd(...args) {
      return s.duaf_scatter_add(at(), ...args);
    },
    axpy(...args) {
      s.duaf_axpy(at(), ...args);
    },
    binary(...args) {
      s.duaf_binary(at(), ...args);
    },
    colSums(...args) {
      s.duaf_col_sums(at(), ...args);
    },
    gemmSlices(...args) {
      s.duaf_gemm_slices(at(), ...args);
    },
    gemmAddParts(...args) {
      s.duaf_gemm_add_parts(at(), ...args);
    },
    layerNorm(...args) {
      s.duaf_layer_norm(at(), ...args);
    },
    addLayerNorm(...args) {
      return s.duaf_add_layer_norm(at(), ...args) !== 0;
    },
    layerNormGradPart(...args) {
      s.duaf_layer_norm_grad_part(at(), ...args);
    },
    layerNormGrad(...args) {
      s.duaf_layer_norm_grad(at(), ...args);
    },
    lceForward(...args) {
      if (s.duaf_lce_forward(at(), ...args) !== 0) throw new Error(LCE_THREADS_APART);
    },
    lceBackward(...args) {
      if (s.duaf_lce_backward(at(), ...args) !== 0) throw new Error(LCE_THREADS_APART);
    },
    lceStreamForward(...args) {
      s.duaf_lce_stream_forward(at(), ...args);
    },
    lceStreamBackward(...args) {
      if (s.duaf_lce_stream_backward(at(), ...args) !== 0) throw new Error(LCE_THREADS_APART);
    },
    lceStreamScratchFloats(rows, block, d, kind) {
      return s.duaf_lce_stream_scratch_floats(rows, block, d, kind);
    },
    dropout(...args) {
      s.duaf_dropout(at(), ...args);
    },
    gatherAdd(...args) {
      return s.duaf_gather_add(at(), ...args);
    },
    dropoutAt(...args) {
      s.duaf_dropout_at(at(), ...args);
    },
    dropoutRows(...args) {
      s.duaf_dropout_rows(at(), ...args);
    },
    gatherDots(...args) {
      return s.duaf_gather_dots(at(), ...args);
    },
    scatterOuter(...args) {
      return s.duaf_scatter_outer(at(), ...args);
    },
    gatherDotsGradH(...args) {
      s.duaf_gather_dots_grad_h(at(), ...args);
    },
    modalityFusion(...args) {
      s.duaf_modality_fusion(at(), ...args);
    },
    modalityFusionGrad(...args) {
      s.duaf_modality_fusion_grad(at(), ...args);
    },
    maskedSoftmax(...args) {
      s.duaf_masked_softmax(at(), ...args);
    },
    rankRows(...args) {
      return s.duaf_rank_rows(at(), ...args);
    },
    rankScores(...args) {
      const bad = s.duaf_rank_scores(at(), ...args);
      if (bad === -2) throw new Error(RANK_THREADS_APART);
      return bad;
    },
    attention(...args) {
      if (s.duaf_attention(at(), ...args) !== 0) throw new Error(ATTENTION_TOO_LONG);
    },
    attentionGrad(...args) {
      if (s.duaf_attention_grad(at(), ...args) !== 0) throw new Error(ATTENTION_TOO_LONG);
    },
    attentionScratchFloats(lq, lk, dh) {
      return s.duaf_attention_scratch_floats(lq, lk, dh);
    },
    attentionMinKeys() {
      return s.duaf_attention_min_keys();
    },
    // The bf16 products exist only in a build for a CPU with AVX-512 BF16.
    ...(s.duaf_cpu_has_bf16()
      ? {
        lceForwardBf16(...args: Parameters<NonNullable<KernelExports["lceForwardBf16"]>>) {
          if (s.duaf_lce_forward_bf16(at(), ...args) !== 0) throw new Error(LCE_THREADS_APART);
        },
        lceBackwardBf16(...args: Parameters<NonNullable<KernelExports["lceBackwardBf16"]>>) {
          if (s.duaf_lce_backward_bf16(at(), ...args) !== 0) throw new Error(LCE_THREADS_APART);
        },
        lceStreamForwardBf16(
          ...args: Parameters<NonNullable<KernelExports["lceStreamForwardBf16"]>>
        ) {
          s.duaf_lce_stream_forward_bf16(at(), ...args);
        },
        lceStreamBackwardBf16(
          ...args: Parameters<NonNullable<KernelExports["lceStreamBackwardBf16"]>>
        ) {
          const ok = s.duaf_lce_stream_backward_bf16(at(), ...args);
          if (ok !== 0) throw new Error(LCE_THREADS_APART);
        },
      }
      : {}),
  };
}

/** Unary op codes the probe runs (wasm/assembly/unary.ts), and an alpha for the ones using it. */
const PROBE_UNARY: readonly [code: number, alpha: number][] = [
  [0, 0],
  [1, 0],
  [2, 0],
  [3, 0],
  [4, 0],
  [5, 0],
  [6, 0],
  [7, 0],
  [8, 0.01],
  [9, 0],
  [10, 0],
  [11, 0],
  [12, 0],
  [13, 0],
  [14, 1.7],
  [15, -0.3],
];

/** Inputs that reach every branch of the kernels: zeros, tails, overflow, subnormals, NaN. */
function probeInputs(n: number): Float32Array {
  const specials = [
    0,
    -0,
    Infinity,
    -Infinity,
    NaN,
    1e-40,
    -1e-40,
    1e-30,
    0.625,
    -0.625,
    20,
    20.5,
    -20.5,
    87,
    88.5,
    89,
    -87.3,
    -88,
    -104,
    -200,
    1e10,
    -1e10,
    0.5,
    -0.5,
  ];
  const x = new Float32Array(n);
  let seed = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    // A fixed xorshift stream: the probe is the same on every run.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const u = (seed >>> 0) / 2 ** 32;
    x[i] = i < specials.length ? specials[i] : (u - 0.5) * (i % 3 === 0 ? 40 : 8);
  }
  return x;
}

/** The probe's stream past its special values: finite, as a GEMM's output or a weight. */
function finiteInputs(n: number): Float32Array {
  return probeInputs(40 + n).subarray(40);
}

/** Same bits, or both NaN (a NaN's payload depends on operand order, not on the arithmetic). */
function firstDifference(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) {
    if (ua[i] !== ub[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return i;
  }
  return -1;
}

/**
 * Runs every routed kernel on the same inputs through `wasm` and `native` and names the first
 * that differs in any bit, or returns null when all agree. Uses and frees arena memory.
 */
export function cpuKernelsDiffer(
  wasm: KernelExports,
  native: KernelExports,
  arena: Arena,
): string | null {
  const n = 4099; // not a multiple of 4 or 16: the tails run too
  const rows = 6, wide = 1031, narrow = 13;
  const region = Math.max(n, rows * wide + 3 * rows);
  const bytes = 4 * (3 * n + 2 * region + 3 * rows);
  const p = arena.alloc(bytes);
  try {
    const x = p, y = x + 4 * n, g = y + 4 * n, oa = g + 4 * n, ob = oa + 4 * region;
    const tgt = ob + 4 * region, w = tgt + 4 * rows, aux = w + 4 * rows;
    const view = (at: number, len: number) => arena.f32.subarray(at >> 2, (at >> 2) + len);
    const input = probeInputs(n);
    view(x, n).set(input);
    const gIn = probeInputs(n + 7).subarray(7);
    view(g, n).set(gIn);
    const same = (len: number) => firstDifference(view(oa, len), view(ob, len)) < 0;
    for (const [op, alpha] of PROBE_UNARY) {
      wasm.unary(op, x, oa, n, alpha);
      native.unary(op, x, ob, n, alpha);
      if (!same(n)) return `unary op ${op}`;
      view(y, n).set(view(oa, n));
      wasm.unaryGrad(op, x, y, g, oa, n, alpha);
      native.unaryGrad(op, x, y, g, ob, n, alpha);
      if (!same(n)) return `unaryGrad op ${op}`;
    }
    // sin and cos past 9pi/4, where the C kernels take eight lanes at once: a time embedding's
    // angles. The probe's values times 300, the specials kept.
    view(y, n).set(input.map((v, i) => i < 40 ? v : 300 * v));
    for (const op of [10, 11]) {
      wasm.unary(op, y, oa, n, 0);
      native.unary(op, y, ob, n, 0);
      if (!same(n)) return `unary op ${op} (wide angles)`;
      wasm.unaryGrad(op, y, y, g, oa, n, 0);
      native.unaryGrad(op, y, y, g, ob, n, 0);
      if (!same(n)) return `unaryGrad op ${op} (wide angles)`;
    }
    for (const [threshold, scale, seed] of [[1677722, 1 / 0.9, 12345], [8388608, 2, 0xfffffff0]]) {
      wasm.dropout(x, oa, n, threshold, scale, seed);
      native.dropout(x, ob, n, threshold, scale, seed);
      if (!same(n)) return "dropout";
    }
    // Cross-entropy rows: finite logits (as a GEMM writes them), targets inside and outside the
    // block, a first block and a later one, with and without kept exponentials.
    const i32 = arena.i32;
    for (const cols of [wide, narrow]) {
      for (let r = 0; r < rows; r++) {
        i32[(tgt >> 2) + r] = r === 2 ? cols + 5 : (r * 7919) % cols;
        arena.f32[(w >> 2) + r] = 1 / (r + 1);
      }
      const logits = finiteInputs(rows * cols);
      for (const keep of [false, true]) {
        for (const first of [1, 0]) {
          // out: [logits (rows x cols) | lse | picked | shift] at oa and at ob.
          const run = (k: KernelExports, out: number) => {
            const lse = out + 4 * rows * cols, picked = lse + 4 * rows, shift = picked + 4 * rows;
            view(out, rows * cols).set(logits);
            view(lse, rows).set(view(aux, rows).fill(0.25));
            k.crossEntropyBlock(out, tgt, lse, picked, rows, cols, 0, first, keep ? shift : 0);
            k.crossEntropyBlockGrad(out, tgt, lse, w, rows, cols, 0, keep ? shift : 0);
          };
          run(wasm, oa);
          run(native, ob);
          if (!same(rows * cols + 3 * rows)) {
            return `crossEntropyBlock (cols ${cols}, first ${first}, kept ${keep})`;
          }
        }
      }
    }
    return layerNormDiffers(wasm, native, arena) ?? colSumsDiffer(wasm, native, arena) ??
      memoryOpsDiffer(wasm, native, arena) ??
      gemmDiffers(wasm, native, arena) ?? gemmSlicesDiffer(wasm, native, arena) ??
      fusionDiffers(wasm, native, arena) ?? attentionDiffers(wasm, native, arena) ??
      linearCeDiffers(wasm, native, arena) ?? linearCeStreamDiffers(wasm, native, arena) ??
      rankScoresDiffer(wasm, native, arena);
  } finally {
    arena.free(p, bytes);
  }
}

/**
 * The attention softmax with a [B, 1, L, L] mask and without one, on rows of 50 and 7 (tails),
 * and the rank of each row's target with excluded columns.
 */
function attentionDiffers(wasm: KernelExports, native: KernelExports, arena: Arena): string | null {
  const [b, heads, len] = [3, 2, 50];
  const n = b * heads * len * len, maskN = b * len * len;
  const bytes = 4 * (n + maskN + 2 * n + 5 * 64);
  const p = arena.alloc(bytes);
  try {
    const x = p, mask = x + 4 * n, outs = [mask + 4 * maskN, mask + 4 * maskN + 4 * n];
    const ints = outs[1] + 4 * n;
    arena.f32.set(finiteInputs(n), x >> 2);
    for (let i = 0; i < maskN; i++) arena.f32[(mask >> 2) + i] = i % 7 === 3 ? -1e9 : 0;
    for (const cols of [len, 7]) {
      const rows = Math.floor(n / cols);
      for (const hasMask of [1, 0]) {
        [wasm, native].forEach((k, i) => {
          // For rows of 7 the mask rows are read as [.., 1, 1, cols] (sb = 1): every row the same.
          const [q, sb] = cols === len ? [len, len] : [1, 1];
          k.maskedSoftmax(x, mask, outs[i], rows, cols, 0.17, hasMask, heads, q, sb, 0, 1, 0);
        });
        const view = (o: number) => arena.f32.subarray(o >> 2, (o >> 2) + n);
        if (firstDifference(view(outs[0]), view(outs[1])) >= 0) {
          return `maskedSoftmax (cols ${cols}, mask ${hasMask})`;
        }
      }
    }
    // rankRows over 30 rows of 400 scores: targets, and two excluded columns a row.
    const rows = 30, cols = 400;
    const tgt = ints, off = tgt + 4 * rows, exc = off + 4 * (rows + 1), res = exc + 4 * 2 * rows;
    for (let r = 0; r < rows; r++) {
      arena.i32[(tgt >> 2) + r] = (r * 37) % cols;
      arena.i32[(off >> 2) + r] = 2 * r;
      arena.i32[(exc >> 2) + 2 * r] = (r * 53) % cols;
      arena.i32[(exc >> 2) + 2 * r + 1] = (r * 37) % cols;
    }
    arena.i32[(off >> 2) + rows] = 2 * rows;
    const ranks = [wasm, native].map((k) => {
      const bad = k.rankRows(x, tgt, off, exc, res, rows, cols);
      return [bad, ...arena.i32.subarray(res >> 2, (res >> 2) + rows)].join(",");
    });
    if (ranks[0] !== ranks[1]) return "rankRows";
    return null;
  } finally {
    arena.free(p, bytes);
  }
}

/**
 * DuAF's modality fusion and its gradient (with and without a gradient of the weights) on rows of
 * a whole and a ragged vector width, 1 to 3 modalities.
 */
function fusionDiffers(wasm: KernelExports, native: KernelExports, arena: Arena): string | null {
  const rows = 5;
  for (const [m, dim] of [[3, 64], [2, 13], [1, 7]]) {
    const n = rows * dim;
    // e_1..e_m, t, q, gh, gomega; per kernel h, omega and keys, then ge_1..ge_m, gt and gq; the
    // pointer list (e's four slots, then ge's four) per kernel at the end.
    const out = n + rows * m + rows * m * dim;
    const grads = (m + 2) * n;
    const bytes = 4 * ((m + 3) * n + rows * m + 2 * (out + grads) + 16);
    const p = arena.alloc(bytes);
    try {
      const t = p + 4 * m * n, q = t + 4 * n, gh = q + 4 * n, gomega = gh + 4 * n;
      const outs = [gomega + 4 * rows * m, gomega + 4 * rows * m + 4 * (out + grads)];
      const ptrs = [outs[1] + 4 * (out + grads), outs[1] + 4 * (out + grads) + 32];
      arena.f32.set(finiteInputs((m + 3) * n + rows * m), p >> 2);
      const views = [wasm, native].map((k, i) => {
        const h = outs[i], omega = h + 4 * n, keys = omega + 4 * rows * m;
        const ge = h + 4 * out, gt = ge + 4 * m * n, gq = gt + 4 * n;
        for (let j = 0; j < 4; j++) {
          arena.i32[(ptrs[i] >> 2) + j] = j < m ? p + 4 * j * n : 0;
          arena.i32[(ptrs[i] >> 2) + 4 + j] = j < m ? ge + 4 * j * n : 0;
        }
        k.modalityFusion(ptrs[i], m, t, q, h, omega, keys, 0, rows, dim, 0.125);
        const forward = arena.f32.slice(h >> 2, (h >> 2) + out);
        k.modalityFusionGrad(ptrs[i], m, q, omega, keys, gh, 0, gt, gq, 0, rows, dim, 0.125);
        const plain = arena.f32.slice(ge >> 2, (ge >> 2) + grads);
        k.modalityFusionGrad(ptrs[i], m, q, omega, keys, gh, gomega, gt, gq, 0, rows, dim, 0.125);
        return [forward, plain, arena.f32.slice(ge >> 2, (ge >> 2) + grads)];
      });
      const names = ["modalityFusion", "modalityFusionGrad", "modalityFusionGrad with gomega"];
      for (let v = 0; v < 3; v++) {
        if (firstDifference(views[0][v], views[1][v]) >= 0) {
          return `${names[v]} (m ${m}, dim ${dim})`;
        }
      }
    } finally {
      arena.free(p, bytes);
    }
  }
  return null;
}

/**
 * Layer norm and its gradient on rows of 64 (groups of four and a remainder) and of 13 (tails),
 * dgamma and dbeta accumulating onto values already there.
 */
function layerNormDiffers(wasm: KernelExports, native: KernelExports, arena: Arena): string | null {
  for (const [rows, cols] of [[6, 64], [3, 13]]) {
    const n = rows * cols;
    // x, g, gamma, beta; then per kernel out, dx, mean, rstd, dgamma, dbeta.
    const per = 2 * n + 2 * rows + 2 * cols;
    const bytes = 4 * (2 * n + 2 * cols + 2 * per);
    const p = arena.alloc(bytes);
    try {
      const x = p, g = x + 4 * n, gamma = g + 4 * n, beta = gamma + 4 * cols;
      arena.f32.set(finiteInputs(2 * n), x >> 2);
      arena.f32.set(finiteInputs(2 * cols).map((v) => 1 + 0.1 * v), gamma >> 2);
      const views = [wasm, native].map((k, i) => {
        const out = beta + 4 * cols + 4 * i * per, dx = out + 4 * n, mean = dx + 4 * n;
        const rstd = mean + 4 * rows, dg = rstd + 4 * rows, db = dg + 4 * cols;
        arena.f32.set(finiteInputs(2 * cols), dg >> 2);
        k.layerNorm(x, gamma, beta, out, mean, rstd, rows, cols, 1e-12);
        k.layerNormGrad(x, gamma, mean, rstd, g, dx, dg, db, rows, cols);
        return arena.f32.subarray(out >> 2, (out >> 2) + per);
      });
      if (firstDifference(views[0], views[1]) >= 0) return `layerNorm (cols ${cols})`;
    } finally {
      arena.free(p, bytes);
    }
  }
  return null;
}

/**
 * axpy, scatterAdd, and the binary ops over a contiguous pair, a row broadcast either way and
 * transposed strides, on the probe's special values (zeros of both signs, infinities, NaN,
 * subnormals).
 */
function memoryOpsDiffer(wasm: KernelExports, native: KernelExports, arena: Arena): string | null {
  const rows = 7, cols = 13, n = rows * cols;
  // a, b; per kernel out; the parameters (shape, a's and b's strides, scratch: 2 words each),
  // then scatterAdd's indices.
  const bytes = 4 * (4 * n + 8 + 7);
  const p = arena.alloc(bytes);
  try {
    const a = p, b = a + 4 * n, outs = [b + 4 * n, b + 8 * n], params = b + 12 * n;
    arena.f32.set(probeInputs(2 * n), a >> 2);
    const view = (o: number) => arena.f32.subarray(o >> 2, (o >> 2) + n);
    const start = probeInputs(3 * n).subarray(2 * n);
    for (const alpha of [1, -0.37]) {
      for (const o of outs) arena.f32.set(start, o >> 2);
      wasm.axpy(a, outs[0], n, alpha);
      native.axpy(a, outs[1], n, alpha);
      if (firstDifference(view(outs[0]), view(outs[1])) >= 0) return `axpy (alpha ${alpha})`;
    }
    // scatterAdd of a's rows into rows of b's copy, row 2 taking three in order, then an index
    // past the rows: the position comes back and nothing is written.
    const idx = params + 32;
    for (const index of [[2, 0, 2, 6, 2, 1, 3], [2, 0, 7]]) {
      arena.i32.set(index, idx >> 2);
      const found = [wasm, native].map((k, i) => {
        arena.f32.set(arena.f32.subarray(b >> 2, (b >> 2) + n), outs[i] >> 2);
        return k.scatterAdd(a, idx, outs[i], rows, index.length, cols);
      });
      if (found[0] !== found[1] || firstDifference(view(outs[0]), view(outs[1])) >= 0) {
        return `scatterAdd (${index.length} rows)`;
      }
    }
    const layouts: [string, number[]][] = [
      ["contiguous", [rows, cols, cols, 1, cols, 1]],
      ["b broadcast over rows", [rows, cols, cols, 1, 0, 1]],
      ["a broadcast over columns", [rows, cols, 1, 0, cols, 1]],
      ["transposed", [rows, cols, 1, rows, cols, 1]],
    ];
    for (const [what, [r, c, a0, a1, b0, b1]] of layouts) {
      for (let op = 0; op < 4; op++) {
        const views = [wasm, native].map((k, i) => {
          arena.i32.set([r, c, a0, a1, b0, b1, 0, 0], params >> 2);
          k.binary(op, a, b, outs[i], 2, params);
          return view(outs[i]);
        });
        if (firstDifference(views[0], views[1]) >= 0) return `binary op ${op} (${what})`;
      }
    }
  } finally {
    arena.free(p, bytes);
  }
  return null;
}

/** Column sums (a bias's gradient) against reduceSum over the rows, from zero and onto values. */
function colSumsDiffer(wasm: KernelExports, native: KernelExports, arena: Arena): string | null {
  if (!native.colSums) return null;
  for (const [rows, cols] of [[37, 13], [9, 64]]) {
    // x; per kernel out; reduceSum's parameters: the shape, the out strides [0, 1], scratch.
    const bytes = 4 * (rows * cols + 2 * cols + 6);
    const p = arena.alloc(bytes);
    try {
      const x = p, outs = [x + 4 * rows * cols, x + 4 * rows * cols + 4 * cols];
      const params = outs[1] + 4 * cols;
      arena.f32.set(finiteInputs(rows * cols), x >> 2);
      arena.i32.set([rows, cols, 0, 1, 0, 0], params >> 2);
      for (const accumulate of [0, 1]) {
        for (const o of outs) arena.f32.set(finiteInputs(cols), o >> 2);
        wasm.reduceSum(x, outs[0], cols, accumulate, 2, params);
        native.colSums(x, outs[1], rows, cols, 0, cols, accumulate);
        const [a, b] = outs.map((o) => arena.f32.subarray(o >> 2, (o >> 2) + cols));
        if (firstDifference(a, b) >= 0) return `colSums (cols ${cols}, accumulate ${accumulate})`;
      }
    } finally {
      arena.free(p, bytes);
    }
  }
  return null;
}

/**
 * One whole product C = alpha op(A) op(B) + beta C through a kernel set's gemm: one item, every
 * row and column, row-major operands of their natural leading dimensions.
 */
function wholeGemm(
  k: KernelExports,
  [a, b, c]: readonly [number, number, number],
  [m, n, depth]: readonly [number, number, number],
  [tA, tB]: readonly [number, number],
  alpha: number,
  beta: number,
  scratch: number,
): void {
  const lds = [tA ? m : depth, tB ? depth : n, n] as const;
  k.gemm(
    a,
    b,
    c,
    m,
    n,
    depth,
    tA,
    tB,
    1,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    ...lds,
    alpha,
    beta,
    0,
    m,
    0,
    n,
    scratch,
  );
}

/**
 * A product split by K as the backend splits it (the first slices into C, the rest each into its
 * own block, the blocks then added in order) against wasm's whole product: five K slices (the
 * last partial), A transposed, alpha 0.5, beta 0 and 1.
 */
function gemmSlicesDiffer(wasm: KernelExports, native: KernelExports, arena: Arena): string | null {
  if (!native.gemmSlices || !native.gemmAddParts) return null;
  const [m, n, k, slices, mine] = [7, 20, 1100, 5, 2];
  const scratchBytes = wasm.GEMM_SCRATCH_BYTES.value as number;
  const bytes = 4 * (m * k + k * n + 2 * m * n + (slices - mine) * m * n) + scratchBytes;
  const p = arena.alloc(bytes);
  try {
    const a = p, b = a + 4 * m * k, ca = b + 4 * k * n, cb = ca + 4 * m * n;
    const parts = cb + 4 * m * n, scratch = parts + 4 * (slices - mine) * m * n;
    arena.f32.set(finiteInputs(m * k + k * n + m * n), a >> 2);
    for (const beta of [0, 1]) {
      arena.f32.copyWithin(cb >> 2, ca >> 2, (ca >> 2) + m * n);
      wholeGemm(wasm, [a, b, ca], [m, n, k], [1, 0], 0.5, beta, scratch);
      native.gemmSlices(a, b, cb, m, n, k, 1, 0, m, n, n, 0.5, beta, 0, mine, 0, scratch);
      native.gemmSlices(a, b, cb, m, n, k, 1, 0, m, n, n, 0.5, beta, mine, slices, parts, scratch);
      native.gemmAddParts(cb, parts, m, n, n, slices - mine);
      const view = (o: number) => arena.f32.subarray(o >> 2, (o >> 2) + m * n);
      if (firstDifference(view(ca), view(cb)) >= 0) return `gemm split by K (beta ${beta})`;
    }
    return null;
  } finally {
    arena.free(p, bytes);
  }
}

/**
 * The cross-entropy probes' inputs at p: h [rows, d] and the table [items, d] (finite values),
 * int32 targets [rows] (row 4's outside the table) and the row losses' gradient w [rows]; `end`
 * is the first byte after them.
 */
function ceProbeInputs(arena: Arena, p: number, rows: number, items: number, d: number) {
  const h = p, table = h + 4 * rows * d, tgt = table + 4 * items * d, w = tgt + 4 * rows;
  arena.f32.set(finiteInputs(rows * d + items * d), h >> 2);
  for (let r = 0; r < rows; r++) {
    arena.i32[(tgt >> 2) + r] = r === 4 ? items + 3 : (r * 7919) % items;
    arena.f32[(w >> 2) + r] = 1 / (r + 2);
  }
  return { h, table, tgt, w, end: w + 4 * rows };
}

/**
 * The fused cross-entropy with its products (one thread) against wasm's separate calls: gemm,
 * crossEntropyBlock keeping the exponentials, crossEntropyBlockGrad and the two gradient gemms.
 * Two item blocks of the C kernel (256 + 44), a partial column panel, a target outside the table.
 */
function linearCeDiffers(wasm: KernelExports, native: KernelExports, arena: Arena): string | null {
  if (!native.lceForward || !native.lceBackward) return null;
  const [rows, items, d] = [13, 300, 20];
  const scratchBytes = wasm.GEMM_SCRATCH_BYTES.value as number;
  // Inputs h, table, targets, w; then per kernel z, lse, picked, shift, dh, dtable; scratch.
  const per = rows * items + 3 * rows + rows * d + items * d;
  const packBytes = lcePackBytes(items, d), gradBytes = lceGradBytes(rows);
  const bytes = 4 * (rows * d + items * d + 2 * rows + 2 * per) + scratchBytes + packBytes +
    gradBytes + 8;
  const p = arena.alloc(bytes);
  try {
    const { h, table, tgt, w, end } = ceProbeInputs(arena, p, rows, items, d);
    const outs = [end, end + 4 * per];
    const scratch = outs[1] + 4 * per, pack = scratch + scratchBytes, grads = pack + packBytes;
    const barrier = grads + gradBytes;
    arena.i32.fill(0, barrier >> 2, (barrier >> 2) + 2);
    const parts = (o: number) => {
      const lse = o + 4 * rows * items, picked = lse + 4 * rows, shift = picked + 4 * rows;
      const dh = shift + 4 * rows, dt = dh + 4 * rows * d;
      return { z: o, lse, picked, shift, dh, dt };
    };
    const view = (o: number, n: number) => arena.f32.subarray(o >> 2, (o >> 2) + n);
    const s = parts(outs[0]);
    wholeGemm(wasm, [h, table, s.z], [rows, items, d], [0, 1], 1, 0, scratch);
    wasm.crossEntropyBlock(s.z, tgt, s.lse, s.picked, rows, items, 0, 1, s.shift);
    const exps = view(s.z, rows * items).slice();
    wasm.crossEntropyBlockGrad(s.z, tgt, s.lse, w, rows, items, 0, s.shift);
    wholeGemm(wasm, [s.z, table, s.dh], [rows, d, items], [0, 0], 1, 0, scratch);
    wholeGemm(wasm, [s.z, h, s.dt], [items, d, rows], [1, 0], 1, 0, scratch);
    const f = parts(outs[1]);
    const shape = [rows, items, d] as const;
    native.lceForward(h, table, f.z, tgt, f.lse, f.picked, f.shift, ...shape, pack, barrier, 0, 1);
    if (firstDifference(view(f.z, rows * items), exps) >= 0) return "lceForward (exponentials)";
    if (firstDifference(view(s.lse, 3 * rows), view(f.lse, 3 * rows)) >= 0) return "lceForward";
    const grad = [f.dh, f.dt, ...shape, grads, barrier, 0, 1] as const;
    native.lceBackward(h, table, f.z, tgt, f.lse, w, f.shift, ...grad);
    // The separate calls turn z into the gradient; the fused one leaves the exponentials.
    if (firstDifference(view(f.z, rows * items), exps) >= 0) return "lceBackward (z changed)";
    if (firstDifference(view(s.dh, rows * d + items * d), view(f.dh, rows * d + items * d)) >= 0) {
      return "lceBackward";
    }
    return null;
  } finally {
    arena.free(p, bytes);
  }
}

/**
 * The streamed chunked cross-entropy (one thread) against wasm's separate calls, block by block:
 * gemm, crossEntropyBlock; then the logits again, crossEntropyBlockGrad and the two gradient
 * gemms. Blocks of 300 items (a K slice of 256 and one of 44 in each), a partial last block, a
 * target outside the table.
 */
function linearCeStreamDiffers(
  wasm: KernelExports,
  native: KernelExports,
  arena: Arena,
): string | null {
  if (!native.lceStreamForward || !native.lceStreamBackward) return null;
  const [rows, items, d, block] = [13, 700, 20, 300];
  const scratchBytes = wasm.GEMM_SCRATCH_BYTES.value as number;
  const streamBytes = 4 * Math.max(
    native.lceStreamScratchFloats!(rows, block, d, 0),
    native.lceStreamScratchFloats!(rows, block, d, 1),
  );
  // Inputs h, table, targets, w; z; then per kernel lse, picked, dh, dtable; scratch; barrier.
  const per = 2 * rows + rows * d + items * d;
  const bytes = 4 * (rows * d + items * d + 2 * rows + rows * block + 2 * per) + scratchBytes +
    streamBytes + 8;
  const p = arena.alloc(bytes);
  try {
    const { h, table, tgt, w, end: z } = ceProbeInputs(arena, p, rows, items, d);
    const outs = [z + 4 * rows * block, z + 4 * rows * block + 4 * per];
    const scratch = outs[1] + 4 * per, stream = scratch + scratchBytes;
    const barrier = stream + streamBytes;
    arena.i32.fill(0, barrier >> 2, (barrier >> 2) + 2);
    const parts = (o: number) => {
      const picked = o + 4 * rows, dh = picked + 4 * rows, dt = dh + 4 * rows * d;
      return { lse: o, picked, dh, dt };
    };
    const view = (o: number, n: number) => arena.f32.subarray(o >> 2, (o >> 2) + n);
    const s = parts(outs[0]);
    const blockLogits = (j0: number, cols: number) =>
      wholeGemm(wasm, [h, table + 4 * j0 * d, z], [rows, cols, d], [0, 1], 1, 0, scratch);
    for (let j0 = 0; j0 < items; j0 += block) {
      const cols = Math.min(block, items - j0);
      blockLogits(j0, cols);
      wasm.crossEntropyBlock(z, tgt, s.lse, s.picked, rows, cols, j0, j0 === 0 ? 1 : 0, 0);
    }
    for (let j0 = 0; j0 < items; j0 += block) {
      const cols = Math.min(block, items - j0);
      blockLogits(j0, cols);
      wasm.crossEntropyBlockGrad(z, tgt, s.lse, w, rows, cols, j0, 0);
      const dt = s.dt + 4 * j0 * d;
      wholeGemm(
        wasm,
        [z, table + 4 * j0 * d, s.dh],
        [rows, d, cols],
        [0, 0],
        1,
        j0 ? 1 : 0,
        scratch,
      );
      wholeGemm(wasm, [z, h, dt], [cols, d, rows], [1, 0], 1, 0, scratch);
    }
    const f = parts(outs[1]);
    const shape = [rows, items, d, block] as const;
    native.lceStreamForward(h, table, tgt, f.lse, f.picked, ...shape, stream, 0, 1);
    if (firstDifference(view(s.lse, 2 * rows), view(f.lse, 2 * rows)) >= 0) {
      return "lceStreamForward";
    }
    native.lceStreamBackward(h, table, tgt, f.lse, w, f.dh, f.dt, ...shape, stream, barrier, 0, 1);
    if (firstDifference(view(s.dh, rows * d + items * d), view(f.dh, rows * d + items * d)) >= 0) {
      return "lceStreamBackward";
    }
    return null;
  } finally {
    arena.free(p, bytes);
  }
}

/** GEMM shapes of the probe: m, n, k, transA, transB, alpha, beta, items, row and column range. */
const PROBE_GEMMS: readonly [number, number, number, 0 | 1, 0 | 1, number, 0 | 1, number][] = [
  [7, 37, 300, 0, 0, 1, 0, 1], // two K slices, a partial vector of columns
  [13, 5, 33, 1, 1, 0.5, 1, 1],
  [46, 46, 32, 0, 1, 0.125, 0, 4], // attention's scores, per head
  [46, 32, 46, 1, 0, 1, 1, 3],
  [20, 70, 9, 0, 0, 1, 0, 2],
];

function gemmDiffers(wasm: KernelExports, native: KernelExports, arena: Arena): string | null {
  const scratchBytes = wasm.GEMM_SCRATCH_BYTES.value as number;
  for (const [m, n, k, tA, tB, alpha, beta, items] of PROBE_GEMMS) {
    const sa = m * k, sb = k * n, sc = m * n;
    const bytes = 4 * items * (sa + sb + 2 * sc) + scratchBytes;
    const p = arena.alloc(bytes);
    try {
      const a = p, b = a + 4 * items * sa, ca = b + 4 * items * sb, cb = ca + 4 * items * sc;
      const scratch = cb + 4 * items * sc;
      const values = finiteInputs(items * (sa + sb + sc));
      arena.f32.set(values, a >> 2); // A, B and C's starting values, back to back
      arena.f32.copyWithin(cb >> 2, ca >> 2, (ca >> 2) + items * sc);
      // Rows and columns from 1 short of each end: the kernels take a range.
      const [r0, r1, c0, c1] = [m > 2 ? 1 : 0, m, n > 2 ? 1 : 0, n - (n > 2 ? 1 : 0)];
      const shape = (c: number) =>
        [
          a,
          b,
          c,
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
          tA ? m : k,
          tB ? k : n,
          n,
        ] as const;
      const u = arena.f32;
      const same = () =>
        firstDifference(
          u.subarray(ca >> 2, (ca >> 2) + items * sc),
          u.subarray(cb >> 2, (cb >> 2) + items * sc),
        ) < 0;
      wasm.gemm(...shape(ca), alpha, beta, r0, r1, c0, c1, scratch);
      native.gemm(...shape(cb), alpha, beta, r0, r1, c0, c1, scratch);
      if (!same()) return `gemm ${m}x${n}x${k}${tA ? " A^T" : ""}${tB ? " B^T" : ""}`;
      if (beta === 1) continue;
      // With a bias row: C starting from the bias copied into every row, then beta 1 (wasm),
      // against the bias taken in the store (C).
      const bias = b; // B's first n values serve as the row
      for (let r = 0; r < items * m; r++) {
        u.copyWithin((ca >> 2) + r * n, bias >> 2, (bias >> 2) + n);
      }
      u.copyWithin(cb >> 2, ca >> 2, (ca >> 2) + items * sc);
      wasm.gemm(...shape(ca), alpha, 1, r0, r1, c0, c1, scratch);
      native.gemm(...shape(cb), alpha, 0, r0, r1, c0, c1, scratch, bias);
      if (!same()) return `gemm ${m}x${n}x${k} with a bias`;
    } finally {
      arena.free(p, bytes);
    }
  }
  return null;
}

/**
 * The vector width (floats) from which the C GEMM takes every product instead of only the small
 * batched ones: with AVX-512 it ran the Beauty training shapes at 88-110 GFLOP/s on one thread
 * against OpenBLAS 0.3.21's 70-98; the same source built for AVX2 ran them at 0.6-0.9x of OpenBLAS
 * (docs/benchmarks.md), so narrower builds leave the large products to CBLAS.
 */
const EVERY_GEMM_WIDTH = 16;

/**
 * The kernel replacement for WasmBackend.loadRuntime: loads the library found by
 * cpuKernelLibraryPath, checks it against the wasm kernels on `site`, and says in `status` what
 * runs where (for the backend's description).
 */
export function replaceWithCpuKernels(
  site: KernelSite,
  found: { path: string } | { unavailable: string },
): {
  replaced: { kernels: KernelExports; library: string } | null;
  /** The library's GEMM runs every product (16-float vectors: AVX-512), not only small ones. */
  everyGemm: boolean;
  status: string;
} {
  if ("unavailable" in found) {
    return { replaced: null, everyGemm: false, status: `C kernels off (${found.unavailable})` };
  }
  let lib: CpuKernelLibrary;
  try {
    lib = openCpuKernels(found.path);
  } catch (e) {
    const why = e instanceof Error ? e.message : e;
    return { replaced: null, everyGemm: false, status: `C kernels off (${why})` };
  }
  const kernels = withCpuKernels(site.kernels, site.memory, lib);
  const differs = cpuKernelsDiffer(site.kernels, kernels, site.arena);
  if (differs) {
    const status = `C kernels off (${differs} differs from wasm on this CPU)`;
    return { replaced: null, everyGemm: false, status };
  }
  const width = lib.symbols.duaf_cpu_gemm_width();
  const everyGemm = width >= EVERY_GEMM_WIDTH;
  const gemms = everyGemm ? "GEMM" : "small batched GEMMs";
  // Which unit the bf16 products (ceProducts=bf16) run on: their sums round differently on each.
  const bf16 = !lib.symbols.duaf_cpu_has_bf16()
    ? ""
    : lib.symbols.duaf_cpu_bf16_amx()
    ? "; bf16 products on AMX tiles"
    : "; bf16 products on AVX-512 BF16";
  return {
    replaced: { kernels, library: found.path },
    everyGemm,
    status: `elementwise, cross-entropy rows and ${gemms} on C kernels (${width}-float vectors, ` +
      `${found.path}${bf16})`,
  };
}

/**
 * The fused ranking (one thread) against wasm's gemm then rankRows: two bands of rows with a
 * partial register tile, two table chunks with a partial vector, ties with the target (items
 * whose rows equal the target's) and excluded columns that tie, score above, or are the target.
 */
function rankScoresDiffer(wasm: KernelExports, native: KernelExports, arena: Arena): string | null {
  if (!native.rankScores) return null;
  const [rows, items, d] = [61, 1100, 64];
  const scratchBytes = wasm.GEMM_SCRATCH_BYTES.value as number;
  const packBytes = lcePackBytes(items, d), bandBytes = rankBandBytes(d);
  const ex = 3;
  const bytes = 4 * (rows * d + items * d + rows * items + 3 * rows + 1 + ex * rows) +
    scratchBytes + packBytes + bandBytes + 8;
  const p = arena.alloc(bytes);
  try {
    const u = p, table = u + 4 * rows * d, z = table + 4 * items * d;
    const tgt = z + 4 * rows * items, res = tgt + 4 * rows, res2 = res + 4 * rows;
    const off = res2 + 4 * rows, exc = off + 4 * (rows + 1), scratch = exc + 4 * ex * rows;
    const pack = scratch + scratchBytes, band = pack + packBytes, barrier = band + bandBytes;
    arena.f32.set(finiteInputs(rows * d + items * d), u >> 2);
    const f = arena.f32, i32 = arena.i32;
    for (let r = 0; r < rows; r++) {
      const t = (r * 7919) % items, twin = (t + 101) % items;
      i32[(tgt >> 2) + r] = t;
      // A second item with the target's row: its score ties the target's.
      f.copyWithin((table >> 2) + twin * d, (table >> 2) + t * d, (table >> 2) + (t + 1) * d);
      i32[(off >> 2) + r] = ex * r;
      i32.set([t, twin, (r * 31) % items], (exc >> 2) + ex * r);
    }
    i32[(off >> 2) + rows] = ex * rows;
    i32.fill(0, barrier >> 2, (barrier >> 2) + 2);
    wholeGemm(wasm, [u, table, z], [rows, items, d], [0, 1], 1, 0, scratch);
    const a = wasm.rankRows(z, tgt, off, exc, res, rows, items);
    const b = native.rankScores(
      u,
      table,
      tgt,
      off,
      exc,
      res2,
      rows,
      items,
      d,
      pack,
      band,
      0,
      barrier,
      0,
      1,
    );
    const ranks = (o: number) => i32.subarray(o >> 2, (o >> 2) + rows).join(",");
    return a !== b || ranks(res) !== ranks(res2) ? "rankScores" : null;
  } finally {
    arena.free(p, bytes);
  }
}
