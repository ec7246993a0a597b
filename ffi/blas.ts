/**
 * Binding to a system CBLAS (OpenBLAS, MKL, BLIS, Accelerate or ATLAS) through Deno.dlopen.
 *
 * Only cblas_sgemm is bound: it is the one op where native code beats WASM SIMD by ~2.5x
 * (docs/backends.md), and one symbol keeps the binding portable across vendors. Pointers are raw
 * addresses so callers can pass memory they do not own as a typed array (a WebAssembly.Memory
 * arena) without copying it.
 */

/** Library names tried in order when DUAF_BLAS is not set; optimized builds first. */
export const BLAS_CANDIDATES: Readonly<Record<string, readonly string[]>> = {
  linux: [
    "libopenblas.so.0",
    "libopenblas.so",
    "libopenblasp-r0.so",
    "libmkl_rt.so.2",
    "libmkl_rt.so",
    "libblis.so.4",
    "libblis.so",
    "libcblas.so.3",
  ],
  darwin: [
    "libopenblas.0.dylib",
    "libopenblas.dylib",
    "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
    "/usr/local/opt/openblas/lib/libopenblas.dylib",
    "/System/Library/Frameworks/Accelerate.framework/Accelerate",
  ],
  windows: ["libopenblas.dll", "openblas.dll", "mkl_rt.2.dll", "mkl_rt.dll"],
};

// CBLAS enum values (cblas.h); identical across vendors.
const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32", // layout
      "i32", // transA
      "i32", // transB
      "i32", // M
      "i32", // N
      "i32", // K
      "f32", // alpha
      "pointer", // A
      "i32", // lda
      "pointer", // B
      "i32", // ldb
      "f32", // beta
      "pointer", // C
      "i32", // ldc
    ],
    result: "void",
  },
  // Thread control differs per vendor; each is optional so one definition fits all of them.
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
  MKL_Set_Num_Threads: { parameters: ["i32"], result: "void", optional: true },
  MKL_Get_Max_Threads: { parameters: [], result: "i32", optional: true },
  bli_thread_set_num_threads: { parameters: ["i64"], result: "void", optional: true },
  bli_thread_get_num_threads: { parameters: [], result: "i64", optional: true },
} as const;

type BlasLib = Deno.DynamicLibrary<typeof SYMBOLS>;

/** A loaded CBLAS. Pointers are raw addresses (see pointerOf) and must outlive the call. */
export class Blas {
  readonly #lib: BlasLib;
  /** The name or path that was opened. */
  readonly library: string;
  /** Vendor and build, for logs (for example "OpenBLAS 0.3.21 ... Zen"). */
  readonly description: string;

  constructor(lib: BlasLib, library: string) {
    this.#lib = lib;
    this.library = library;
    const s = lib.symbols;
    if (s.openblas_get_config) {
      const p = s.openblas_get_config();
      this.description = p ? Deno.UnsafePointerView.getCString(p) : "OpenBLAS";
    } else if (s.MKL_Set_Num_Threads) this.description = "Intel MKL";
    else if (s.bli_thread_set_num_threads) this.description = "BLIS";
    else this.description = "CBLAS";
  }

  /**
   * Row-major single-precision GEMM: C = alpha * op(A) @ op(B) + beta * C, with op(A) M x K,
   * op(B) K x N, C M x N. Leading dimensions are the row lengths of the stored matrices. No
   * argument checking here: callers validate extents, because a bad pointer corrupts memory.
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Deno.PointerValue,
    lda: number,
    b: Deno.PointerValue,
    ldb: number,
    beta: number,
    c: Deno.PointerValue,
    ldc: number,
  ): void {
    this.#lib.symbols.cblas_sgemm(
      ROW_MAJOR,
      transA ? TRANS : NO_TRANS,
      transB ? TRANS : NO_TRANS,
      m,
      n,
      k,
      alpha,
      a,
      lda,
      b,
      ldb,
      beta,
      c,
      ldc,
    );
  }

  /** Sets the library's thread count; false when the vendor exposes no control. */
  setThreads(n: number): boolean {
    const s = this.#lib.symbols;
    const t = Math.max(1, Math.floor(n));
    if (s.openblas_set_num_threads) s.openblas_set_num_threads(t);
    else if (s.MKL_Set_Num_Threads) s.MKL_Set_Num_Threads(t);
    else if (s.bli_thread_set_num_threads) s.bli_thread_set_num_threads(BigInt(t));
    else return false;
    return true;
  }

  /** The library's current thread count, or null when it cannot say. */
  threads(): number | null {
    const s = this.#lib.symbols;
    if (s.openblas_get_num_threads) return s.openblas_get_num_threads();
    if (s.MKL_Get_Max_Threads) return s.MKL_Get_Max_Threads();
    if (s.bli_thread_get_num_threads) return Number(s.bli_thread_get_num_threads());
    return null;
  }

  close(): void {
    this.#lib.close();
  }
}

export interface OpenBlasOptions {
  /** Explicit library path or name; defaults to $DUAF_BLAS, then the platform's candidates. */
  path?: string;
  /** Candidate names to try when no path is given (default BLAS_CANDIDATES for this OS). */
  candidates?: readonly string[];
}

/**
 * Opens the first CBLAS that loads and exports cblas_sgemm. Returns a reason instead of throwing,
 * so a backend factory can fall back in one line.
 */
export function openBlas(opts: OpenBlasOptions = {}): Blas | { unavailable: string } {
  const explicit = opts.path ?? envVar("DUAF_BLAS");
  const names = explicit ? [explicit] : opts.candidates ?? BLAS_CANDIDATES[Deno.build.os] ?? [];
  quietThreads();
  const failures: string[] = [];
  for (const name of names) {
    try {
      return new Blas(Deno.dlopen(name, SYMBOLS), name);
    } catch (e) {
      const why = firstLine(e);
      failures.push(why.startsWith(name) ? why : `${name}: ${why}`);
    }
  }
  if (names.length === 0) return { unavailable: `no CBLAS candidates for ${Deno.build.os}` };
  return explicit
    ? { unavailable: `DUAF_BLAS=${explicit} did not load (${failures[0]})` }
    : { unavailable: `no CBLAS found (tried ${names.join(", ")}; set DUAF_BLAS=/path/to/lib)` };
}

/** Address of the first byte of a view; works for views over SharedArrayBuffer too. */
export function pointerOf(view: ArrayBufferView): Deno.PointerObject {
  const p = Deno.UnsafePointer.of(view as Uint8Array<ArrayBuffer>);
  if (p === null) throw new Error("pointerOf: view has no backing store");
  return p;
}

/**
 * OpenBLAS's worker threads busy-wait for ~2^28 cycles (~0.1 s) after every call before they
 * sleep. Between two GEMMs the wasm kernel thread needs that core: with the default, the
 * elementwise ops after a 2-thread sgemm ran 2x slower on a 2-core machine. 2^4 cycles makes the
 * workers sleep at once; waking them costs microseconds against milliseconds of GEMM. Read by
 * OpenBLAS when it loads, so it is set before dlopen, and only when the user has not set it.
 */
function quietThreads(): void {
  try {
    if (Deno.env.get("OPENBLAS_THREAD_TIMEOUT") === undefined) {
      Deno.env.set("OPENBLAS_THREAD_TIMEOUT", "4");
    }
  } catch {
    // no --allow-env: OpenBLAS keeps its default
  }
}

function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env: behave as if unset
  }
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  // Deno repeats "Could not open library:"; keep the loader's own words.
  return msg.replace(/^(Could not open library: )+/, "").split("\n")[0];
}
