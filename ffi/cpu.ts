/**
 * Binding to the native CPU kernels (ffi/cpu/kernels.c, built by ffi/cpu/build.ts) through
 * Deno.dlopen. Every call takes `base`, the address of byte 0 of a wasm memory, and byte offsets
 * into it, exactly the arguments of the wasm kernel of the same name, so the native backend can
 * hand a call to either one.
 */

/** The ABI this binding speaks; kernels.c's duaf_cpu_abi() must return it. */
export const CPU_KERNELS_ABI = 29;

/** The fused cross-entropy's entry points; the bf16 ones take the same arguments. */
const LCE_FORWARD = {
  parameters: [
    "pointer",
    ...["u32", "u32", "u32", "u32", "u32", "u32", "u32"], // h, table, z, targets, lse, picked, shift
    ...["i32", "i32", "i32", "u32", "u32", "i32", "i32"], // rows, items, d, pack, barrier, tid, nt
  ],
  result: "i32",
} as const;
const LCE_BACKWARD = {
  parameters: [
    "pointer",
    ...["u32", "u32", "u32", "u32", "u32", "u32", "u32"], // h, table, z, targets, lse, w, shift
    ...["u32", "u32", "i32", "i32", "i32"], // dh, dtable, rows, items, d
    ...["u32", "u32", "i32", "i32"], // gradient buffers, barrier, tid, nt
  ],
  result: "i32",
} as const;

const LCE_STREAM_FORWARD = {
  parameters: [
    "pointer",
    ...["u32", "u32", "u32", "u32", "u32"], // h, table, targets, lse, picked
    ...["i32", "i32", "i32", "i32", "u32", "i32", "i32"], // rows, items, d, block, scratch, tid, nt
  ],
  result: "i32",
} as const;
const LCE_STREAM_BACKWARD = {
  parameters: [
    "pointer",
    ...["u32", "u32", "u32", "u32", "u32", "u32", "u32"], // h, table, targets, lse, w, dh, dtable
    ...["i32", "i32", "i32", "i32"], // rows, items, d, block
    ...["u32", "u32", "i32", "i32"], // scratch, barrier, tid, nt
  ],
  result: "i32",
} as const;

