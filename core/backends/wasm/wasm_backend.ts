/**
 * The wasm backend: every Backend kernel runs as AssemblyScript SIMD128 code (wasm/assembly/)
 * over one shared WebAssembly.Memory that holds all tensors (the arena). GEMM and the heavier
 * elementwise and row kernels split across a second thread above a work threshold; the split
 * never changes how an output element is computed, so results are bit-identical for 1 or 2
 * threads.
 *
 * Subclasses (the native BLAS backend) reuse the arena and override single kernels: `memory` and
 * `pointer(storage)` give the byte address of a tensor for a foreign call on the same memory.
 */
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
  type LinearCeArgs,
  type LinearCeBlocksArgs,
  type LinearCeBlocksGradArgs,
  type LinearCeGradArgs,
  maskSpan,
  type RankScoresArgs,
  type Storage,
  UNARY_CODES,
  type UnaryOp,
} from "../../backend.ts";
import { envVar } from "../../env.ts";
import { UsageError } from "../../errors.ts";
import { Arena, arenaLimitFromEnv, MAX_PAGES, PAGE_BYTES } from "./arena.ts";
import {
  compileKernels,
  GEMM_KC,
  instantiateKernels,
  type KernelExports,
  type KernelVariant,
  lceBf16GradBytes,
  lceBf16PackBytes,
  lceGradBytes,
  lcePackBytes,
  rankBandBytes,
  runtimeHasRelaxedSimd,
} from "./kernels.ts";
import { CTRL_BYTES, KernelThread, type ThreadOp } from "./thread.ts";

export interface WasmBackendOptions {
  /** Kernel threads (default $DUAF_WASM_THREADS, else 2 when the machine has two cores). */
  threads?: 1 | 2;
  /** Force a kernel build; default: relaxed when the runtime supports it. */
  variant?: KernelVariant;
  /** Most bytes the arena may grow to (default $DUAF_WASM_MEMORY, else wasm32's 4 GiB). */
  memoryLimit?: number;
  /**
   * Replaces kernels before the worker starts (the native backend's C kernels): returns the
   * kernels to use and the library the worker loads to do the same, or null to keep wasm's.
   */
  replaceKernels?: (rt: KernelSite) => { kernels: KernelExports; library: string } | null;
}

/** Where kernels run: the memory, the kernel module's exports on it, and the arena. */
export interface KernelSite {
  memory: WebAssembly.Memory;
  kernels: KernelExports;
  arena: Arena;
  variant: KernelVariant;
}

/** Everything a WasmBackend (or a subclass) is built on. */
export interface WasmRuntime {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  kernels: KernelExports;
  variant: KernelVariant;
  arena: Arena;
  thread: KernelThread | null;
}

class WasmStorage implements Storage {
  constructor(
    /** Byte address in the arena; -1 once freed. */
    public ptr: number,
    readonly size: number,
    readonly dtype: DType,
    readonly owner: Arena,
  ) {}
}

/**
 * Below these amounts of work the second thread costs more than it saves: a call reaches a polling
 * worker in microseconds, a sleeping one in ~40 us (thread.ts PollWindow).
 */
const GEMM_THREAD_FLOPS = 1 << 21;
const ELEMENTWISE_THREAD_ELEMENTS = 1 << 16;
const ROWS_THREAD_ELEMENTS = 1 << 16;

/**
 * The share of a layer norm gradient's dx rows on the thread that also sums every row into
 * dgamma and dbeta, so that both threads finish together: [28704 x 64] on one thread 0.80 ms,
 * on two with 0.1 / 0.25 / 0.35 / 0.4 / 0.5 of dx here 0.53 / 0.62 / 0.46 / 0.46-0.52 / 0.54.
 */
const LN_GRAD_OWN_DX = 0.4;
const MR = 6; // gemm register tile height: row splits fall on tile boundaries
/**
 * Products with an output this small and K this many slices deep split across the threads by K
 * (where the kernels can: the C kernels): the weight gradients X^T G over every token, whose
 * [64 x 64] output cut in two by rows or columns leaves each thread a sliver.
 */
const K_SPLIT_MAX_OUTPUT = 256 * 256;
const K_SPLIT_MIN_SLICES = 8;
const NR = 8;

const MAX_RANK = 6;
const PARAM_BYTES = 4 * 4 * MAX_RANK;

/** $DUAF_WASM_THREADS (1 or 2), else 2 when the machine has at least two cores. */
function defaultThreads(): 1 | 2 {
  const v = envVar("DUAF_WASM_THREADS");
  if (v !== undefined) {
    if (v.trim() !== "1" && v.trim() !== "2") {
      throw new UsageError(`DUAF_WASM_THREADS: expected 1 or 2, got '${v}'`);
    }
    return v.trim() === "1" ? 1 : 2;
  }
  return (navigator.hardwareConcurrency ?? 1) >= 2 ? 2 : 1;
}

/** Removes size-1 dims and merges dims that are contiguous for every stride list. */
function collapseDims(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = outShape.length - 1;
    if (
      last >= 0 &&
      strides.every((s, i) => outStrides[i][last] === s[d] * shape[d])
    ) {
      outShape[last] *= shape[d];
      strides.forEach((s, i) => (outStrides[i][last] = s[d]));
      continue;
    }
    outShape.push(shape[d]);
    strides.forEach((s, i) => outStrides[i].push(s[d]));
  }
  if (outShape.length === 0) {
    outShape.push(1);
    outStrides.forEach((s) => s.push(0));
  }
  return { shape: outShape, strides: outStrides };
}

export class WasmBackend implements Backend {
  readonly name: string = "wasm";
  readonly keepsCrossEntropyExp = true;
  readonly hostMemory = true;
  /** The wasm GEMM kernel stores C as it finds it; the native backend's C kernel takes a bias. */
  get fusesGemmBias(): boolean {
    return false;
  }
  /** gemm.ts's K slice (the C GEMM's too): see Backend.gemmSliceK. */
  readonly gemmSliceK = GEMM_KC;
  /** Likewise the GELU epilogues (GemmArgs.epilogue): the native backend's C kernel only. */
  get fusesGemmGelu(): boolean {
    return false;
  }
  readonly memory: WebAssembly.Memory;
  readonly variant: KernelVariant;
  protected readonly kernels: KernelExports;
  protected readonly arena: Arena;
  #thread: KernelThread | null;
  #threadedCalls = 0;
  readonly #scratch: number;
  readonly #workerScratch: number;
  readonly #params: number;
  /** The worker's parameter block, for a call split while the main thread reads #params. */
  readonly #workerParams: number;
  #barrier = 0;
  readonly #bits = new Int32Array(1);
  readonly #bitsF32 = new Float32Array(this.#bits.buffer);
  /** Keys below which attention() declines on this CPU (the kernels say; 0: none). */
  readonly attentionMinKeys: number;

  protected constructor(rt: WasmRuntime) {
    this.memory = rt.memory;
    this.variant = rt.variant;
    this.kernels = rt.kernels;
    this.attentionMinKeys = rt.kernels.attentionMinKeys?.() ?? 0;
    this.arena = rt.arena;
    this.#thread = rt.thread;
    const scratchBytes = rt.kernels.GEMM_SCRATCH_BYTES.value as number;
    this.#scratch = this.arena.alloc(scratchBytes);
    this.#workerScratch = rt.thread ? this.arena.alloc(scratchBytes) : 0;
    this.#params = this.arena.alloc(PARAM_BYTES);
    this.#workerParams = rt.thread ? this.arena.alloc(PARAM_BYTES) : 0;
  }

