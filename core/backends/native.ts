/**
 * The `native` backend: the wasm backend with its compute-bound kernels run as native code.
 *
 * - C kernels built for the host (cpu_kernels.ts, ffi/cpu/kernels.c): the transcendental
 *   elementwise ops, the cross-entropy rows, dropout, DuAF's fusion and a GEMM, each with its wasm
 *   twin's bits. With AVX-512 the C GEMM takes every product, and a run gives the wasm backend's
 *   checkpoints at native speed; with narrower vectors it takes attention's small batched
 *   products and CBLAS the rest.
 * - A system CBLAS (OpenBLAS, MKL, BLIS) through Deno FFI for the large products when the C GEMM
 *   does not take them (no C compiler, or no AVX-512): ~2.5x the wasm GEMM (docs/backends.md).
 *
 * No copies: tensors live in the wasm arena (a shared WebAssembly.Memory), and native code reads
 * and writes them in place through a pointer to that memory's backing store. The pointer is taken
 * again whenever `memory.buffer` changes (after a grow), so it is never stale.
 */
import {
  type BackendFactory,
  type GemmArgs,
  gemmBatch2,
  gemmLd,
  gemmSpans,
  type LinearCeArgs,
  type LinearCeBlocksArgs,
  type LinearCeBlocksGradArgs,
  type LinearCeGradArgs,
  type RankScoresArgs,
} from "../backend.ts";
import { type Blas, openBlas } from "../../ffi/blas.ts";
import { envVar } from "../env.ts";
import { WasmBackend, type WasmBackendOptions, type WasmRuntime } from "./wasm/wasm_backend.ts";
import { runtimeHasRelaxedSimd } from "./wasm/kernels.ts";
import { cpuKernelLibraryPath, replaceWithCpuKernels } from "./cpu_kernels.ts";

/**
 * Most multiply-adds of one product of a batch that the kernel GEMM runs instead of CBLAS:
 * attention's per-head products up to a head width of about 200 at 50 positions.
 */
const SMALL_BATCHED_PRODUCT = 1 << 19;

/** Priority in the registry: above wasm (20), below cuda (40). */
export const NATIVE_PRIORITY = 30;

export interface NativeBackendOptions extends WasmBackendOptions {
  /** CBLAS library path or name (default $DUAF_BLAS, then the usual names). */
  blasPath?: string;
  /** BLAS threads (default $DUAF_BLAS_THREADS, else the library's own default). */
  blasThreads?: number;
  /** The C kernels: "auto" (build on first use), "off", or a library path (default $DUAF_CPU_KERNELS). */
  cpuKernels?: string;
}

export class NativeBackend extends WasmBackend {
  override readonly name: string = "native";
  /** The CBLAS for the products the C GEMM does not take; null when it takes all of them. */
  readonly blas: Blas | null;
  /** Where the elementwise and cross-entropy row kernels run, and why (for logs). */
  readonly cpuKernels: string;
  /**
   * Every GEMM runs on the kernel GEMM (the C kernels' AVX-512 build) instead of CBLAS: every op
   * then has the wasm kernels' bits, so a run gives the wasm backend's checkpoints.
   */
  readonly kernelGemm: boolean;

  /** A Linear's bias is added in the C GEMM's store (the same bits as copying it in first). */
  override get fusesGemmBias(): boolean {
    return this.kernelGemm;
  }
  /** GELU and its gradient in the C GEMM's store (the bits of the GEMM then the unary kernel). */
  override get fusesGemmGelu(): boolean {
    return this.kernelGemm && this.kernels.gemmEpilogue !== undefined;
  }
  /**
   * The fused cross-entropy takes its products with the C GEMM: only where that GEMM takes every
   * product. Elsewhere CBLAS takes the large ones, with its own rounding and speed.
   */
  override linearCrossEntropyKept(a: LinearCeArgs): boolean {
    return this.kernelGemm && super.linearCrossEntropyKept(a);
  }

  override linearCrossEntropyKeptGrad(a: LinearCeGradArgs): boolean {
    return this.kernelGemm && super.linearCrossEntropyKeptGrad(a);
  }

  override linearCrossEntropyBlocks(a: LinearCeBlocksArgs): boolean {
    return this.kernelGemm && super.linearCrossEntropyBlocks(a);
  }

  override linearCrossEntropyBlocksGrad(a: LinearCeBlocksGradArgs): boolean {
    return this.kernelGemm && super.linearCrossEntropyBlocksGrad(a);
  }

  /**
   * The sampled losses' candidate scores fuse the gather with the C GEMM's products: taken only
   * where that GEMM runs every product, so that they keep its bits.
   */
  override gatherDots(...args: Parameters<WasmBackend["gatherDots"]>): boolean {
    return this.kernelGemm && super.gatherDots(...args);
  }

  override gatherDotsGradH(...args: Parameters<WasmBackend["gatherDotsGradH"]>): boolean {
    return this.kernelGemm && super.gatherDotsGradH(...args);
  }

  /** Likewise the fused ranking: its scores are the C GEMM's. */
  override rankScores(a: RankScoresArgs): boolean {
    return this.kernelGemm && super.rankScores(a);
  }