const SYMBOLS = {
  duaf_cpu_abi: { parameters: [], result: "i32" },
  duaf_cpu_gemm_width: { parameters: [], result: "i32" },
  duaf_unary: {
    parameters: ["pointer", "i32", "u32", "u32", "i32", "f32"],
    result: "i32",
  },
  duaf_unary_grad: {
    parameters: ["pointer", "i32", "u32", "u32", "u32", "u32", "i32", "f32"],
    result: "i32",
  },
  duaf_ce_block: {
    parameters: ["pointer", "u32", "u32", "u32", "u32", "i32", "i32", "i32", "i32", "u32"],
    result: "void",
  },
  duaf_gemm: {
    parameters: [
      "pointer",
      ...["u32", "u32", "u32"], // a, b, c
      ...["i32", "i32", "i32", "i32", "i32"], // m, n, k, transA, transB
      ...["i32", "i32", "i32", "i32"], // batch, strideA, strideB, strideC
      ...["i32", "i32", "i32", "i32"], // batch2, strideA2, strideB2, strideC2
      ...["i32", "i32", "i32", "f32", "i32"], // lda, ldb, ldc, alpha, beta
      ...["i32", "i32", "i32", "i32", "u32", "u32"], // rowBegin, rowEnd, colBegin, colEnd, scratch, bias
    ],
    result: "void",
  },
  // One item with an epilogue. Deno's FFI fast calls fail past 29 parameters: duaf_gemm has 29.
  duaf_gemm_epilogue: {
    parameters: [
      "pointer",
      ...["u32", "u32", "u32", "i32", "i32", "i32"], // a, b, c, k, transA, transB
      ...["i32", "i32", "i32", "f32", "i32"], // lda, ldb, ldc, alpha, beta
      ...["i32", "i32", "i32", "i32", "u32", "u32"], // rowBegin, rowEnd, colBegin, colEnd, scratch, bias
      ...["i32", "u32", "u32"], // epilogue, e1, e2
    ],
    result: "void",
  },
  duaf_masked_softmax: {
    parameters: [
      "pointer",
      ...["u32", "u32", "u32", "i32", "i32", "f32"], // x, mask, out, rows, cols, scale
      ...["i32", "i32", "i32", "i32", "i32", "i32", "i32"], // hasMask, heads, q, sb, sh, sq, rowBegin
    ],
    result: "void",
  },
  duaf_rank_scores: {
    parameters: [
      "pointer",
      ...["u32", "u32", "u32", "u32", "u32", "u32"], // users, table, targets, exOffsets, exCols, out
      ...["i32", "i32", "i32", "u32", "u32"], // rows, items, d, pack, band
      ...["i32", "u32", "i32", "i32"], // packed (pack holds the table already), barrier, tid, nt
    ],
    result: "i32",
  },
  duaf_rank_rows: {
    parameters: ["pointer", "u32", "u32", "u32", "u32", "u32", "i32", "i32"],
    result: "i32",
  },
  duaf_modality_fusion: {
    parameters: [
      "pointer",
      "u32",
      "i32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "i32",
      "i32",
      "i32",
      "f32",
    ],
    result: "void",
  },
  duaf_modality_fusion_grad: {
    parameters: [
      "pointer",
      ...["u32", "i32"], // ptrs, m
      ...["u32", "u32", "u32", "u32", "u32", "u32", "u32"], // q, omega, keys, gh, gomega, gt, gq
      ...["i32", "i32", "i32", "f32"], // rowBegin, rowEnd, dim, scale
    ],
    result: "void",
  },
  duaf_dropout: {
    parameters: ["pointer", "u32", "u32", "i32", "i32", "f32", "u32"],
    result: "void",
  },
  duaf_gather_add: {
    parameters: ["pointer", "u32", "i32", "u32", "u32", "u32", "i32", "i32"],
    result: "i32",
  },
  duaf_dropout_at: {
    parameters: ["pointer", "u32", "u32", "i32", "i32", "f32", "u32", "u32"],
    result: "void",
  },
  duaf_gather_dots: {
    parameters: ["pointer", "u32", "i32", "u32", "u32", "u32", "i32", "i32", "i32"],
    result: "i32",
  },
  duaf_gather_dots_grad_h: {
    parameters: ["pointer", "u32", "u32", "u32", "u32", "i32", "i32", "i32"],
    result: "void",
  },
  duaf_scatter_outer: {
    parameters: ["pointer", "u32", "u32", "u32", "u32", "i32", "i32", "i32", "i32", "i32", "i32"],
    result: "i32",
  },
  duaf_dropout_rows: {
    parameters: ["pointer", "u32", "u32", "u32", "i32", "i32", "i32", "f32", "u32"],
    result: "void",
  },
  duaf_gemm_slices: {
    parameters: [
      "pointer",
      ...["u32", "u32", "u32", "i32", "i32", "i32", "i32", "i32"], // a, b, c, m, n, k, transA, transB
      ...["i32", "i32", "i32", "f32", "i32", "i32", "i32"], // lda, ldb, ldc, alpha, beta, p0, p1
      ...["u32", "u32"], // parts, scratch
    ],
    result: "void",
  },
  duaf_gemm_add_parts: {
    parameters: ["pointer", "u32", "u32", "i32", "i32", "i32", "i32"],
    result: "void",
  },
  duaf_lce_forward: LCE_FORWARD,
  duaf_lce_backward: LCE_BACKWARD,
  duaf_lce_stream_scratch_floats: { parameters: ["i32", "i32", "i32", "i32"], result: "i32" },
  duaf_lce_stream_forward: LCE_STREAM_FORWARD,
  duaf_lce_stream_backward: LCE_STREAM_BACKWARD,
  duaf_cpu_has_bf16: { parameters: [], result: "i32" },
  duaf_cpu_bf16_amx: { parameters: [], result: "i32" },
  duaf_lce_forward_bf16: LCE_FORWARD,
  duaf_lce_backward_bf16: LCE_BACKWARD,
  duaf_lce_stream_forward_bf16: LCE_STREAM_FORWARD,
  duaf_lce_stream_backward_bf16: LCE_STREAM_BACKWARD,
  duaf_attention: {
    parameters: [
      "pointer",
      ...["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32"], // q, k, v, mask, p, out, steps, scratch
      ...["i32", "i32", "i32", "i32", "i32", "i32", "i32"], // b0, b1, lq, lk, d, heads, lrows
      ...["f32", "i32", "i32", "i32", "i32"], // scale, hasMask, sb, sh, sq
      ...["i32", "i32", "f32", "u32"], // drop, threshold, dropout scale, seed
    ],
    result: "i32",
  },
  duaf_attention_grad: {
    parameters: [
      "pointer",
      ...["u32", "u32", "u32", "u32", "u32"], // q, k, v, p, g
      ...["u32", "u32", "u32", "u32", "u32"], // dq, dk, dv, steps, scratch
      ...["i32", "i32", "i32", "i32", "i32", "i32", "i32"], // b0, b1, lq, lk, d, heads, lrows
      ...["f32", "i32", "i32", "f32", "u32"], // scale, drop, threshold, dropout scale, seed
    ],
    result: "i32",
  },
  duaf_attention_scratch_floats: { parameters: ["i32", "i32", "i32"], result: "i32" },
  duaf_attention_min_keys: { parameters: [], result: "i32" },
  duaf_scatter_add: {
    parameters: ["pointer", "u32", "u32", "u32", "i32", "i32", "i32"],
    result: "i32",
  },
  duaf_axpy: { parameters: ["pointer", "u32", "u32", "i32", "f32"], result: "void" },
  duaf_binary: {
    parameters: ["pointer", "i32", "u32", "u32", "u32", "i32", "u32"],
    result: "void",
  },
  duaf_col_sums: {
    parameters: ["pointer", "u32", "u32", "i32", "i32", "i32", "i32", "i32"],
    result: "void",
  },
  duaf_layer_norm: {
    parameters: ["pointer", "u32", "u32", "u32", "u32", "u32", "u32", "i32", "i32", "f32"],
    result: "void",
  },
  duaf_add_layer_norm: {
    parameters: [
      "pointer",
      ...["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32"], // a, b, sum, gamma, beta, out, mean, rstd
      ...["i32", "i32", "f32"], // rows, cols, eps
      ...["i32", "f32", "u32", "u32"], // a's dropout: threshold, scale, seed, first element index
    ],
    result: "i32",
  },
  duaf_layer_norm_grad: {
    parameters: ["pointer", "u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32", "i32", "i32"],
    result: "void",
  },
  duaf_layer_norm_grad_part: {
    parameters: [
      "pointer",
      ...["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32", "i32", "i32"],
      ...["i32", "i32", "i32"], // dx rows [dx0, dx1), dgamma and dbeta over every row
    ],
    result: "void",
  },
  duaf_ce_block_grad: {
    parameters: ["pointer", "u32", "u32", "u32", "u32", "i32", "i32", "i32", "u32"],
    result: "void",
  },
} as const;

export type CpuKernelSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** A loaded kernel library: its path and its functions. */
export interface CpuKernelLibrary {
  readonly path: string;
  readonly symbols: CpuKernelSymbols;
}

/** Opens the library at `path`; throws when it does not load or speaks another ABI. */
export function openCpuKernels(path: string): CpuKernelLibrary {
  const lib = Deno.dlopen(path, SYMBOLS);
  const abi = lib.symbols.duaf_cpu_abi();
  if (abi !== CPU_KERNELS_ABI) {
    lib.close();
    throw new Error(`${path}: kernel ABI ${abi}, expected ${CPU_KERNELS_ABI}`);
  }
  return { path, symbols: lib.symbols };
}
