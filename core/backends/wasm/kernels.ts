/**
 * Loading the prebuilt kernel module (wasm/build/kernels-*.wasm, built by wasm/build.ts from
 * wasm/assembly/). The relaxed-SIMD build (fused multiply-add) is used when the runtime accepts
 * relaxed SIMD, the plain SIMD128 build otherwise.
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { envVar } from "../../env.ts";

export type KernelVariant = "relaxed" | "simd";

/** The GEMM kernels' K slice (gemm.ts, kernels.c): each adds its own accumulator into C. */
export const GEMM_KC = 256;

/**
 * Scratch of the C kernels' fused cross-entropy (lceForward / lceBackward below; a hidden width
 * up to one K slice): the table's panels, padded to the widest register tile (16 floats), for the
 * forward; two [rows x KC] gradient blocks for the backward.
 */
export const lcePackBytes = (items: number, d: number): number =>
  4 * Math.ceil(items / 16) * 16 * d;
export const lceGradBytes = (rows: number): number => 4 * 2 * rows * GEMM_KC;
/**
 * The same for the bf16 products (lceForwardBf16 / lceBackwardBf16): the table's panels and h's
 * rows as bf16 pairs; the table's pairs along items, h's along rows (transposed), the gradient
 * rows of a block and two blocks of their pairs along rows, and a vector of padding.
 */
export const lceBf16PackBytes = (rows: number, items: number, d: number): number =>
  4 * Math.ceil(d / 2) * (Math.ceil(items / 16) * 16 + rows);
export const lceBf16GradBytes = (rows: number, items: number, d: number): number => {
  const rp = Math.ceil(rows / 2);
  return 4 * (Math.ceil(items / 2) * d + d * rp + rows * (GEMM_KC / 2) + 2 * rp * GEMM_KC + 16);
};
/**
 * Scratch of the C kernels' rankScores: the table's panels (as lcePackBytes, unless the caller
 * keeps them: RankScoresArgs.pack), then each thread's band: RANK_BAND (48) rows by one table
 * chunk (LCE_CHUNK_FLOATS / d items, at least a vector).
 */
export const rankBandBytes = (d: number): number => 4 * 48 * Math.max(16, Math.floor(65536 / d));

/** A fused attention call's sequences [b0, b1), shape and softmax scale (duaf_attention's order). */
type AttentionShapeArgs = [
  b0: number,
  b1: number,
  lq: number,
  lk: number,
  d: number,
  heads: number,
  lrows: number,
  scale: number,
];
/** Its dropout: whether, the keep threshold and scale, the seed. */
type AttentionDropoutArgs = [drop: number, threshold: number, dropScale: number, seed: number];

