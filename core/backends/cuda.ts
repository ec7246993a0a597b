/**
 * The `cuda` backend: every Backend op runs on the GPU through libduaf_cuda.so (ffi/cuda/shim.cu),
 * a small C shim over cuBLAS and hand-written kernels. Tensors stay in device memory for the whole
 * training step; upload and download are the only host copies.
 *
 * Storage handles hold a device pointer from the shim's caching pool. Element offsets are turned
 * into byte-advanced pointers here, and every call is bounds-checked here first, because a kernel
 * writing past a block corrupts device memory silently.
 */
import { ResourceError } from "../errors.ts";
import { envVar } from "../env.ts";
import { fileURLToPath } from "node:url";
import {
  type AdamArgs,
  type AttentionArgs,
  type AttentionGradArgs,
  type Backend,
  type BackendFactory,
  BINARY_CODES,
  type BinaryOp,
  checkedInto,
  type DType,
  type FusionArgs,
  type FusionGradArgs,
  type GemmArgs,
  gemmBatch2,
  gemmLd,
  gemmSpans,
  maskSpan,
  type Storage,
  UNARY_CODES,
  type UnaryOp,
} from "../backend.ts";

/**
 * The optional calls DUAF_CUDA_FUSED=off (or `fused: false`) hides, so that ops make their separate
 * calls: a way around a fused kernel suspected on a new device.
 */
export const CUDA_FUSED_CALLS = [
  "addLayerNorm",
  "attention",
  "attentionGrad",
  "gatherAdd",
  "dropoutRows",
  "rankRows",
  "wholeScoresBytes",
] as const;

/** Priority in the registry: above native (30), wasm (20) and js (0). */
export const CUDA_PRIORITY = 40;

const MAX_RANK = 6;
const MAX_ELEMENTS = 0x7fffffff;
/** DUAF_DECLINED of ffi/cuda/duaf_cuda.h: an optional fused call that queued nothing. */
const DECLINED = -1;

const P = "pointer" as const;
const I = "i32" as const;
const F = "f32" as const;
const D = "f64" as const;
const B = "buffer" as const;
const fn = <const T extends readonly Deno.NativeType[]>(parameters: T) => ({
  parameters,
  result: I,
});

const SYMBOLS = {
  duaf_init: fn([]),
  duaf_last_error: { parameters: [], result: P },
  duaf_info: { parameters: [], result: P },
  duaf_set_cublas: fn([I]),
  duaf_using_cublas: fn([]),
  duaf_sync: fn([]),
  duaf_alloc: { parameters: [I], result: P },
  duaf_free: fn([P]),
  duaf_empty_cache: fn([]),
  duaf_pool_stats: { parameters: [B], result: "void" },
  duaf_upload: fn([P, B, I]),
  duaf_download: fn([B, P, I]),
  duaf_fill_f32: fn([P, I, F]),
  duaf_fill_i32: fn([P, I, I]),
  duaf_copy2d: fn([P, I, P, I, I, I, I]),
  duaf_gemm: fn([I, I, I, I, I, F, P, I, P, I, F, P, I, I, I, I, I, I, I, I, I]),
  duaf_unary: fn([I, P, P, I, F]),
  duaf_unary_grad: fn([I, P, P, P, P, I, F]),
  duaf_binary: fn([I, P, B, P, B, P, B, I]),
  duaf_reduce_sum: fn([P, B, I, P, B, I, I]),
  duaf_axpy: fn([P, P, I, F]),
  duaf_sum_squares: fn([P, I, B]),
  duaf_permute: fn([P, B, B, I, P]),
  duaf_softmax: fn([P, P, I, I, I]),
  duaf_softmax_grad: fn([P, P, P, I, I, I, F]),
  duaf_masked_softmax: fn([P, P, P, I, I, F, I, I, I, I, I]),
  duaf_layer_norm: fn([P, P, P, P, P, P, I, I, F]),
  duaf_layer_norm_grad: fn([P, P, P, P, P, P, P, P, I, I]),
  duaf_add_layer_norm: fn([P, P, P, P, P, P, P, P, I, I, F, I, D, "u32"]),
  duaf_attention: fn([P, P, P, P, P, P, P, I, I, I, I, I, F, I, I, I, I, D, "u32"]),
  duaf_attention_grad: fn([P, P, P, P, P, P, P, P, P, I, I, I, I, I, F, I, D, "u32"]),
  duaf_ce_block: fn([P, P, P, P, I, I, I, I]),
  duaf_ce_block_grad: fn([P, P, P, P, I, I, I]),
  duaf_modality_fusion: fn([P, P, P, P, I, P, P, P, P, P, I, I, F]),
  duaf_modality_fusion_grad: fn([P, P, P, P, P, P, P, P, I, P, P, P, P, P, P, P, I, I, F]),
  duaf_gather: fn([P, I, P, P, I, I]),
  duaf_gather_add: fn([P, I, P, P, P, I, I]),
  duaf_scatter_add: fn([P, P, P, I, I, I]),
  duaf_pick: fn([P, P, P, I, I]),
  duaf_rank_rows: fn([P, P, P, P, P, I, I]),
  duaf_pick_grad: fn([P, P, P, I, I]),
  duaf_dropout: fn([P, P, I, D, "u32"]),
  duaf_dropout_rows: fn([P, P, P, I, I, D, "u32"]),
  duaf_adam: fn([P, P, P, P, I, D, D, D, D, D, I, D, D]),
} as const;