  /** Loads the kernels, creates the arena and (for 2 threads) starts the worker. */
  static async loadRuntime(opts: WasmBackendOptions = {}): Promise<WasmRuntime> {
    const variant = opts.variant ?? (runtimeHasRelaxedSimd() ? "relaxed" : "simd");
    const module = await compileKernels(variant);
    const memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
    let kernels = await instantiateKernels(module, memory);
    const heapBase = kernels.HEAP_BASE.value as number;
    // The module's static data lives below the first page boundary above it; the control
    // block for the worker sits at the start of the arena.
    const base = Math.ceil((heapBase + 1) / PAGE_BYTES) * PAGE_BYTES;
    const arena = new Arena(memory, base, opts.memoryLimit ?? arenaLimitFromEnv());
    const replaced = opts.replaceKernels?.({ memory, kernels, arena, variant }) ?? null;
    if (replaced) kernels = replaced.kernels;
    const threads = opts.threads ?? defaultThreads();
    let thread: KernelThread | null = null;
    if (threads === 2) {
      const ctrl = arena.alloc(CTRL_BYTES);
      thread = await KernelThread.start(module, memory, ctrl, replaced?.library);
    }
    return { memory, module, kernels, variant, arena, thread };
  }

  static async create(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
    return new WasmBackend(await WasmBackend.loadRuntime(opts));
  }

  /** Stops the worker thread; the backend stays usable on one thread. */
  dispose(): void {
    this.#thread?.stop();
    this.#thread = null;
  }

  /** Kernel threads in use: 2 while the worker runs, 1 without it or after dispose(). */
  get threads(): 1 | 2 {
    return this.#thread ? 2 : 1;
  }

  /** Kernel calls split across both threads so far (diagnostics and tests). */
  get threadedCalls(): number {
    return this.#threadedCalls;
  }