/** The module's exports. Pointers are byte addresses; counts and strides are elements. */
export interface KernelExports {
  gemm(
    a: number,
    b: number,
    c: number,
    m: number,
    n: number,
    k: number,
    transA: number,
    transB: number,
    batch: number,
    strideA: number,
    strideB: number,
    strideC: number,
    batch2: number,
    strideA2: number,
    strideB2: number,
    strideC2: number,
    lda: number,
    ldb: number,
    ldc: number,
    alpha: number,
    beta: number,
    rowBegin: number,
    rowEnd: number,
    colBegin: number,
    colEnd: number,
    scratch: number,
    /** The C kernel's row C starts from (0: none); the wasm kernel takes no such argument. */
    bias?: number,
  ): void;
  /**
   * The C kernels' one-item GEMM with an epilogue on C's rows [rowBegin, rowEnd) x columns
   * [colBegin, colEnd) (ffi/cpu/kernels.c EPI_*: 1 GELU into e1, 2 GELU's gradient with x = e1,
   * y = e2), the buffers laid out as C. Not in wasm.
   */
  gemmEpilogue?(
    a: number,
    b: number,
    c: number,
    k: number,
    transA: number,
    transB: number,
    lda: number,
    ldb: number,
    ldc: number,
    alpha: number,
    beta: number,
    rowBegin: number,
    rowEnd: number,
    colBegin: number,
    colEnd: number,
    scratch: number,
    bias: number,
    epilogue: number,
    e1: number,
    e2: number,
  ): void;
  GEMM_SCRATCH_BYTES: WebAssembly.Global;
  HEAP_BASE: WebAssembly.Global;
  unary(op: number, x: number, out: number, n: number, alpha: number): void;
  unaryGrad(
    op: number,
    x: number,
    y: number,
    g: number,
    out: number,
    n: number,
    alpha: number,
  ): void;
  binary(op: number, a: number, b: number, out: number, rank: number, params: number): void;
  reduceSum(
    x: number,
    out: number,
    outSize: number,
    accumulate: number,
    rank: number,
    params: number,
  ): void;
  axpy(x: number, out: number, n: number, alpha: number): void;
  copy2d(
    src: number,
    srcStride: number,
    dst: number,
    dstStride: number,
    rows: number,
    cols: number,
    accumulate: number,
  ): void;
  fill32(p: number, bits: number, n: number): void;
  permute(x: number, out: number, rank: number, params: number): void;
  sumSquares(x: number, n: number): number;
  softmax(x: number, out: number, rows: number, cols: number, log: number): void;
  softmaxGrad(
    y: number,
    g: number,
    out: number,
    rows: number,
    cols: number,
    log: number,
    scale: number,
  ): void;
  maskedSoftmax(
    x: number,
    mask: number,
    out: number,
    rows: number,
    cols: number,
    scale: number,
    hasMask: number,
    heads: number,
    q: number,
    sb: number,
    sh: number,
    sq: number,
    rowBegin: number,
  ): void;
  layerNorm(
    x: number,
    gamma: number,
    beta: number,
    out: number,
    mean: number,
    rstd: number,
    rows: number,
    cols: number,
    eps: number,
  ): void;
  /**
   * The C kernels' layerNorm of dropout(a) + b (dropout's threshold and scale, as `dropout`
   * takes them, with the mask at a's element index0 + i; threshold 0: none), the sum kept at `sum`
   * unless it is 0; false, having done nothing, where it does not take the call. Not in wasm.
   */
  addLayerNorm?(
    a: number,
    b: number,
    sum: number,
    gamma: number,
    beta: number,
    out: number,
    mean: number,
    rstd: number,
    rows: number,
    cols: number,
    eps: number,
    threshold: number,
    scale: number,
    seed: number,
    index0: number,
  ): boolean;
  layerNormGrad(
    x: number,
    gamma: number,
    mean: number,
    rstd: number,
    g: number,
    dx: number,
    dgamma: number,
    dbeta: number,
    rows: number,
    cols: number,
  ): void;
  /**
   * The C kernels' layerNormGrad shared by two kernel threads: dx of rows [dx0, dx1), and with
   * dgb != 0 every row's terms of dgamma and dbeta (summed in row order). Not in wasm.
   */
  layerNormGradPart?(
    ...args: [...Parameters<KernelExports["layerNormGrad"]>, dx0: number, dx1: number, dgb: number]
  ): void;
  crossEntropyBlock(
    x: number,
    targets: number,
    lse: number,
    picked: number,
    rows: number,
    cols: number,
    colOffset: number,
    first: number,
    shift: number,
  ): void;
  crossEntropyBlockGrad(
    x: number,
    targets: number,
    lse: number,
    w: number,
    rows: number,
    cols: number,
    colOffset: number,
    shift: number,
  ): void;
  /**
   * The C kernels' reduceSum over the rows of [rows x cols] for columns [c0, c1) (reduceSum's
   * arithmetic; ffi/cpu/kernels.c duaf_col_sums). The wasm module has none.
   */
  colSums?(
    x: number,
    out: number,
    rows: number,
    cols: number,
    c0: number,
    c1: number,
    accumulate: number,
  ): void;
  /**
   * The C kernels' GEMM over a range of K slices, into C or each slice into its own block, and the
   * blocks' sum into C in order (ffi/cpu/kernels.c duaf_gemm_slices / duaf_gemm_add_parts): a
   * product with a small output and a long K split across the threads by K, with the whole
   * product's bits. The wasm module has none.
   */
  gemmSlices?(
    a: number,
    b: number,
    c: number,
    m: number,
    n: number,
    k: number,
    transA: number,
    transB: number,
    lda: number,
    ldb: number,
    ldc: number,
    alpha: number,
    beta: number,
    sliceBegin: number,
    sliceEnd: number,
    parts: number,
    scratch: number,
  ): void;
  gemmAddParts?(c: number, parts: number, m: number, n: number, ldc: number, count: number): void;
  /**
   * The C kernels' fused cross-entropy with its logits products (ffi/cpu/kernels.c
   * duaf_lce_forward / duaf_lce_backward; WasmBackend.linearCrossEntropyKept). The wasm module
   * has none: it runs the separate calls.
   */
  lceForward?(
    h: number,
    table: number,
    z: number,
    targets: number,
    lse: number,
    picked: number,
    shift: number,
    rows: number,
    items: number,
    d: number,
    pack: number,
    barrier: number,
    tid: number,
    threads: number,
  ): void;
  lceBackward?(
    h: number,
    table: number,
    z: number,
    targets: number,
    lse: number,
    w: number,
    shift: number,
    dh: number,
    dtable: number,
    rows: number,
    items: number,
    d: number,
    grads: number,
    barrier: number,
    tid: number,
    threads: number,
  ): void;
  /**
   * The C kernels' chunked cross-entropy, streamed (duaf_lce_stream_forward / _backward;
   * WasmBackend.linearCrossEntropyBlocks): the separate calls' bits in item blocks of `block`,
   * without their [rows x block] logits. lceStreamScratchFloats: the forward's scratch a thread
   * (kind 0), or the backward's in all (1); 2 and 3 the same for the bf16 products.
   */
  lceStreamForward?(
    h: number,
    table: number,
    targets: number,
    lse: number,
    picked: number,
    rows: number,
    items: number,
    d: number,
    block: number,
    scratch: number,
    tid: number,
    threads: number,
  ): void;
  lceStreamBackward?(
    h: number,
    table: number,
    targets: number,
    lse: number,
    w: number,
    dh: number,
    dtable: number,
    rows: number,
    items: number,
    d: number,
    block: number,
    scratch: number,
    barrier: number,
    tid: number,
    threads: number,
  ): void;
  lceStreamScratchFloats?(rows: number, block: number, d: number, kind: number): number;
  /** lceStreamForward / lceStreamBackward with bf16 products, where AVX-512 BF16 is built. */
  lceStreamForwardBf16?: KernelExports["lceStreamForward"];
  lceStreamBackwardBf16?: KernelExports["lceStreamBackward"];
  /**
   * lceForward / lceBackward with the three products on bf16 inputs and float32 sums
   * (duaf_lce_forward_bf16 / duaf_lce_backward_bf16): only where the C kernels were built with
   * AVX-512 BF16.
   */
  lceForwardBf16?: KernelExports["lceForward"];
  lceBackwardBf16?: KernelExports["lceBackward"];
  /**
   * The C kernels' fused attention, sequences [b0, b1) of a call (ffi/cpu/kernels.c
   * duaf_attention / duaf_attention_grad; WasmBackend.attention). The wasm module has none: it
   * runs the separate calls.
   */
  attention?(
    ...args: [
      ...[q: number, k: number, v: number, mask: number, p: number, out: number, steps: number],
      ...[scratch: number, ...AttentionShapeArgs],
      ...[hasMask: number, sb: number, sh: number, sq: number, ...AttentionDropoutArgs],
    ]
  ): void;
  attentionGrad?(
    ...args: [
      ...[q: number, k: number, v: number, p: number, g: number, dq: number, dk: number],
      ...[dv: number, steps: number, scratch: number, ...AttentionShapeArgs],
      ...AttentionDropoutArgs,
    ]
  ): void;
  /** Scratch floats one thread's attention call needs for lq queries, lk keys of dh dims. */
  attentionScratchFloats?(lq: number, lk: number, dh: number): number;
  /** Keys below which the separate calls are faster than `attention` on this CPU. */
  attentionMinKeys?(): number;
  /** The C kernels' ranking of a product's scores (duaf_rank_scores); the wasm module has none. */
  rankScores?(
    users: number,
    items: number,
    targets: number,
    exOffsets: number,
    exCols: number,
    out: number,
    rows: number,
    cols: number,
    d: number,
    scratch: number,
    band: number,
    packed: number,
    barrier: number,
    tid: number,
    threads: number,
  ): number;
  modalityFusion(
    ptrs: number,
    m: number,
    t: number,
    q: number,
    h: number,
    omega: number,
    keys: number,
    rowBegin: number,
    rowEnd: number,
    dim: number,
    scale: number,
  ): void;
  modalityFusionGrad(
    ptrs: number,
    m: number,
    q: number,
    omega: number,
    keys: number,
    gh: number,
    gomega: number,
    gt: number,
    gq: number,
    rowBegin: number,
    rowEnd: number,
    dim: number,
    scale: number,
  ): void;
  gather(
    table: number,
    tableRows: number,
    idx: number,
    out: number,
    n: number,
    dim: number,
  ): number;
  scatterAdd(g: number, idx: number, out: number, outRows: number, n: number, dim: number): number;
  pick(x: number, idx: number, out: number, rows: number, cols: number): number;
  pickGrad(g: number, idx: number, out: number, rows: number, cols: number): number;
  argmaxRows(x: number, out: number, rows: number, cols: number): void;
  rankRows(
    x: number,
    targets: number,
    exOffsets: number,
    exCols: number,
    out: number,
    rows: number,
    cols: number,
  ): number;
  dropout(
    x: number,
    out: number,
    n: number,
    threshold: number,
    scale: number,
    seed: number,
  ): void;
  /**
   * The C kernels' gather with b ([n, dim]) added: the first position out of range (nothing
   * written) or -1. Not in wasm.
   */
  gatherAdd?(
    table: number,
    tableRows: number,
    idx: number,
    b: number,
    out: number,
    n: number,
    dim: number,
  ): number;
  /**
   * The C kernels' dropout of elements [index0, index0 + n) of a call (x and out at that
   * element): the call's mask there, for a share of it on each kernel thread. Not in wasm.
   */
  dropoutAt?(
    x: number,
    out: number,
    n: number,
    threshold: number,
    scale: number,
    seed: number,
    index0: number,
  ): void;
  /** The C kernels' candidate scores (duaf_gather_dots); not in the wasm module. */
  gatherDots?(
    table: number,
    tableRows: number,
    idx: number,
    h: number,
    out: number,
    n: number,
    m: number,
    d: number,
  ): number;
  /** Their gradient for the table's candidate rows, scattered (duaf_scatter_outer); not in wasm. */
  scatterOuter?(
    g: number,
    h: number,
    idx: number,
    out: number,
    outRows: number,
    n: number,
    m: number,
    d: number,
    c0: number,
    c1: number,
  ): number;
  /** Their gradient for h (duaf_gather_dots_grad_h); not in the wasm module. */
  gatherDotsGradH?(
    table: number,
    idx: number,
    g: number,
    dh: number,
    n: number,
    m: number,
    d: number,
  ): void;
  /** The C kernels' dropout of rows of a larger tensor (duaf_dropout_rows); not in the wasm module. */
  dropoutRows?(
    x: number,
    out: number,
    rows: number,
    n: number,
    cols: number,
    threshold: number,
    scale: number,
    seed: number,
  ): void;
  adam(
    p: number,
    g: number,
    m: number,
    v: number,
    n: number,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    decoupled: number,
    biasCorrection1: number,
    biasCorrection2: number,
  ): void;
}