type Shim = Deno.DynamicLibrary<typeof SYMBOLS>;
/** The shim's functions, as Deno.dlopen types them (tests substitute a recording fake). */
export type CudaShimSymbols = Shim["symbols"];

class CudaStorage implements Storage {
  constructor(
    readonly size: number,
    readonly dtype: DType,
    public ptr: Deno.PointerObject | null,
  ) {}
}

/** Default location of the shim built by `deno task build:cuda`. */
export function defaultShimPath(): string | null {
  const url = new URL("../../ffi/cuda/build/libduaf_cuda.so", import.meta.url);
  return url.protocol === "file:" ? fileURLToPath(url) : null;
}

let loaded: Promise<Shim | { unavailable: string }> | null = null;

/**
 * Opens and initializes the shim once per process ($DUAF_CUDA_LIB overrides the path). Never
 * throws: every failure becomes a one-line reason.
 */
export function loadCudaShim(): Promise<Shim | { unavailable: string }> {
  loaded ??= Promise.resolve().then(() => {
    let path: string | null;
    try {
      path = Deno.env.get("DUAF_CUDA_LIB") || defaultShimPath();
    } catch {
      path = defaultShimPath(); // no --allow-env
    }
    return openCudaShim(path);
  });
  return loaded;
}

/** Opens the shim at `path` and initializes CUDA; a reason instead of an exception on failure. */
export function openCudaShim(path: string | null): Shim | { unavailable: string } {
  if (Deno.build.os !== "linux") {
    return { unavailable: `no CUDA device: the CUDA shim is built for Linux only` };
  }
  if (!path) return { unavailable: "no CUDA device: shim path unknown (set DUAF_CUDA_LIB)" };
  try {
    Deno.statSync(path);
  } catch {
    return {
      unavailable: `no CUDA device: shim not built (${path} missing; run deno task build:cuda)`,
    };
  }
  let lib: Shim;
  try {
    lib = Deno.dlopen(path, SYMBOLS);
  } catch (e) {
    const msg = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    return { unavailable: `no CUDA device: cannot load ${path}: ${msg}` };
  }
  if (lib.symbols.duaf_init() !== 0) {
    // The library stays loaded: once cudart has started it may have registered exit handlers
    // in its code, and unloading it would leave them dangling.
    return { unavailable: `no CUDA device: ${cString(lib.symbols.duaf_last_error())}` };
  }
  return lib;
}

function cString(p: Deno.PointerValue): string {
  return p ? Deno.UnsafePointerView.getCString(p) : "";
}

export class CudaBackend implements Backend {
  readonly name = "cuda";
  /** Device memory is plentiful and each kernel call costs ~4 us of host time: batches run whole. */
  readonly microBatchTokens = 262144;
  /** Scores stay on the device and are ranked there (rankRows): whole up to 1 GiB a batch. */
  readonly wholeScoresBytes = 1 << 30;
  readonly #s: CudaShimSymbols;
  // Reused host arrays for shapes and strides: no allocation per kernel call.
  readonly #shape = new Int32Array(MAX_RANK);
  readonly #s0 = new Int32Array(MAX_RANK);
  readonly #s1 = new Int32Array(MAX_RANK);
  readonly #f64 = new Float64Array(5);