  #onBoth(op: ThreadOp, theirs: number[], mine: () => void): void {
    this.#threadedCalls++;
    this.#thread!.run(op, theirs, mine);
  }

  /** Arena bytes in use now and at most since the last resetPeak() (tests, benchmarks). */
  memoryStats(): { inUse: number; peak: number } {
    return { inUse: this.arena.bytesInUse, peak: this.arena.peakBytesInUse };
  }

  /** The arena's limit: every tensor of the run shares it. */
  memoryLimit(): { bytes: number; what: string } {
    return { bytes: this.arena.limitBytes, what: "wasm arena" };
  }

  /** Starts a new peak measurement of memoryStats(). */
  resetPeak(): void {
    this.arena.resetPeak();
  }

  /** Byte address of a storage's first element in `memory`. */
  pointer(s: Storage): number {
    const w = s as WasmStorage;
    if (!(w instanceof WasmStorage) || w.owner !== this.arena) {
      throw new TypeError("storage does not belong to this wasm backend");
    }
    if (w.ptr < 0) throw new Error("use of freed wasm storage");
    return w.ptr;
  }

  /** Byte address of element `offset` of s, checking that [offset, offset+count) is inside it. */
  protected at(s: Storage, offset: number, count: number): number {
    const p = this.pointer(s);
    if (offset < 0 || count < 0 || offset + count > s.size) {
      throw new RangeError(
        `wasm: access [${offset}, ${offset + count}) outside storage of ${s.size} elements`,
      );
    }
    return p + offset * 4;
  }

  // ---- memory -------------------------------------------------------------------------------

  alloc(size: number, dtype: DType): Storage {
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`wasm: bad alloc size ${size}`);
    return new WasmStorage(this.arena.alloc(size * 4), size, dtype, this.arena);
  }

  upload(data: Float32Array | Int32Array, dtype: DType): Storage {
    const s = this.alloc(data.length, dtype);
    const p = this.pointer(s) >>> 2;
    if (dtype === "i32") {
      this.arena.i32.set(data instanceof Int32Array ? data : Int32Array.from(data), p);
    } else {
      this.arena.f32.set(data, p);
    }
    return s;
  }

  download(
    s: Storage,
    offset = 0,
    size = s.size - offset,
    into?: Float32Array | Int32Array,
  ): Float32Array | Int32Array {
    const p = this.at(s, offset, size) >>> 2;
    const src = s.dtype === "i32" ? this.arena.i32 : this.arena.f32;
    if (!into) return src.slice(p, p + size);
    const out = checkedInto(into, s.dtype, size);
    out.set(src.subarray(p, p + size));
    return out;
  }

  free(s: Storage): void {
    const w = s as WasmStorage;
    this.pointer(s);
    this.arena.free(w.ptr, w.size * 4);
    w.ptr = -1;
  }

  fill(s: Storage, value: number, offset = 0, size = s.size - offset): void {
    const p = this.at(s, offset, size);
    let bits: number;
    if (s.dtype === "i32") bits = value | 0;
    else {
      this.#bitsF32[0] = value;
      bits = this.#bits[0];
    }
    const run = this.kernels.fill32;
    const half = this.#elementSplit(size);
    if (half === 0) return run(p, bits, size);
    this.#onBoth("fill32", [p + half * 4, bits, size - half], () => run(p, bits, half));
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
    if (rows === 0 || cols === 0) return;
    const s = this.at(src, srcOffset, (rows - 1) * srcStride + cols);
    const d = this.at(dst, dstOffset, (rows - 1) * dstStride + cols);
    const acc = accumulate ? 1 : 0;
    const run = this.kernels.copy2d;
    // Rows split between the threads only between different storages: a copy within one might
    // overlap, and then the rows' order matters.
    const half = src === dst ? 0 : this.#rowSplit(rows, cols);
    if (half === 0) return run(s, srcStride, d, dstStride, rows, cols, acc);
    const [so, dOff] = [half * srcStride * 4, half * dstStride * 4];
    this.#onBoth(
      "copy2d",
      [s + so, srcStride, d + dOff, dstStride, rows - half, cols, acc],
      () => run(s, srcStride, d, dstStride, half, cols, acc),
    );
  }

  // ---- dense math ---------------------------------------------------------------------------

  gemm(g: GemmArgs): void {
    const { m, n, k, batch } = g;
    if (m === 0 || n === 0 || batch === 0) return;
    const span = gemmSpans(g);
    const a = this.at(g.a, g.aOffset, span.a);
    const b = this.at(g.b, g.bOffset, span.b);
    const c = this.at(g.c, g.cOffset, span.c);
    const tA = g.transA ? 1 : 0;
    const tB = g.transB ? 1 : 0;
    const { lda, ldb, ldc } = gemmLd(g);
    if (g.bias && !this.fusesGemmBias) {
      throw new Error("wasm: gemm bias needs kernels that fuse it");
    }
    const bias = g.bias ? this.at(g.bias, 0, n) : 0;
    const inner = gemmBatch2(g);
    if (g.epilogue) {
      if (!this.fusesGemmGelu || batch * inner.n !== 1) {
        throw new Error("wasm: a gemm epilogue needs kernels that fuse it, on one item");
      }
      return this.#gemmEpilogue(g, a, b, c, span.c, lda, ldb, ldc, bias);
    }
    const run = (
      aPtr: number,
      bPtr: number,
      cPtr: number,
      nb: number,
      r0: number,
      r1: number,
      c0: number,
      c1: number,
      scratch: number,
    ): number[] => [
      aPtr,
      bPtr,
      cPtr,
      m,
      n,
      k,
      tA,
      tB,
      nb,
      g.strideA,
      g.strideB,
      g.strideC,
      inner.n,
      inner.a,
      inner.b,
      inner.c,
      lda,
      ldb,
      ldc,
      g.alpha,
      g.beta,
      r0,
      r1,
      c0,
      c1,
      scratch,
      bias,
    ];
    const thread = this.#thread;
    if (!thread || 2 * m * n * k * batch * inner.n < GEMM_THREAD_FLOPS) {
      this.#gemmCall(run(a, b, c, batch, 0, m, 0, n, this.#scratch));
      return;
    }
    const ks = this.kernels;
    if (
      ks.gemmSlices && ks.gemmAddParts && !bias && batch * inner.n === 1 &&
      m * n <= K_SPLIT_MAX_OUTPUT && k >= K_SPLIT_MIN_SLICES * GEMM_KC
    ) {
      // Split by K: the first half of the slices straight into C here, the second half each into
      // its own block on the worker, then those blocks added into C in slice order.
      const slices = Math.ceil(k / GEMM_KC), mine = slices >> 1, count = slices - mine;
      this.#withScratch(4 * count * m * n, (parts) => {
        const sliceArgs = (p0: number, p1: number, into: number, scratch: number) => [
          ...[a, b, c, m, n, k, tA, tB, lda, ldb, ldc, g.alpha, g.beta],
          ...[p0, p1, into, scratch],
        ];
        const run = ks.gemmSlices as (...args: number[]) => void;
        this.#onBoth(
          "gemmSlices",
          sliceArgs(mine, slices, parts, this.#workerScratch),
          () => run(...sliceArgs(0, mine, 0, this.#scratch)),
        );
        ks.gemmAddParts!(c, parts, m, n, ldc, count);
      });
      return;
    }
    let mine: number[];
    let theirs: number[];
    if (batch >= 4 || (batch >= 2 && m < 8 * MR)) {
      const half = batch >> 1;
      mine = run(a, b, c, half, 0, m, 0, n, this.#scratch);
      theirs = run(
        a + half * g.strideA * 4,
        b + half * g.strideB * 4,
        c + half * g.strideC * 4,
        batch - half,
        0,
        m,
        0,
        n,
        this.#workerScratch,
      );
    } else {
      const [own, other] = productHalves(m, n);
      mine = run(a, b, c, batch, ...own, this.#scratch);
      theirs = run(a, b, c, batch, ...other, this.#workerScratch);
    }
    this.#onBoth("gemm", theirs, () => this.#gemmCall(mine));
  }

  /** One item with GemmArgs.epilogue, split between the threads as gemm splits one item. */
  #gemmEpilogue(
    g: GemmArgs,
    a: number,
    b: number,
    c: number,
    span: number,
    lda: number,
    ldb: number,
    ldc: number,
    bias: number,
  ): void {
    const { m, n, k } = g;
    const epi = g.epilogue!;
    // ffi/cpu/kernels.c's EPI_GELU and EPI_GELU_GRAD; the buffers at C's offset and span.
    const code = epi.op === "gelu" ? 1 : 2;
    const e1 = this.at(epi.op === "gelu" ? epi.out : epi.x, g.cOffset, span);
    const e2 = epi.op === "gelu_grad" ? this.at(epi.y, g.cOffset, span) : 0;
    const args = (r0: number, r1: number, c0: number, c1: number, scratch: number) => [
      ...[a, b, c, k, g.transA ? 1 : 0, g.transB ? 1 : 0, lda, ldb, ldc, g.alpha, g.beta],
      ...[r0, r1, c0, c1, scratch, bias, code, e1, e2],
    ];
    const run = this.kernels.gemmEpilogue!.bind(this.kernels) as (...a: number[]) => void;
    if (!this.#thread || 2 * m * n * k < GEMM_THREAD_FLOPS) {
      return run(...args(0, m, 0, n, this.#scratch));
    }
    const [own, other] = productHalves(m, n);
    this.#onBoth(
      "gemmEpilogue",
      args(...other, this.#workerScratch),
      () => run(...args(...own, this.#scratch)),
    );
  }

  #gemmCall(args: number[]): void {
    (this.kernels.gemm as (...a: number[]) => void)(...args);
  }

  // ---- elementwise --------------------------------------------------------------------------

  unary(op: UnaryOp, x: Storage, out: Storage, n: number, alpha: number): void {
    const code = UNARY_CODES[op];
    if (code === undefined) throw new TypeError(`wasm: unknown unary op ${op}`);
    const xp = this.at(x, 0, n);
    const op_ = this.at(out, 0, n);
    const k = this.kernels;
    const half = this.#elementSplit(n);
    if (half === 0) return k.unary(code, xp, op_, n, alpha);
    this.#onBoth(
      "unary",
      [code, xp + half * 4, op_ + half * 4, n - half, alpha],
      () => k.unary(code, xp, op_, half, alpha),
    );
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
    const code = UNARY_CODES[op];
    if (code === undefined) throw new TypeError(`wasm: unknown unary op ${op}`);
    const xp = this.at(x, 0, n);
    const yp = this.at(y, 0, n);
    const gp = this.at(g, 0, n);
    const outp = this.at(out, 0, n);
    const k = this.kernels;
    const half = this.#elementSplit(n);
    if (half === 0) return k.unaryGrad(code, xp, yp, gp, outp, n, alpha);
    const o = half * 4;
    this.#onBoth(
      "unaryGrad",
      [code, xp + o, yp + o, gp + o, outp + o, n - half, alpha],
      () => k.unaryGrad(code, xp, yp, gp, outp, half, alpha),
    );
  }

  /** Elements for the main thread when n is worth splitting (a multiple of 4), else 0. */
  #elementSplit(n: number): number {
    if (!this.#thread || n < ELEMENTWISE_THREAD_ELEMENTS) return 0;
    return (n >> 3) << 2;
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
    const code = BINARY_CODES[op];
    if (code === undefined) throw new TypeError(`wasm: unknown binary op ${op}`);
    if (shape.length > MAX_RANK) throw new RangeError(`wasm: binary rank ${shape.length} > 6`);
    const total = shape.reduce((p, d) => p * d, 1);
    if (total === 0) return;
    const reach = (st: readonly number[]) => shape.reduce((s, d, i) => s + (d - 1) * st[i], 0) + 1;
    const ap = this.at(a, 0, reach(aStrides));
    const bp = this.at(b, 0, reach(bStrides));
    const op_ = this.at(out, 0, total);
    const c = collapseDims(shape, [aStrides, bStrides]);
    const rank = c.shape.length;
    const run = this.kernels.binary;
    // Split on the outermost dim: each thread its own block of output rows, each element
    // computed as the single-threaded kernel computes it. The worker reads its own parameters.
    const outer = c.shape[0];
    const inner = total / outer;
    const half = this.#thread && total >= ELEMENTWISE_THREAD_ELEMENTS && outer >= 2
      ? (rank === 1 ? this.#elementSplit(total) : outer >> 1)
      : 0;
    if (half === 0) {
      this.#writeParams([c.shape, c.strides[0], c.strides[1]]);
      return run(code, ap, bp, op_, rank, this.#params);
    }
    const [as0, bs0] = [c.strides[0][0], c.strides[1][0]];
    const rest = c.shape.slice(1);
    this.#writeParams([[half, ...rest], c.strides[0], c.strides[1]]);
    this.#writeParams([[outer - half, ...rest], c.strides[0], c.strides[1]], this.#workerParams);
    const [ao, bo, oo] = [half * as0 * 4, half * bs0 * 4, half * inner * 4];
    this.#onBoth(
      "binary",
      [code, ap + ao, bp + bo, op_ + oo, rank, this.#workerParams],
      () => run(code, ap, bp, op_, rank, this.#params),
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
    if (shape.length > MAX_RANK) throw new RangeError(`wasm: reduceSum rank ${shape.length} > 6`);
    const total = shape.reduce((p, d) => p * d, 1);
    const op = this.at(out, 0, outSize);
    if (total === 0) {
      if (!accumulate) this.kernels.fill32(op, 0, outSize);
      return;
    }
    const reach = shape.reduce((s, d, i) => s + (d - 1) * outStrides[i], 0) + 1;
    if (reach > outSize) throw new RangeError(`wasm: reduceSum writes past outSize ${outSize}`);
    const xp = this.at(x, 0, total);
    // x is contiguous, so only the out strides decide which dims merge.
    const xStrides: number[] = [];
    let s = 1;
    for (let d = shape.length - 1; d >= 0; d--) {
      xStrides[d] = s;
      s *= shape[d];
    }
    const c = collapseDims(shape, [xStrides, outStrides]);
    const k = this.kernels;
    if (k.colSums && c.shape.length === 2 && c.strides[1][0] === 0 && c.strides[1][1] === 1) {
      // A bias's gradient: sums over rows, split by columns (each column's sum stays in order).
      const [rows, cols] = c.shape;
      const acc = accumulate ? 1 : 0;
      const half = this.#thread && rows * cols >= ELEMENTWISE_THREAD_ELEMENTS && cols >= 32
        ? (cols >> 5) << 4
        : 0;
      if (half === 0) return k.colSums(xp, op, rows, cols, 0, cols, acc);
      const run = k.colSums;
      this.#onBoth(
        "colSums",
        [xp, op, rows, cols, half, cols, acc],
        () => run(xp, op, rows, cols, 0, half, acc),
      );
      return;
    }
    this.#writeParams([c.shape, c.strides[1]]);
    this.kernels.reduceSum(xp, op, outSize, accumulate ? 1 : 0, c.shape.length, this.#params);
  }

  axpy(x: Storage, out: Storage, n: number, alpha: number): void {
    const [xp, op] = [this.at(x, 0, n), this.at(out, 0, n)];
    const run = this.kernels.axpy;
    const half = this.#elementSplit(n);
    if (half === 0) return run(xp, op, n, alpha);
    const o = half * 4;
    this.#onBoth("axpy", [xp + o, op + o, n - half, alpha], () => run(xp, op, half, alpha));
  }

  sumSquares(x: Storage, n: number): number {
    return this.kernels.sumSquares(this.at(x, 0, n), n);
  }

  permute(x: Storage, shape: readonly number[], perm: readonly number[], out: Storage): void {
    const rank = shape.length;
    if (rank > MAX_RANK) throw new RangeError(`wasm: permute rank ${rank} > 6`);
    if (perm.length !== rank || [...perm].sort().some((p, i) => p !== i)) {
      throw new RangeError(`wasm: bad permutation [${perm}] for rank ${rank}`);
    }
    const total = shape.reduce((p, d) => p * d, 1);
    const xp = this.at(x, 0, total);
    const op = this.at(out, 0, total);
    if (total === 0) return;
    const inStrides: number[] = [];
    let s = 1;
    for (let d = rank - 1; d >= 0; d--) {
      inStrides[d] = s;
      s *= shape[d];
    }
    const outShape = perm.map((p) => shape[p]);
    const src = perm.map((p) => inStrides[p]);
    const c = collapseDims(outShape, [src]);
    while (c.shape.length < 2) {
      c.shape.unshift(1);
      c.strides[0].unshift(0);
    }
    this.#writeParams([c.shape, c.strides[0]]);
    this.kernels.permute(xp, op, c.shape.length, this.#params);
  }

  /** Writes i32 lists back to back into a parameter block (the main thread's by default). */
  #writeParams(lists: readonly (readonly number[])[], at = this.#params): void {
    const i32 = this.arena.i32;
    let p = at >>> 2;
    for (const l of lists) for (const v of l) i32[p++] = v;
  }

  // ---- row-wise -----------------------------------------------------------------------------

  softmax(x: Storage, out: Storage, rows: number, cols: number, log: boolean): void {
    const xp = this.at(x, 0, rows * cols);
    const op = this.at(out, 0, rows * cols);
    const lg = log ? 1 : 0;
    const k = this.kernels;
    const half = this.#rowSplit(rows, cols);
    if (half === 0) return k.softmax(xp, op, rows, cols, lg);
    const o = half * cols * 4;
    this.#onBoth(
      "softmax",
      [xp + o, op + o, rows - half, cols, lg],
      () => k.softmax(xp, op, half, cols, lg),
    );
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
    const yp = this.at(y, 0, rows * cols);
    const gp = this.at(g, 0, rows * cols);
    const op = this.at(out, 0, rows * cols);
    const lg = log ? 1 : 0;
    const k = this.kernels;
    const half = this.#rowSplit(rows, cols);
    if (half === 0) return k.softmaxGrad(yp, gp, op, rows, cols, lg, scale);
    const o = half * cols * 4;
    this.#onBoth(
      "softmaxGrad",
      [yp + o, gp + o, op + o, rows - half, cols, lg, scale],
      () => k.softmaxGrad(yp, gp, op, half, cols, lg, scale),
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
    const xp = this.at(x, 0, rows * cols);
    const op = this.at(out, 0, rows * cols);
    const mp = mask ? this.at(mask, 0, maskSpan(rows, cols, heads, q, maskRows)) : 0;
    const has = mask ? 1 : 0;
    const [sb, sh, sq] = maskRows;
    const k = this.kernels;
    const half = this.#rowSplit(rows, cols);
    if (half === 0) {
      return k.maskedSoftmax(xp, mp, op, rows, cols, scale, has, heads, q, sb, sh, sq, 0);
    }
    const o = half * cols * 4;
    this.#onBoth(
      "maskedSoftmax",
      [xp + o, mp, op + o, rows - half, cols, scale, has, heads, q, sb, sh, sq, half],
      () => k.maskedSoftmax(xp, mp, op, half, cols, scale, has, heads, q, sb, sh, sq, 0),
    );
  }

  /** Rows for the main thread when a row kernel is worth splitting, else 0. */
  #rowSplit(rows: number, cols: number): number {
    if (!this.#thread || rows < 2 || rows * cols < ROWS_THREAD_ELEMENTS) return 0;
    return rows >> 1;
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
    const xp = this.at(x, 0, rows * cols);
    const gp = this.at(gamma, 0, cols);
    const bp = this.at(beta, 0, cols);
    const op = this.at(out, 0, rows * cols);
    const mp = this.at(mean, 0, rows);
    const rp = this.at(rstd, 0, rows);
    const k = this.kernels;
    const half = this.#rowSplit(rows, cols);
    if (half === 0) return k.layerNorm(xp, gp, bp, op, mp, rp, rows, cols, eps);
    const o = half * cols * 4;
    this.#onBoth(
      "layerNorm",
      [xp + o, gp, bp, op + o, mp + half * 4, rp + half * 4, rows - half, cols, eps],
      () => k.layerNorm(xp, gp, bp, op, mp, rp, half, cols, eps),
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
    const k = this.kernels;
    if (!k.addLayerNorm) return false;
    const drop = dropout ? dropoutMask(dropout.p) : { threshold: 0, scale: 1 };
    const seed = (dropout?.seed ?? 0) >>> 0;
    const n = rows * cols;
    const [ap, bp, op] = [this.at(a, 0, n), this.at(b, 0, n), this.at(out, 0, n)];
    const sp = sum ? this.at(sum, 0, n) : 0;
    const gp = this.at(gamma, 0, cols);
    const btp = this.at(beta, 0, cols);
    const mp = this.at(mean, 0, rows);
    const rp = this.at(rstd, 0, rows);
    const run = k.addLayerNorm.bind(k) as (...args: number[]) => boolean;
    // Rows [r0, r1): each operand from row r0 on.
    const args = (r0: number, r1: number) => {
      const o = r0 * cols * 4;
      const rowsAt = [mp + r0 * 4, rp + r0 * 4, r1 - r0, cols, eps];
      const mask = [drop.threshold, drop.scale, seed, r0 * cols];
      return [ap + o, bp + o, sp && sp + o, gp, btp, op + o, ...rowsAt, ...mask];
    };
    const half = this.#rowSplit(rows, cols);
    if (half === 0) return run(...args(0, rows));
    // Both halves have the same width, so the worker takes its half exactly when this one does.
    let took = true;
    this.#onBoth("addLayerNorm", args(half, rows), () => took = run(...args(0, half)));
    return took;
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
    const args = [
      this.at(x, 0, rows * cols),
      this.at(gamma, 0, cols),
      this.at(mean, 0, rows),
      this.at(rstd, 0, rows),
      this.at(g, 0, rows * cols),
      this.at(dx, 0, rows * cols),
      this.at(dgamma, 0, cols),
      this.at(dbeta, 0, cols),
      rows,
      cols,
    ];
    const k = this.kernels;
    if (!k.layerNormGradPart || this.#rowSplit(rows, cols) === 0) {
      return (k.layerNormGrad as (...a: number[]) => void)(...args);
    }
    // dgamma and dbeta sum over every row in order, so one thread takes them with a share of dx
    // and the other the rest of dx.
    const mine = Math.round(rows * LN_GRAD_OWN_DX);
    const run = k.layerNormGradPart.bind(k) as (...a: number[]) => void;
    this.#onBoth("layerNormGradPart", [...args, mine, rows, 0], () => run(...args, 0, mine, 1));
  }

  // ---- chunked cross-entropy ----------------------------------------------------------------

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
    const xp = this.at(x, 0, rows * cols);
    const tp = this.at(targets, 0, rows);
    const lp = this.at(lse, 0, rows);
    const pp = this.at(picked, 0, rows);
    const sp = shift ? this.at(shift, 0, rows) : 0;
    const fst = first ? 1 : 0;
    const k = this.kernels;
    const half = this.#rowSplit(rows, cols);
    if (half === 0) return k.crossEntropyBlock(xp, tp, lp, pp, rows, cols, colOffset, fst, sp);
    const o = half * 4;
    this.#onBoth(
      "crossEntropyBlock",
      [
        xp + half * cols * 4,
        tp + o,
        lp + o,
        pp + o,
        rows - half,
        cols,
        colOffset,
        fst,
        sp && sp + o,
      ],
      () => k.crossEntropyBlock(xp, tp, lp, pp, half, cols, colOffset, fst, sp),
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
    const xp = this.at(x, 0, rows * cols);
    const tp = this.at(targets, 0, rows);
    const lp = this.at(lse, 0, rows);
    const wp = this.at(w, 0, rows);
    const sp = shift ? this.at(shift, 0, rows) : 0;
    const k = this.kernels;
    const half = this.#rowSplit(rows, cols);
    if (half === 0) return k.crossEntropyBlockGrad(xp, tp, lp, wp, rows, cols, colOffset, sp);
    const o = half * 4;
    this.#onBoth(
      "crossEntropyBlockGrad",
      [xp + half * cols * 4, tp + o, lp + o, wp + o, rows - half, cols, colOffset, sp && sp + o],
      () => k.crossEntropyBlockGrad(xp, tp, lp, wp, half, cols, colOffset, sp),
    );
  }

  /** The fused cross-entropy where the kernels have it (the C kernels), for d up to their KC. */
  linearCrossEntropyKept(a: LinearCeArgs): boolean {
    const run = a.bf16 ? this.kernels.lceForwardBf16 : this.kernels.lceForward;
    if (!run || !this.#fusesLinearCe(a)) return false;
    const { rows, items, d } = a;
    const middle = [this.at(a.picked, 0, rows), this.at(a.shift, 0, rows)];
    const [op, bytes] = a.bf16
      ? ["lceForwardBf16" as const, lceBf16PackBytes(rows, items, d)]
      : ["lceForward" as const, lcePackBytes(items, d)];
    this.#linearCeCall(op, run, a, middle, bytes);
    return true;
  }

  linearCrossEntropyKeptGrad(a: LinearCeGradArgs): boolean {
    const run = a.bf16 ? this.kernels.lceBackwardBf16 : this.kernels.lceBackward;
    if (!run || !this.#fusesLinearCe(a)) return false;
    const { rows, items, d } = a;
    const middle = [
      this.at(a.w, 0, rows),
      this.at(a.shift, 0, rows),
      a.dh ? this.at(a.dh, 0, rows * d) : 0,
      a.dtable ? this.at(a.dtable, 0, items * d) : 0,
    ];
    const [op, bytes] = a.bf16
      ? ["lceBackwardBf16" as const, lceBf16GradBytes(rows, items, d)]
      : ["lceBackward" as const, lceGradBytes(rows)];
    this.#linearCeCall(op, run, a, middle, bytes);
    return true;
  }

  /** The chunked cross-entropy streamed where the kernels have it (the C kernels), d up to KC. */
  linearCrossEntropyBlocks(a: LinearCeBlocksArgs): boolean {
    const run = a.bf16 ? this.kernels.lceStreamForwardBf16 : this.kernels.lceStreamForward;
    if (!run || !this.#fusesLinearCe(a)) return false;
    const { rows, block, d } = a;
    const kind = a.bf16 ? 2 : 0;
    this.#linearCeStreamCall(
      a.bf16 ? "lceStreamForwardBf16" : "lceStreamForward",
      run,
      a,
      [this.at(a.picked, 0, rows)],
      4 * this.threads * this.kernels.lceStreamScratchFloats!(rows, block, d, kind),
      false,
    );
    return true;
  }

  linearCrossEntropyBlocksGrad(a: LinearCeBlocksGradArgs): boolean {
    const run = a.bf16 ? this.kernels.lceStreamBackwardBf16 : this.kernels.lceStreamBackward;
    if (!run || !this.#fusesLinearCe(a)) return false;
    const { rows, items, d, block } = a;
    this.#linearCeStreamCall(
      a.bf16 ? "lceStreamBackwardBf16" : "lceStreamBackward",
      run,
      a,
      [
        this.at(a.w, 0, rows),
        a.dh ? this.at(a.dh, 0, rows * d) : 0,
        a.dtable ? this.at(a.dtable, 0, items * d) : 0,
      ],
      4 * this.kernels.lceStreamScratchFloats!(rows, block, d, a.bf16 ? 3 : 1),
      true,
    );
    return true;
  }

  /**
   * One streamed cross-entropy call on both threads: h, table, targets and lse, then `middle`,
   * the shape and `scratchBytes` of scratch, and the barrier where the call has one.
   */
  #linearCeStreamCall(
    op: ThreadOp,
    run: (...args: number[]) => void,
    a: Omit<LinearCeBlocksArgs, "picked">,
    middle: number[],
    scratchBytes: number,
    barrier: boolean,
  ): void {
    const { rows, items, d, block } = a;
    this.#withScratch(scratchBytes, (scratch) => {
      const args = [
        ...[this.at(a.h, 0, rows * d), this.at(a.table, 0, items * d)],
        ...[this.at(a.targets, 0, rows), this.at(a.lse, 0, rows), ...middle],
        ...[rows, items, d, block, scratch, ...(barrier ? [this.#barrierWords()] : [])],
      ];
      this.#onEach(op, args, run.bind(this.kernels));
    });
  }

  // ---- attention (core/ops/attention.ts) ----------------------------------------------------

  attention(a: AttentionArgs): boolean {
    const run = this.kernels.attention;
    if (!run || !this.#fusesAttention(a)) return false;
    const { batch, lq, lk, d, heads } = a;
    const rows = batch * heads * lq;
    const mask = a.mask ? this.at(a.mask, 0, maskSpan(rows, lk, heads, lq, a.maskRows)) : 0;
    const operands = [
      ...this.#attentionInputs(a),
      ...[mask, this.at(a.p, 0, rows * lk), this.at(a.out, 0, batch * lq * d)],
      this.#attentionSteps(a),
    ];
    this.#attentionCall("attention", run, a, operands, [a.mask ? 1 : 0, ...a.maskRows]);
    return true;
  }

  attentionGrad(a: AttentionGradArgs): boolean {
    const run = this.kernels.attentionGrad;
    if (!run || !this.#fusesAttention(a)) return false;
    const { batch, lq, lk, d, heads } = a;
    const operands = [
      ...[...this.#attentionInputs(a), this.at(a.p, 0, batch * heads * lq * lk)],
      ...[this.at(a.g, 0, batch * lq * d), this.at(a.dq, 0, batch * lq * d)],
      ...[this.at(a.dk, 0, batch * lk * d), this.at(a.dv, 0, batch * lk * d)],
      this.#attentionSteps(a),
    ];
    this.#attentionCall("attentionGrad", run, a, operands, []);
    return true;
  }

  /** q, k and v's addresses, each checked against its [batch, L, d] extent. */
  #attentionInputs(a: Omit<AttentionArgs, "mask" | "maskRows" | "out">): number[] {
    const { batch, lq, lk, d } = a;
    return [
      this.at(a.q, 0, batch * lq * d),
      this.at(a.k, 0, batch * lk * d),
      this.at(a.v, 0, batch * lk * d),
    ];
  }

  /** Whether the C kernel takes this shape: every product within one K slice, keys enough. */
  #fusesAttention(a: Omit<AttentionArgs, "mask" | "maskRows" | "out">): boolean {
    const { lq, lk, d, heads } = a;
    const dh = d / heads;
    if (lk < this.attentionMinKeys) return false;
    if (!Number.isInteger(dh) || lq > GEMM_KC || lk > GEMM_KC || dh > GEMM_KC) return false;
    return !a.dropout?.steps || lq === 1;
  }

  #attentionSteps(a: Omit<AttentionArgs, "mask" | "maskRows" | "out">): number {
    const steps = a.dropout?.steps;
    return steps ? this.at(steps, 0, a.batch) : 0;
  }

  /**
   * One attention call, its sequences halved between the threads when worth it: the operands,
   * this thread's scratch and sequences, the shape and scale, `beforeDropout`, the dropout.
   */
  #attentionCall(
    op: ThreadOp,
    run: (...args: number[]) => void,
    a: Omit<AttentionArgs, "mask" | "maskRows" | "out">,
    operands: number[],
    beforeDropout: number[],
  ): void {
    const { batch, lq, lk, d, heads } = a;
    // Dropout rows: a [batch, heads, lk, lk] pass's, for one query at a step.
    const shape = [lq, lk, d, heads, a.dropout?.steps ? lk : lq, a.scale];
    const mask = a.dropout ? dropoutMask(a.dropout.p) : null;
    const drop = mask ? [1, mask.threshold, mask.scale, a.dropout!.seed >>> 0] : [0, 0, 1, 0];
    const args = (scratch: number, b0: number, b1: number) => [
      ...operands,
      ...[scratch, b0, b1],
      ...shape,
      ...beforeDropout,
      ...drop,
    ];
    const f = run.bind(this.kernels) as (...args: number[]) => void;
    const half = this.#thread && batch >= 2 && 4 * batch * lq * lk * d >= GEMM_THREAD_FLOPS
      ? batch >> 1
      : 0;
    const bytes = 4 * this.kernels.attentionScratchFloats!(lq, lk, d / heads);
    this.#withScratch(half === 0 ? bytes : 2 * bytes, (scratch) => {
      if (half === 0) return f(...args(scratch, 0, batch));
      this.#onBoth(op, args(scratch + bytes, half, batch), () => f(...args(scratch, 0, half)));
    });
  }

  get productsBf16(): boolean {
    return this.kernels.lceForwardBf16 !== undefined && this.kernels.lceBackwardBf16 !== undefined;
  }

  #fusesLinearCe({ rows, items, d }: { rows: number; items: number; d: number }): boolean {
    return d <= GEMM_KC && rows > 0 && items > 0;
  }

  /**
   * One fused cross-entropy call on both threads: h, table, z, targets and lse, then `middle`,
   * the shape, `scratchBytes` of scratch and the barrier.
   */
  #linearCeCall(
    op: ThreadOp,
    run: (...args: number[]) => void,
    a: Omit<LinearCeArgs, "picked" | "shift">,
    middle: number[],
    scratchBytes: number,
  ): void {
    const { rows, items, d } = a;
    this.#withScratch(scratchBytes, (scratch) => {
      const args = [
        ...[this.at(a.h, 0, rows * d), this.at(a.table, 0, items * d)],
        ...[this.at(a.z, 0, rows * items), this.at(a.targets, 0, rows), this.at(a.lse, 0, rows)],
        ...middle,
        ...[rows, items, d, scratch, this.#barrierWords()],
      ];
      this.#onEach(op, args, run.bind(this.kernels));
    });
  }

  /** fn with `bytes` of arena scratch, freed after it whatever happens. */
  #withScratch<T>(bytes: number, fn: (scratch: number) => T): T {
    const scratch = this.arena.alloc(bytes);
    try {
      return fn(scratch);
    } finally {
      this.arena.free(scratch, bytes);
    }
  }

  /** The two words of a fused kernel's spin barrier, zeroed for the next call. */
  #barrierWords(): number {
    if (this.#barrier === 0) this.#barrier = this.arena.alloc(8);
    this.arena.i32.fill(0, this.#barrier >> 2, (this.#barrier >> 2) + 2);
    return this.#barrier;
  }

  /** A call both threads run in full (its kernel splits the work by thread id): tid, threads last. */
  #onEach(op: ThreadOp, args: number[], run: (...a: number[]) => void): void {
    if (!this.#thread) return run(...args, 0, 1);
    this.#onBoth(op, [...args, 1, 2], () => run(...args, 0, 2));
  }

  // ---- DuAF fusion ------------------------------------------------------------------------------

  modalityFusion(a: FusionArgs): void {
    const { e, t, q, h, omega, keys, rows, dim, scale } = a;
    const n = rows * dim;
    this.#writeParams([e.map((x) => this.at(x, 0, n))]);
    const m = e.length;
    const tp = this.at(t, 0, n), qp = this.at(q, 0, n), hp = this.at(h, 0, n);
    const wp = this.at(omega, 0, rows * m), kp = this.at(keys, 0, n * m);
    const k = this.kernels;
    const half = this.#rowSplit(rows, dim * m);
    if (half === 0) {
      return k.modalityFusion(this.#params, m, tp, qp, hp, wp, kp, 0, rows, dim, scale);
    }
    // Both threads read the one pointer list; each computes its rows.
    this.#onBoth(
      "modalityFusion",
      [this.#params, m, tp, qp, hp, wp, kp, half, rows, dim, scale],
      () => k.modalityFusion(this.#params, m, tp, qp, hp, wp, kp, 0, half, dim, scale),
    );
  }

  modalityFusionGrad(a: FusionGradArgs): void {
    const { e, q, omega, keys, gh, gomega, ge, gt, gq, rows, dim, scale } = a;
    const n = rows * dim;
    const m = e.length;
    // e's pointers, then ge's at params + 16 bytes
    const list = e.map((x) => this.at(x, 0, n));
    while (list.length < 4) list.push(0);
    this.#writeParams([list, ge.map((x) => this.at(x, 0, n))]);
    const qp = this.at(q, 0, n), wp = this.at(omega, 0, rows * m), kp = this.at(keys, 0, n * m);
    const gp = this.at(gh, 0, n), gwp = gomega ? this.at(gomega, 0, rows * m) : 0;
    const gtp = this.at(gt, 0, n), gqp = this.at(gq, 0, n);
    const p = this.#params;
    const k = this.kernels;
    const half = this.#rowSplit(rows, dim * m);
    if (half === 0) {
      return k.modalityFusionGrad(p, m, qp, wp, kp, gp, gwp, gtp, gqp, 0, rows, dim, scale);
    }
    this.#onBoth(
      "modalityFusionGrad",
      [p, m, qp, wp, kp, gp, gwp, gtp, gqp, half, rows, dim, scale],
      () => k.modalityFusionGrad(p, m, qp, wp, kp, gp, gwp, gtp, gqp, 0, half, dim, scale),
    );
  }

  // ---- indexing -----------------------------------------------------------------------------

  /** A table of rows of `width` floats: its pointer and its whole rows (0 when width is 0). */
  #rowsAt(table: Storage, width: number): [pointer: number, rows: number] {
    const rows = width > 0 ? Math.floor(table.size / width) : 0;
    return [this.at(table, 0, rows * width), rows];
  }

  gather(table: Storage, idx: Storage, out: Storage, n: number, dim: number): void {
    const [tp, rowsT] = this.#rowsAt(table, dim);
    const [ip, op] = [this.at(idx, 0, n), this.at(out, 0, n * dim)];
    this.#checkedRows("gather", this.kernels.gather, n, dim, ip, rowsT, idx, (r0, r1) => [
      ...[tp, rowsT, ip + 4 * r0, op + 4 * r0 * dim],
      ...[r1 - r0, dim],
    ]);
  }

  gatherAdd(
    table: Storage,
    idx: Storage,
    b: Storage,
    out: Storage,
    n: number,
    dim: number,
  ): boolean {
    const run = this.kernels.gatherAdd;
    if (!run) return false;
    const [tp, rowsT] = this.#rowsAt(table, dim);
    const [ip, bp, op] = [this.at(idx, 0, n), this.at(b, 0, n * dim), this.at(out, 0, n * dim)];
    this.#checkedRows("gatherAdd", run, n, dim, ip, rowsT, idx, (r0, r1) => [
      ...[tp, rowsT, ip + 4 * r0, bp + 4 * r0 * dim, op + 4 * r0 * dim],
      ...[r1 - r0, dim],
    ]);
    return true;
  }

  /**
   * A kernel over rows that checks their indices (it returns the first bad one's position among
   * its rows, or -1), split between the threads by rows. The worker's result does not come back,
   * so its rows' indices are checked here after the call; a bad index throws either way.
   */
  #checkedRows(
    op: ThreadOp,
    run: (...args: number[]) => number,
    n: number,
    dim: number,
    ip: number,
    bound: number,
    idx: Storage,
    args: (r0: number, r1: number) => number[],
  ): void {
    const half = this.#rowSplit(n, dim);
    let bad = -1;
    if (half === 0) bad = run(...args(0, n));
    else {
      this.#onBoth(op, args(half, n), () => bad = run(...args(0, half)));
      const i32 = this.arena.i32;
      for (let i = half, at = (ip >>> 2) + half; i < n && bad < 0; i++, at++) {
        if (i32[at] < 0 || i32[at] >= bound) bad = i;
      }
    }
    this.#checkIndex(bad, idx, bound, "gather");
  }

  gatherDots(
    table: Storage,
    idx: Storage,
    h: Storage,
    out: Storage,
    n: number,
    m: number,
    d: number,
  ): boolean {
    const k = this.kernels;
    if (!k.gatherDots || n === 0) return false;
    const [tp, rowsT] = this.#rowsAt(table, d);
    const [ip, hp, op] = [
      this.at(idx, 0, n * m),
      this.at(h, 0, n * d),
      this.at(out, 0, n * m),
    ];
    // Every index checked here first: the worker's share cannot report one of its own.
    const ix = this.arena.i32.subarray(ip >>> 2, (ip >>> 2) + n * m);
    for (let i = 0; i < ix.length; i++) {
      if (!(ix[i] >= 0 && ix[i] < rowsT)) this.#checkIndex(i, idx, rowsT, "gatherDots");
    }
    // Rows [r0, r1): each row's scores are its own, so the threads may take any of them.
    this.#byRows("gatherDots", k.gatherDots.bind(k), n, m * d, (r0, r1) => [
      ...[tp, rowsT, ip + 4 * r0 * m, hp + 4 * r0 * d, op + 4 * r0 * m],
      ...[r1 - r0, m, d],
    ]);
    return true;
  }

  /** `run` over rows [0, n) of `cols` elements' work, split between the kernel threads. */
  #byRows(
    op: ThreadOp,
    run: (...args: number[]) => unknown,
    n: number,
    cols: number,
    share: (r0: number, r1: number) => number[],
  ): void {
    const half = this.#rowSplit(n, cols);
    if (half === 0) run(...share(0, n));
    else this.#onBoth(op, share(half, n), () => run(...share(0, half)));
  }

  gatherDotsGradH(
    table: Storage,
    idx: Storage,
    g: Storage,
    dh: Storage,
    n: number,
    m: number,
    d: number,
  ): boolean {
    const k = this.kernels;
    if (!k.gatherDotsGradH || n === 0) return false;
    const [tp] = this.#rowsAt(table, d);
    const [ip, gp, dp] = [
      this.at(idx, 0, n * m),
      this.at(g, 0, n * m),
      this.at(dh, 0, n * d),
    ];
    this.#byRows("gatherDotsGradH", k.gatherDotsGradH.bind(k), n, m * d, (r0, r1) => [
      ...[tp, ip + 4 * r0 * m, gp + 4 * r0 * m, dp + 4 * r0 * d],
      ...[r1 - r0, m, d],
    ]);
    return true;
  }

  scatterOuter(
    g: Storage,
    h: Storage,
    idx: Storage,
    out: Storage,
    n: number,
    m: number,
    d: number,
  ): boolean {
    const k = this.kernels;
    if (!k.scatterOuter || n === 0 || m === 0) return false;
    const [outp, rowsO] = this.#rowsAt(out, d);
    const args = [
      ...[this.at(g, 0, n * m), this.at(h, 0, n * d), this.at(idx, 0, n * m)],
      ...[outp, rowsO, n, m, d],
    ];
    const run = k.scatterOuter.bind(k) as (...args: number[]) => number;
    // Rows may repeat, so the threads split each row's columns (whole vectors), not the rows:
    // every element still takes its terms in order.
    const half = d >= 32 && this.#rowSplit(n * m, d) > 0 ? Math.floor(d / 32) * 16 : 0;
    let bad = -1;
    if (half === 0) bad = run(...args, 0, d);
    else this.#onBoth("scatterOuter", [...args, half, d], () => bad = run(...args, 0, half));
    this.#checkIndex(bad, idx, rowsO, "scatterOuter");
    return true;
  }

  scatterAdd(g: Storage, idx: Storage, out: Storage, n: number, dim: number): void {
    const [outp, rowsO] = this.#rowsAt(out, dim);
    const bad = this.kernels.scatterAdd(
      this.at(g, 0, n * dim),
      this.at(idx, 0, n),
      outp,
      rowsO,
      n,
      dim,
    );
    this.#checkIndex(bad, idx, rowsO, "scatterAdd");
  }

  pick(x: Storage, idx: Storage, out: Storage, rows: number, cols: number): void {
    const bad = this.kernels.pick(
      this.at(x, 0, rows * cols),
      this.at(idx, 0, rows),
      this.at(out, 0, rows),
      rows,
      cols,
    );
    this.#checkIndex(bad, idx, cols, "pick");
  }

  pickGrad(g: Storage, idx: Storage, out: Storage, rows: number, cols: number): void {
    const bad = this.kernels.pickGrad(
      this.at(g, 0, rows),
      this.at(idx, 0, rows),
      this.at(out, 0, rows * cols),
      rows,
      cols,
    );
    this.#checkIndex(bad, idx, cols, "pickGrad");
  }

  argmaxRows(x: Storage, out: Storage, rows: number, cols: number): void {
    this.kernels.argmaxRows(this.at(x, 0, rows * cols), this.at(out, 0, rows), rows, cols);
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
    const offsets = this.at(exOffsets, 0, rows + 1);
    const excluded = this.arena.i32[(offsets >>> 2) + rows];
    const bad = this.kernels.rankRows(
      this.at(x, 0, rows * cols),
      this.at(targets, 0, rows),
      offsets,
      this.at(exCols, 0, excluded),
      this.at(out, 0, rows),
      rows,
      cols,
    );
    this.#checkRankIndex("rankRows", bad, rows, targets, exCols, cols);
  }

  /** A ranking kernel's bad index (a target below rows, else rows + an excluded column's). */
  #checkRankIndex(
    what: string,
    bad: number,
    rows: number,
    targets: Storage,
    exCols: Storage,
    cols: number,
  ): void {
    if (bad < rows) this.#checkIndex(bad, targets, cols, `${what} targets`);
    else this.#checkIndex(bad - rows, exCols, cols, `${what} excluded columns`);
  }

  rankPackFloats(cols: number, d: number): number {
    return lcePackBytes(cols, d) / 4;
  }

  /** rankRows of gemm's scores with the band ranked in cache, where the kernels have it (C). */
  rankScores(a: RankScoresArgs): boolean {
    const run = this.kernels.rankScores;
    const { rows, cols, d } = a;
    if (!run || d > GEMM_KC || rows === 0 || cols === 0) return false;
    // The table's panels in the caller's buffer when it keeps them, else in the scratch.
    const kept = a.pack;
    const packBytes = kept ? 0 : lcePackBytes(cols, d);
    const bytes = packBytes + this.threads * rankBandBytes(d);
    const offsets = this.at(a.exOffsets, 0, rows + 1);
    const excluded = this.arena.i32[(offsets >>> 2) + rows];
    const bad = this.#withScratch(bytes, (scratch) => {
      const pack = kept ? this.at(kept.buffer, 0, lcePackBytes(cols, d) / 4) : scratch;
      const args = [
        ...[this.at(a.users, 0, rows * d), this.at(a.items, 0, cols * d)],
        ...[this.at(a.targets, 0, rows), offsets, this.at(a.exCols, 0, excluded)],
        ...[this.at(a.out, 0, rows), rows, cols, d, pack, scratch + packBytes],
        ...[kept?.ready ? 1 : 0, this.#barrierWords()],
      ];
      let found = -1;
      this.#onEach("rankScores", args, (...all) => {
        found = run.apply(this.kernels, all as Parameters<typeof run>);
      });
      return found;
    });
    this.#checkRankIndex("rankScores", bad, rows, a.targets, a.exCols, cols);
    return true;
  }

  #checkIndex(bad: number, idx: Storage, bound: number, what: string): void {
    if (bad < 0) return;
    const v = this.arena.i32[(this.pointer(idx) >>> 2) + bad];
    throw new RangeError(`wasm ${what}: index ${v} at position ${bad} outside [0, ${bound})`);
  }

  // ---- randomness ---------------------------------------------------------------------------

  dropout(x: Storage, out: Storage, n: number, p: number, seed: number): void {
    const { threshold, scale } = dropoutMask(p);
    const [xp, op] = [this.at(x, 0, n), this.at(out, 0, n)];
    const k = this.kernels;
    const half = this.#elementSplit(n);
    // The mask is a hash of each element's index: a share at element `half` draws the same.
    if (half === 0 || !k.dropoutAt) return k.dropout(xp, op, n, threshold, scale, seed >>> 0);
    const share = (
      i0: number,
      i1: number,
    ) => [xp + 4 * i0, op + 4 * i0, i1 - i0, threshold, scale, seed >>> 0, i0];
    const run = k.dropoutAt.bind(k) as (...args: number[]) => void;
    this.#onBoth("dropoutAt", share(half, n), () => run(...share(0, half)));
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
    const k = this.kernels;
    if (!k.dropoutRows) return false;
    const { threshold, scale } = dropoutMask(p);
    const [xp, op, rp] = [this.at(x, 0, n * cols), this.at(out, 0, n * cols), this.at(rows, 0, n)];
    // Rows [r0, r1): each draws its own row's mask, so a thread may take any of them.
    this.#byRows("dropoutRows", k.dropoutRows.bind(k), n, cols, (r0, r1) => [
      ...[xp + 4 * r0 * cols, op + 4 * r0 * cols, rp + 4 * r0],
      ...[r1 - r0, cols, threshold, scale, seed >>> 0],
    ]);
    return true;
  }

  // ---- optimizer ----------------------------------------------------------------------------

  adam(a: AdamArgs): void {
    const ptrs = [a.p, a.g, a.m, a.v].map((s) => this.at(s, 0, a.n));
    const hyper = [a.lr, a.beta1, a.beta2, a.eps, a.weightDecay, a.decoupled ? 1 : 0];
    const scalars = [...hyper, a.biasCorrection1, a.biasCorrection2];
    const run = this.kernels.adam as (...args: number[]) => void;
    const half = this.#elementSplit(a.n);
    if (half === 0) return run(...ptrs, a.n, ...scalars);
    const o = half * 4;
    this.#onBoth(
      "adam",
      [...ptrs.map((p) => p + o), a.n - half, ...scalars],
      () => run(...ptrs, half, ...scalars),
    );
  }

  sync(): void {}
}