  #buffer: ArrayBufferLike | null = null;
  #base: Deno.PointerObject | null = null;

  protected constructor(
    rt: WasmRuntime,
    blas: Blas | null,
    cpuKernels: string,
    kernelGemm: boolean,
  ) {
    super(rt);
    this.blas = blas;
    this.cpuKernels = cpuKernels;
    this.kernelGemm = kernelGemm;
  }

  /** Loads a CBLAS and the wasm runtime; a reason instead of a backend when no CBLAS loads. */
  static async open(
    opts: NativeBackendOptions = {},
  ): Promise<NativeBackend | { unavailable: string }> {
    const opened = openBlas({ path: opts.blasPath });
    const blas = "unavailable" in opened ? null : opened;
    const threads = opts.blasThreads ?? envInt("DUAF_BLAS_THREADS");
    if (blas && threads !== undefined) blas.setThreads(threads);
    const variant = opts.variant ?? (runtimeHasRelaxedSimd() ? "relaxed" : "simd");
    const found = await cpuKernelLibraryPath(variant, opts.cpuKernels);
    // Without a CBLAS the backend still runs when the C GEMM takes every product.
    if (!blas && "unavailable" in found) {
      const why = (opened as { unavailable: string }).unavailable;
      return { unavailable: `${why}; C kernels off (${found.unavailable})` };
    }
    let status = "";
    let everyGemm = false;
    const rt = await WasmBackend.loadRuntime({
      ...opts,
      variant,
      replaceKernels: (site) => {
        const r = replaceWithCpuKernels(site, found);
        status = r.status;
        everyGemm = r.everyGemm;
        return r.replaced;
      },
    });
    if (!blas && !everyGemm) {
      rt.thread?.stop();
      const why = (opened as { unavailable: string }).unavailable;
      return { unavailable: `${why}; and the C kernels do not take every GEMM (${status})` };
    }
    return new NativeBackend(rt, blas, status, everyGemm);
  }

  /** One line for logs: the BLAS in use and how the wasm kernels run. */
  get description(): string {
    const b = this.blas;
    const t = b?.threads();
    const blas = b && !this.kernelGemm
      ? `${b.description} (${b.library}${t ? `, ${plural(t, "thread")}` : ""}); `
      : "";
    return `${blas}${this.cpuKernels}; ` +
      `other ops on wasm (${this.variant} SIMD, ${plural(this.threads, "thread")})`;
  }

  /** Address of byte 0 of the arena, re-derived after the memory grows. */
  #memoryBase(): Deno.PointerObject {
    const buf = this.memory.buffer;
    if (buf !== this.#buffer || this.#base === null) {
      const p = Deno.UnsafePointer.of(new Uint8Array(buf as ArrayBuffer));
      if (p === null) throw new Error("native: wasm memory has no backing store");
      this.#base = p;
      this.#buffer = buf;
    }
    return this.#base;
  }

  override gemm(g: GemmArgs): void {
    const { m, n, k, batch } = g;
    if (m === 0 || n === 0 || batch === 0) return;
    // k = 0 is C = beta*C; CBLAS rejects lda = 0, so the wasm kernel does it.
    if (k === 0 || this.kernelGemm) return super.gemm(g);
    const inner = gemmBatch2(g);
    // Many small products (attention's, one per sequence and head): one CBLAS call each costs
    // more than its arithmetic, so the kernel GEMM (C when built, else wasm) takes the whole batch
    // in one call, split over both threads.
    if (batch * inner.n > 1 && m * n * k <= SMALL_BATCHED_PRODUCT) return super.gemm(g);
    // Bounds are checked here, once for the whole batch: a native call past a storage's end
    // would corrupt other tensors instead of trapping.
    const span = gemmSpans(g);
    const a = this.at(g.a, g.aOffset, span.a);
    const b = this.at(g.b, g.bOffset, span.b);
    const c = this.at(g.c, g.cOffset, span.c);
    const base = this.#memoryBase();
    const { lda, ldb, ldc } = gemmLd(g);
    const at = (byte: number) => Deno.UnsafePointer.offset(base, byte);
    for (let i = 0; i < batch; i++) {
      for (let j = 0; j < inner.n; j++) {
        this.blas!.sgemm(
          g.transA,
          g.transB,
          m,
          n,
          k,
          g.alpha,
          at(a + (i * g.strideA + j * inner.a) * 4),
          lda,
          at(b + (i * g.strideB + j * inner.b) * 4),
          ldb,
          g.beta,
          at(c + (i * g.strideC + j * inner.c) * 4),
          ldc,
        );
      }
    }
  }
}

function envInt(name: string): number | undefined {
  const v = envVar(name);
  return v && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** Registry entry: chosen over wasm whenever a CBLAS loads. */
export const nativeBackendFactory: BackendFactory = {
  name: "native",
  priority: NATIVE_PRIORITY,
  async create() {
    try {
      return await NativeBackend.open();
    } catch (e) {
      return { unavailable: e instanceof Error ? e.message : String(e) };
    }
  },
};

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