  constructor(shim: { symbols: CudaShimSymbols }, opts: { fused?: boolean } = {}) {
    this.#s = shim.symbols;
    if (!(opts.fused ?? envVar("DUAF_CUDA_FUSED") !== "off")) {
      // The separate calls only: the optional fused ones hidden, evaluation ranked in blocks.
      for (const name of CUDA_FUSED_CALLS) Object.defineProperty(this, name, { value: undefined });
    }
  }

  /** Device, driver, runtime and GEMM engine, in one line. */
  get description(): string {
    return cString(this.#s.duaf_info());
  }

  /** Whether GEMM runs on cuBLAS (true) or the shim's own tiled kernel. */
  get usingCublas(): boolean {
    return this.#s.duaf_using_cublas() === 1;
  }

  /** Switches GEMM between cuBLAS and the built-in kernel (tests compare the two). */
  setCublas(on: boolean): void {
    this.#check(this.#s.duaf_set_cublas(on ? 1 : 0), "setCublas");
  }

  /** Pool accounting: bytes handed out, bytes cached for reuse, cudaMalloc calls, live blocks. */
  /**
   * The memory pool: bytes in live blocks and cached beside them, segments allocated from the
   * driver so far, live blocks, and the peak of bytes in use.
   */
  poolStats(): { inUse: number; cached: number; mallocs: number; live: number; peak: number } {
    this.#s.duaf_pool_stats(this.#f64);
    const [inUse, cached, mallocs, live, peak] = this.#f64;
    return { inUse, cached, mallocs, live, peak };
  }

  /** Returns cached device blocks to the driver. */
  emptyCache(): void {
    this.#check(this.#s.duaf_empty_cache(), "emptyCache");
  }

  /** #check for an optional fused call: false when the shim declined the shapes. */
  #took(status: number, op: string): boolean {
    if (status === DECLINED) return false;
    this.#check(status, op);
    return true;
  }