/**
 * One product's rows [r0, r1) x columns [c0, c1) for each kernel thread: halves of the rows on
 * register-tile boundaries, or of the columns for a product of few rows.
 */
function productHalves(
  m: number,
  n: number,
): [[number, number, number, number], [number, number, number, number]] {
  if (m >= 2 * MR) {
    const split = Math.round(m / 2 / MR) * MR;
    return [[0, split, 0, n], [split, m, 0, n]];
  }
  const split = Math.max(NR, Math.round(n / 2 / NR) * NR);
  return [[0, m, 0, split], [0, m, split, n]];
}

/** The dropout kernel's keep test and scale for rate p. */
function dropoutMask(p: number): { threshold: number; scale: number } {
  // u >= p  <=>  u * 2^24 >= ceil(p * 2^24), since u * 2^24 is an integer (exact in float64).
  const threshold = Math.min(16777216, Math.max(0, Math.ceil(p * 16777216)));
  return { threshold, scale: Math.fround(1 / (1 - p)) };
}

/** Registry entry: below native BLAS and cuda, above the js reference. */
export const wasmBackendFactory: BackendFactory = {
  name: "wasm",
  priority: 20,
  async create() {
    if (typeof WebAssembly?.validate !== "function") {
      return { unavailable: "WebAssembly is not available" };
    }
    try {
      return await WasmBackend.create();
    } catch (e) {
      return { unavailable: e instanceof Error ? e.message : String(e) };
    }
  },
};