/**
 * A module whose one function returns f32x4.relaxed_madd of three zero vectors (final opcode
 * 0xfd 0x105): it validates exactly when the runtime implements standard relaxed SIMD.
 */
const RELAXED_PROBE = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // magic, version
  ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b], // type section: () -> v128
  ...[0x03, 0x02, 0x01, 0x00], // function section: function 0 has type 0
  ...[0x0a, 0x3d, 0x01, 0x3b, 0x00], // code section: one 59-byte body, no locals
  ...[0, 1, 2].flatMap(() => [0xfd, 0x0c, ...new Array<number>(16).fill(0)]), // 3x v128.const 0
  ...[0xfd, 0x85, 0x02, 0x0b], // f32x4.relaxed_madd, end
]);

export function runtimeHasRelaxedSimd(): boolean {
  return WebAssembly.validate(RELAXED_PROBE);
}

const compiled = new Map<KernelVariant, Promise<WebAssembly.Module>>();

/**
 * URL of a built kernel module: in $DUAF_WASM_DIR when set (a bundled CLI, whose own location
 * says nothing of the repository's, as tools/device_pack.sh makes), else relative to this file.
 */
export function kernelUrl(variant: KernelVariant): URL {
  const dir = envVar("DUAF_WASM_DIR");
  const file = `kernels-${variant}.wasm`;
  if (dir) return pathToFileURL(resolve(dir, file));
  return new URL(`../../../wasm/build/${file}`, import.meta.url);
}

async function readBytes(url: URL): Promise<Uint8Array<ArrayBuffer>> {
  if (url.protocol === "file:") return await Deno.readFile(url);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot fetch ${url.href}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** The compiled module for a variant (compiled once per process). */
export function compileKernels(variant: KernelVariant): Promise<WebAssembly.Module> {
  let p = compiled.get(variant);
  if (!p) {
    p = readBytes(kernelUrl(variant)).then((bytes) => WebAssembly.compile(bytes));
    compiled.set(variant, p);
  }
  return p;
}

export async function instantiateKernels(
  module: WebAssembly.Module,
  memory: WebAssembly.Memory,
): Promise<KernelExports> {
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  return instance.exports as unknown as KernelExports;
}