  #check(status: number, op: string): void {
    if (status !== 0) throw new Error(`cuda ${op}: ${cString(this.#s.duaf_last_error())}`);
  }

  // ---- memory -------------------------------------------------------------------------------

  alloc(size: number, dtype: DType): Storage {
    if (!Number.isInteger(size) || size < 0 || size > MAX_ELEMENTS) {
      throw new RangeError(`cuda alloc: bad size ${size}`);
    }
    const ptr = this.#s.duaf_alloc(size);
    if (ptr === null) {
      const why = cString(this.#s.duaf_last_error());
      if (/out of memory/i.test(why)) {
        throw new ResourceError(
          "GPU memory",
          size * 4,
          why,
          "use smaller batches (tokenBudget, batchSize, evalBatchSize) or free the GPU",
        );
      }
      throw new Error(`cuda alloc: ${why}`);
    }
    return new CudaStorage(size, dtype, ptr);
  }

  upload(data: Float32Array | Int32Array, dtype: DType): Storage {
    const s = this.alloc(data.length, dtype);
    this.#check(this.#s.duaf_upload(ptr(s), data, data.length), "upload");
    return s;
  }

  download(
    s: Storage,
    offset = 0,
    size = s.size - offset,
    into?: Float32Array | Int32Array,
  ): Float32Array | Int32Array {
    need(s, offset, size, "download");
    const out = into
      ? checkedInto(into, s.dtype, size)
      : s.dtype === "i32"
      ? new Int32Array(size)
      : new Float32Array(size);
    this.#check(this.#s.duaf_download(out, at(s, offset), size), "download");
    return out;
  }

  free(s: Storage): void {
    const c = s as CudaStorage;
    if (c.ptr === null) return;
    this.#check(this.#s.duaf_free(c.ptr), "free");
    c.ptr = null;
  }

  fill(s: Storage, value: number, offset = 0, size = s.size - offset): void {
    need(s, offset, size, "fill");
    const status = s.dtype === "i32"
      ? this.#s.duaf_fill_i32(at(s, offset), size, value | 0)
      : this.#s.duaf_fill_f32(at(s, offset), size, value);
    this.#check(status, "fill");
  }

  copy2d(
    src: Storage,
    srcOffset: number,
    srcStride: number,
    dst: Storage,
    dstOffset: number,
    dstStride: number,
    rows: number,
    cols: number,
    accumulate: boolean,
  ): void {
    if (rows <= 0 || cols <= 0) return;
    need(src, srcOffset, (rows - 1) * srcStride + cols, "copy2d src");
    need(dst, dstOffset, (rows - 1) * dstStride + cols, "copy2d dst");
    const mode = !accumulate ? 0 : dst.dtype === "i32" ? 2 : 1;
    this.#check(
      this.#s.duaf_copy2d(
        at(src, srcOffset),
        srcStride,
        at(dst, dstOffset),
        dstStride,
        rows,
        cols,
        mode,
      ),
      "copy2d",
    );
  }

  // ---- dense math ---------------------------------------------------------------------------

  gemm(g: GemmArgs): void {
    const { m, n, k, batch } = g;
    if (m <= 0 || n <= 0 || batch <= 0) return;
    const span = gemmSpans(g);
    const { lda, ldb, ldc } = gemmLd(g);
    const inner = gemmBatch2(g);
    need(g.a, g.aOffset, span.a, "gemm A");
    need(g.b, g.bOffset, span.b, "gemm B");
    need(g.c, g.cOffset, span.c, "gemm C");
    this.#check(
      this.#s.duaf_gemm(
        g.transA ? 1 : 0,
        g.transB ? 1 : 0,
        m,
        n,
        k,
        g.alpha,
        at(g.a, g.aOffset),
        g.strideA,
        at(g.b, g.bOffset),
        g.strideB,
        g.beta,
        at(g.c, g.cOffset),
        g.strideC,
        batch,
        lda,
        ldb,
        ldc,
        inner.n,
        inner.a,
        inner.b,
        inner.c,
      ),
      "gemm",
    );
  }

  // ---- elementwise --------------------------------------------------------------------------

  unary(op: UnaryOp, x: Storage, out: Storage, n: number, alpha: number): void {
    need(x, 0, n, "unary x");
    need(out, 0, n, "unary out");
    this.#check(this.#s.duaf_unary(UNARY_CODES[op], ptr(x), ptr(out), n, alpha), `unary ${op}`);
  }

  unaryGrad(
    op: UnaryOp,
    x: Storage,
    y: Storage,
    g: Storage,
    out: Storage,
    n: number,
    alpha: number,
  ): void {
    for (const s of [x, y, g, out]) need(s, 0, n, "unaryGrad");
    this.#check(
      this.#s.duaf_unary_grad(UNARY_CODES[op], ptr(x), ptr(y), ptr(g), ptr(out), n, alpha),
      `unaryGrad ${op}`,
    );
  }

  binary(
    op: BinaryOp,
    a: Storage,
    aStrides: readonly number[],
    b: Storage,
    bStrides: readonly number[],
    out: Storage,
    shape: readonly number[],
  ): void {
    const n = this.#setShape(shape, "binary");
    if (n === 0) return;
    need(a, 0, span(shape, aStrides), "binary a");
    need(b, 0, span(shape, bStrides), "binary b");
    need(out, 0, n, "binary out");
    this.#s0.set(aStrides);
    this.#s1.set(bStrides);
    this.#check(
      this.#s.duaf_binary(
        BINARY_CODES[op],
        ptr(a),
        this.#s0,
        ptr(b),
        this.#s1,
        ptr(out),
        this.#shape,
        shape.length,
      ),
      `binary ${op}`,
    );
  }

  reduceSum(
    x: Storage,
    shape: readonly number[],
    out: Storage,
    outStrides: readonly number[],
    outSize: number,
    accumulate: boolean,
  ): void {
    const n = this.#setShape(shape, "reduceSum");
    need(x, 0, n, "reduceSum x");
    need(out, 0, outSize, "reduceSum out");
    if (n > 0 && span(shape, outStrides) > outSize) {
      throw new RangeError("cuda reduceSum: outStrides reach past outSize");
    }
    this.#s1.set(outStrides);
    this.#check(
      this.#s.duaf_reduce_sum(
        ptr(x),
        this.#shape,
        shape.length,
        ptr(out),
        this.#s1,
        outSize,
        accumulate ? 1 : 0,
      ),
      "reduceSum",
    );
  }

  axpy(x: Storage, out: Storage, n: number, alpha: number): void {
    need(x, 0, n, "axpy x");
    need(out, 0, n, "axpy out");
    this.#check(this.#s.duaf_axpy(ptr(x), ptr(out), n, alpha), "axpy");
  }

  sumSquares(x: Storage, n: number): number {
    need(x, 0, n, "sumSquares");
    this.#check(this.#s.duaf_sum_squares(ptr(x), n, this.#f64), "sumSquares");
    return this.#f64[0];
  }

  permute(x: Storage, shape: readonly number[], perm: readonly number[], out: Storage): void {
    const n = this.#setShape(shape, "permute");
    if (perm.length !== shape.length || new Set(perm).size !== perm.length) {
      throw new RangeError(`cuda permute: perm ${perm} does not match rank ${shape.length}`);
    }
    need(x, 0, n, "permute x");
    need(out, 0, n, "permute out");
    this.#s0.set(perm);
    this.#check(
      this.#s.duaf_permute(ptr(x), this.#shape, this.#s0, shape.length, ptr(out)),
      "permute",
    );
  }

  // ---- row-wise -----------------------------------------------------------------------------

  softmax(x: Storage, out: Storage, rows: number, cols: number, log: boolean): void {
    need(x, 0, rows * cols, "softmax x");
    need(out, 0, rows * cols, "softmax out");
    this.#check(this.#s.duaf_softmax(ptr(x), ptr(out), rows, cols, log ? 1 : 0), "softmax");
  }

  softmaxGrad(
    y: Storage,
    g: Storage,
    out: Storage,
    rows: number,
    cols: number,
    log: boolean,
    scale = 1,
  ): void {
    for (const s of [y, g, out]) need(s, 0, rows * cols, "softmaxGrad");
    this.#check(
      this.#s.duaf_softmax_grad(ptr(y), ptr(g), ptr(out), rows, cols, log ? 1 : 0, scale),
      "softmaxGrad",
    );
  }

  maskedSoftmax(
    x: Storage,
    mask: Storage | null,
    out: Storage,
    rows: number,
    cols: number,
    scale: number,
    heads: number,
    q: number,
    maskRows: readonly [number, number, number],
  ): void {
    need(x, 0, rows * cols, "maskedSoftmax x");
    need(out, 0, rows * cols, "maskedSoftmax out");
    if (mask) need(mask, 0, maskSpan(rows, cols, heads, q, maskRows), "maskedSoftmax mask");
    this.#check(
      this.#s.duaf_masked_softmax(
        ptr(x),
        mask ? ptr(mask) : null,
        ptr(out),
        rows,
        cols,
        scale,
        heads,
        q,
        ...maskRows,
      ),
      "maskedSoftmax",
    );
  }

  layerNorm(
    x: Storage,
    gamma: Storage,
    beta: Storage,
    out: Storage,
    mean: Storage,
    rstd: Storage,
    rows: number,
    cols: number,
    eps: number,
  ): void {
    need(x, 0, rows * cols, "layerNorm x");
    need(out, 0, rows * cols, "layerNorm out");
    need(gamma, 0, cols, "layerNorm gamma");
    need(beta, 0, cols, "layerNorm beta");
    need(mean, 0, rows, "layerNorm mean");
    need(rstd, 0, rows, "layerNorm rstd");
    this.#check(
      this.#s.duaf_layer_norm(
        ptr(x),
        ptr(gamma),
        ptr(beta),
        ptr(out),
        ptr(mean),
        ptr(rstd),
        rows,
        cols,
        eps,
      ),
      "layerNorm",
    );
  }

  addLayerNorm(
    a: Storage,
    b: Storage,
    sum: Storage | null,
    gamma: Storage,
    beta: Storage,
    out: Storage,
    mean: Storage,
    rstd: Storage,
    rows: number,
    cols: number,
    eps: number,
    dropout?: { p: number; seed: number },
  ): boolean {
    for (const s of [a, b, out]) need(s, 0, rows * cols, "addLayerNorm");
    if (sum) need(sum, 0, rows * cols, "addLayerNorm sum");
    for (const s of [gamma, beta]) need(s, 0, cols, "addLayerNorm");
    for (const s of [mean, rstd]) need(s, 0, rows, "addLayerNorm");
    return this.#took(
      this.#s.duaf_add_layer_norm(
        ptr(a),
        ptr(b),
        sum ? ptr(sum) : null,
        ptr(gamma),
        ptr(beta),
        ptr(out),
        ptr(mean),
        ptr(rstd),
        rows,
        cols,
        eps,
        dropout ? 1 : 0,
        dropout?.p ?? 0,
        (dropout?.seed ?? 0) >>> 0,
      ),
      "addLayerNorm",
    );
  }

  layerNormGrad(
    x: Storage,
    gamma: Storage,
    mean: Storage,
    rstd: Storage,
    g: Storage,
    dx: Storage,
    dgamma: Storage,
    dbeta: Storage,
    rows: number,
    cols: number,
  ): void {
    for (const s of [x, g, dx]) need(s, 0, rows * cols, "layerNormGrad");
    for (const s of [gamma, dgamma, dbeta]) need(s, 0, cols, "layerNormGrad");
    for (const s of [mean, rstd]) need(s, 0, rows, "layerNormGrad");
    this.#check(
      this.#s.duaf_layer_norm_grad(
        ptr(x),
        ptr(gamma),
        ptr(mean),
        ptr(rstd),
        ptr(g),
        ptr(dx),
        ptr(dgamma),
        ptr(dbeta),
        rows,
        cols,
      ),
      "layerNormGrad",
    );
  }

  // ---- DuAF fusion ------------------------------------------------------------------------------

  attention(a: AttentionArgs): boolean {
    const { batch, lq, lk, d, heads } = a;
    this.#attentionBounds(a);
    need(a.out, 0, batch * lq * d, "attention out");
    const rows = batch * heads * lq;
    if (a.mask) need(a.mask, 0, maskSpan(rows, lk, heads, lq, a.maskRows), "attention mask");
    const drop = a.dropout;
    return this.#took(
      this.#s.duaf_attention(
        ptr(a.q),
        ptr(a.k),
        ptr(a.v),
        a.mask ? ptr(a.mask) : null,
        drop?.steps ? ptr(drop.steps) : null,
        ptr(a.p),
        ptr(a.out),
        batch,
        lq,
        lk,
        d,
        heads,
        a.scale,
        ...a.maskRows,
        drop ? 1 : 0,
        drop?.p ?? 0,
        (drop?.seed ?? 0) >>> 0,
      ),
      "attention",
    );
  }

  attentionGrad(a: AttentionGradArgs): boolean {
    const { batch, lq, lk, d, heads } = a;
    this.#attentionBounds(a);
    need(a.g, 0, batch * lq * d, "attentionGrad g");
    need(a.dq, 0, batch * lq * d, "attentionGrad dq");
    for (const s of [a.dk, a.dv]) need(s, 0, batch * lk * d, "attentionGrad dk/dv");
    const drop = a.dropout;
    return this.#took(
      this.#s.duaf_attention_grad(
        ptr(a.q),
        ptr(a.k),
        ptr(a.v),
        ptr(a.g),
        drop?.steps ? ptr(drop.steps) : null,
        ptr(a.p),
        ptr(a.dq),
        ptr(a.dk),
        ptr(a.dv),
        batch,
        lq,
        lk,
        d,
        heads,
        a.scale,
        drop ? 1 : 0,
        drop?.p ?? 0,
        (drop?.seed ?? 0) >>> 0,
      ),
      "attentionGrad",
    );
  }

  /** The inputs both attention calls read: q, k, v, the kept probabilities and the steps. */
  #attentionBounds(a: AttentionGradArgs | AttentionArgs): void {
    const { batch, lq, lk, d, heads } = a;
    if (!(heads > 0) || d % heads !== 0) {
      throw new RangeError(`cuda attention: ${d} columns in ${heads} heads`);
    }
    if (a.dropout?.steps && lq !== 1) {
      throw new RangeError(`cuda attention: steps need one query per sequence, not ${lq}`);
    }
    need(a.q, 0, batch * lq * d, "attention q");
    for (const s of [a.k, a.v]) need(s, 0, batch * lk * d, "attention k/v");
    need(a.p, 0, batch * heads * lq * lk, "attention probabilities");
    if (a.dropout?.steps) need(a.dropout.steps, 0, batch, "attention steps");
  }

  modalityFusion(a: FusionArgs): void {
    const { e, t, q, h, omega, keys, rows, dim, scale } = a;
    const n = rows * dim;
    for (const s of [...e, t, q, h]) need(s, 0, n, "modalityFusion");
    need(omega, 0, rows * e.length, "modalityFusion omega");
    need(keys, 0, n * e.length, "modalityFusion keys");
    const [e0, e1, e2, e3] = [0, 1, 2, 3].map((j) => (e[j] ? ptr(e[j]) : null));
    this.#check(
      this.#s.duaf_modality_fusion(
        e0,
        e1,
        e2,
        e3,
        e.length,
        ptr(t),
        ptr(q),
        ptr(h),
        ptr(omega),
        ptr(keys),
        rows,
        dim,
        scale,
      ),
      "modalityFusion",
    );
  }

  modalityFusionGrad(a: FusionGradArgs): void {
    const { e, q, omega, keys, gh, gomega, ge, gt, gq, rows, dim, scale } = a;
    const n = rows * dim;
    for (const s of [...e, ...ge, q, gh, gt, gq]) need(s, 0, n, "modalityFusionGrad");
    need(omega, 0, rows * e.length, "modalityFusionGrad omega");
    need(keys, 0, n * e.length, "modalityFusionGrad keys");
    if (gomega) need(gomega, 0, rows * e.length, "modalityFusionGrad gomega");
    const ps = (l: readonly Storage[]) => [0, 1, 2, 3].map((j) => (l[j] ? ptr(l[j]) : null));
    const [e0, e1, e2, e3] = ps(e);
    const [g0, g1, g2, g3] = ps(ge);
    this.#check(
      this.#s.duaf_modality_fusion_grad(
        e0,
        e1,
        e2,
        e3,
        g0,
        g1,
        g2,
        g3,
        e.length,
        ptr(q),
        ptr(omega),
        ptr(keys),
        ptr(gh),
        gomega ? ptr(gomega) : null,
        ptr(gt),
        ptr(gq),
        rows,
        dim,
        scale,
      ),
      "modalityFusionGrad",
    );
  }

  // ---- indexing -----------------------------------------------------------------------------

  gather(table: Storage, idx: Storage, out: Storage, n: number, dim: number): void {
    if (n <= 0 || dim <= 0) return;
    need(idx, 0, n, "gather idx");
    need(out, 0, n * dim, "gather out");
    const rows = Math.floor(table.size / dim);
    this.#check(
      this.#s.duaf_gather(ptr(table), rows, ptr(idx), ptr(out), n, dim),
      "gather",
    );
  }

  gatherAdd(
    table: Storage,
    idx: Storage,
    b: Storage,
    out: Storage,
    n: number,
    dim: number,
  ): boolean {
    if (n <= 0 || dim <= 0) return true;
    need(idx, 0, n, "gatherAdd idx");
    for (const s of [b, out]) need(s, 0, n * dim, "gatherAdd");
    const rows = Math.floor(table.size / dim);
    return this.#took(
      this.#s.duaf_gather_add(ptr(table), rows, ptr(idx), ptr(b), ptr(out), n, dim),
      "gatherAdd",
    );
  }

  scatterAdd(g: Storage, idx: Storage, out: Storage, n: number, dim: number): void {
    if (n <= 0 || dim <= 0) return;
    need(g, 0, n * dim, "scatterAdd g");
    need(idx, 0, n, "scatterAdd idx");
    const rows = Math.floor(out.size / dim);
    this.#check(
      this.#s.duaf_scatter_add(ptr(g), ptr(idx), ptr(out), rows, n, dim),
      "scatterAdd",
    );
  }

  crossEntropyBlock(
    x: Storage,
    targets: Storage,
    lse: Storage,
    picked: Storage,
    rows: number,
    cols: number,
    colOffset: number,
    first: boolean,
    shift?: Storage,
  ): void {
    if (shift) throw new Error("cuda: crossEntropyBlock does not keep exponentials");
    need(x, 0, rows * cols, "crossEntropyBlock x");
    need(targets, 0, rows, "crossEntropyBlock targets");
    need(lse, 0, rows, "crossEntropyBlock lse");
    need(picked, 0, rows, "crossEntropyBlock picked");
    this.#check(
      this.#s.duaf_ce_block(
        ptr(x),
        ptr(targets),
        ptr(lse),
        ptr(picked),
        rows,
        cols,
        colOffset,
        first ? 1 : 0,
      ),
      "crossEntropyBlock",
    );
  }

  crossEntropyBlockGrad(
    x: Storage,
    targets: Storage,
    lse: Storage,
    w: Storage,
    rows: number,
    cols: number,
    colOffset: number,
    shift?: Storage,
  ): void {
    if (shift) throw new Error("cuda: crossEntropyBlockGrad does not keep exponentials");
    need(x, 0, rows * cols, "crossEntropyBlockGrad x");
    for (const s of [targets, lse, w]) need(s, 0, rows, "crossEntropyBlockGrad");
    this.#check(
      this.#s.duaf_ce_block_grad(ptr(x), ptr(targets), ptr(lse), ptr(w), rows, cols, colOffset),
      "crossEntropyBlockGrad",
    );
  }

  pick(x: Storage, idx: Storage, out: Storage, rows: number, cols: number): void {
    need(x, 0, rows * cols, "pick x");
    need(idx, 0, rows, "pick idx");
    need(out, 0, rows, "pick out");
    this.#check(this.#s.duaf_pick(ptr(x), ptr(idx), ptr(out), rows, cols), "pick");
  }

  rankRows(
    x: Storage,
    targets: Storage,
    exOffsets: Storage,
    exCols: Storage,
    out: Storage,
    rows: number,
    cols: number,
  ): void {
    need(x, 0, rows * cols, "rankRows x");
    for (const s of [targets, out]) need(s, 0, rows, "rankRows");
    need(exOffsets, 0, rows + 1, "rankRows exOffsets");
    this.#check(
      this.#s.duaf_rank_rows(
        ptr(x),
        ptr(targets),
        ptr(exOffsets),
        ptr(exCols),
        ptr(out),
        rows,
        cols,
      ),
      "rankRows",
    );
  }

  pickGrad(g: Storage, idx: Storage, out: Storage, rows: number, cols: number): void {
    need(g, 0, rows, "pickGrad g");
    need(idx, 0, rows, "pickGrad idx");
    need(out, 0, rows * cols, "pickGrad out");
    this.#check(this.#s.duaf_pick_grad(ptr(g), ptr(idx), ptr(out), rows, cols), "pickGrad");
  }

  // ---- randomness, optimizer ----------------------------------------------------------------

  dropout(x: Storage, out: Storage, n: number, p: number, seed: number): void {
    need(x, 0, n, "dropout");
    need(out, 0, n, "dropout");
    this.#check(this.#s.duaf_dropout(ptr(x), ptr(out), n, p, seed >>> 0), "dropout");
  }

  dropoutRows(
    x: Storage,
    out: Storage,
    rows: Storage,
    n: number,
    cols: number,
    p: number,
    seed: number,
  ): boolean {
    for (const s of [x, out]) need(s, 0, n * cols, "dropoutRows");
    need(rows, 0, n, "dropoutRows rows");
    return this.#took(
      this.#s.duaf_dropout_rows(ptr(x), ptr(out), ptr(rows), n, cols, p, seed >>> 0),
      "dropoutRows",
    );
  }

  adam(a: AdamArgs): void {
    for (const s of [a.p, a.g, a.m, a.v]) need(s, 0, a.n, "adam");
    this.#check(
      this.#s.duaf_adam(
        ptr(a.p),
        ptr(a.g),
        ptr(a.m),
        ptr(a.v),
        a.n,
        a.lr,
        a.beta1,
        a.beta2,
        a.eps,
        a.weightDecay,
        a.decoupled ? 1 : 0,
        a.biasCorrection1,
        a.biasCorrection2,
      ),
      "adam",
    );
  }

  sync(): void {
    this.#check(this.#s.duaf_sync(), "sync");
  }

  /** Copies shape into the reused host array; returns its element count. */
  #setShape(shape: readonly number[], op: string): number {
    if (shape.length > MAX_RANK) throw new RangeError(`cuda ${op}: rank ${shape.length} > 6`);
    this.#shape.set(shape);
    return shape.reduce((p, d) => p * d, 1);
  }
}

function ptr(s: Storage): Deno.PointerObject {
  if (!(s instanceof CudaStorage)) throw new TypeError("cuda: storage from another backend");
  const p = s.ptr;
  if (p === null) throw new Error("cuda: use of freed storage");
  return p;
}

/** Device pointer to element `offset` (all dtypes are 4 bytes). */
function at(s: Storage, offset: number): Deno.PointerObject {
  const p = ptr(s);
  return offset === 0 ? p : Deno.UnsafePointer.offset(p, offset * 4) as Deno.PointerObject;
}

/** Throws unless [offset, offset + count) lies inside s. */
function need(s: Storage, offset: number, count: number, what: string): void {
  if (count <= 0) return;
  if (!(offset >= 0) || offset + count > s.size) {
    throw new RangeError(
      `cuda ${what}: elements [${offset}, ${offset + count}) outside storage of ${s.size}`,
    );
  }
}

/** 1 + the largest offset a strided view of `shape` reaches (0 for an empty shape). */
function span(shape: readonly number[], strides: readonly number[]): number {
  let last = 0;
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 0) return 0;
    last += (shape[d] - 1) * strides[d];
  }
  return last + 1;
}

export const cudaBackendFactory: BackendFactory = {
  name: "cuda",
  priority: CUDA_PRIORITY,
  async create() {
    const shim = await loadCudaShim();
    if ("unavailable" in shim) return shim;
    return new CudaBackend(shim);
  },
};
