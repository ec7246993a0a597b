/**
 * The cuda backend's host side, testable on any machine: how it reports a missing GPU, that its
 * op codes match the shim's header, and that bounds and pointer arithmetic are right before
 * anything reaches the device (checked with a recording stand-in for the shim).
 * GPU parity lives in cuda_parity.test.ts.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  CudaBackend,
  cudaBackendFactory,
  type CudaShimSymbols,
  openCudaShim,
} from "../core/backends/cuda.ts";
import { BINARY_CODES, gemmArgs, UNARY_CODES } from "../core/backend.ts";
import { JsBackend } from "../core/backends/js.ts";
import { gencodeFlags } from "../ffi/cuda/build.ts";

Deno.test("cuda: the factory reports a missing GPU as one clean line", async () => {
  const made = await cudaBackendFactory.create();
  if ("unavailable" in made) {
    assert.match(made.unavailable, /^no CUDA device: /);
    assert.ok(!made.unavailable.includes("\n"), made.unavailable);
  } else {
    assert.equal(made.name, "cuda"); // a GPU machine: the factory must then work
  }
});

Deno.test("cuda: a shim that is not built names the build command", () => {
  const r = openCudaShim("/nonexistent/libduaf_cuda.so");
  assert.ok("unavailable" in r);
  assert.match(r.unavailable, /^no CUDA device: shim not built .*deno task build:cuda/);
});

/** Enum member names of the n-th `enum {...}` in the header, in order. */
function headerEnum(n: number): string[] {
  const src = readFileSync(new URL("../ffi/cuda/duaf_cuda.h", import.meta.url), "utf8");
  const bodies = [...src.matchAll(/enum\s*\{([^}]*)\}/g)].map((m) => m[1]);
  return bodies[n].split(",").map((s) => s.replace(/=.*$/s, "").trim()).filter((s) => s);
}

Deno.test("cuda: op codes match ffi/cuda/duaf_cuda.h", () => {
  const unary = headerEnum(0).filter((s) => s !== "DUAF_UNARY_COUNT");
  const fromHeader = unary.map((s) => s.replace(/^DUAF_/, "").toLowerCase());
  const fromTs = Object.entries(UNARY_CODES).sort((a, b) => a[1] - b[1]).map((e) => e[0]);
  assert.deepEqual(fromTs, fromHeader);
  const binary = headerEnum(1).map((s) => s.replace(/^DUAF_/, "").toLowerCase());
  assert.deepEqual(
    Object.entries(BINARY_CODES).sort((a, b) => a[1] - b[1]).map((e) => e[0]),
    binary,
  );
});

interface Call {
  fn: string;
  args: unknown[];
}

/** A stand-in shim: records every call, hands out fake device addresses, fails on request. */
function fakeShim(failing: Set<string> = new Set()) {
  const calls: Call[] = [];
  let next = 0x100000n;
  const message = new TextEncoder().encode("simulated failure\0");
  const symbols = new Proxy({}, {
    get(_t, fn: string) {
      return (...args: unknown[]) => {
        calls.push({ fn, args });
        if (fn === "duaf_alloc") {
          const p = Deno.UnsafePointer.create(next);
          next += BigInt((args[0] as number) * 4 + 4096);
          return p;
        }
        if (fn === "duaf_last_error") return Deno.UnsafePointer.of(message);
        if (fn === "duaf_info") return null;
        return failing.has(fn) ? 1 : 0;
      };
    },
  }) as unknown as CudaShimSymbols;
  return { calls, backend: new CudaBackend({ symbols }) };
}

const addr = (p: unknown) => Deno.UnsafePointer.value(p as Deno.PointerObject);

Deno.test("cuda: element offsets become byte-advanced device pointers", () => {
  const { calls, backend } = fakeShim();
  const a = backend.alloc(100, "f32");
  const b = backend.alloc(100, "f32");
  const c = backend.alloc(100, "f32");
  // The fake hands out 0x100000, then steps by size * 4 + 4096 bytes.
  const aBase = 0x100000n, bBase = aBase + 400n + 4096n, cBase = bBase + 400n + 4096n;
  backend.gemm({
    a,
    b,
    c,
    m: 2,
    n: 3,
    k: 4,
    transA: true,
    transB: false,
    batch: 2,
    strideA: 10,
    strideB: 12,
    strideC: 6,
    aOffset: 5,
    bOffset: 0,
    cOffset: 88,
    alpha: 0.5,
    beta: 1,
  });
  const g = calls.find((x) => x.fn === "duaf_gemm")!;
  // transA, transB, m, n, k, alpha, A, strideA, B, strideB, beta, C, strideC, batch, lda, ldb,
  // ldc (the packed row strides when not given), batch2, strideA2, strideB2, strideC2
  assert.deepEqual(g.args.slice(0, 6), [1, 0, 2, 3, 4, 0.5]);
  assert.equal(addr(g.args[6]), aBase + 5n * 4n);
  assert.equal(g.args[7], 10);
  assert.equal(addr(g.args[8]), bBase);
  assert.deepEqual(g.args.slice(9, 11), [12, 1]);
  assert.equal(addr(g.args[11]), cBase + 88n * 4n);
  assert.deepEqual(g.args.slice(12), [6, 2, 2, 3, 3, 1, 0, 0, 0]);
});

Deno.test("cuda: out-of-range calls are refused before reaching the device", () => {
  const { calls, backend } = fakeShim();
  const a = backend.alloc(8, "f32");
  const c = backend.alloc(5, "f32");
  const gemm = () => backend.gemm(gemmArgs(a, a, c, 2, 3, 4));
  assert.throws(gemm, RangeError); // B needs 12 elements, C needs 6
  assert.throws(() => backend.unary("exp", a, c, 6, 0), RangeError);
  assert.throws(() => backend.download(a, 4, 5), RangeError);
  assert.throws(() => backend.fill(c, 1, -1, 2), RangeError);
  assert.throws(() => backend.copy2d(a, 0, 4, c, 0, 2, 3, 3, false), RangeError);
  assert.throws(() => backend.binary("add", a, [4, 1], a, [0, 1], c, [2, 4]), RangeError);
  assert.throws(() => backend.permute(a, [2, 4], [0, 0], a), RangeError);
  assert.throws(() => backend.reduceSum(a, [2, 4], c, [3, 0], 2, false), RangeError);
  assert.equal(calls.filter((x) => !["duaf_alloc"].includes(x.fn)).length, 0);
});

Deno.test("cuda: foreign and freed storage are refused; shim errors become exceptions", () => {
  const { calls, backend } = fakeShim(new Set(["duaf_softmax"]));
  const js = new JsBackend().alloc(4, "f32");
  const x = backend.alloc(4, "f32");
  assert.throws(() => backend.unary("exp", js, x, 4, 0), TypeError);
  assert.throws(() => backend.softmax(x, x, 2, 2, false), /cuda softmax: simulated failure/);
  backend.free(x);
  backend.free(x); // double free is a no-op, not a second release
  assert.equal(calls.filter((c) => c.fn === "duaf_free").length, 1);
  assert.throws(() => backend.unary("exp", x, x, 4, 0), /freed storage/);
});

Deno.test("cuda: the build targets sm_90 machine code plus portable PTX", () => {
  assert.deepEqual(gencodeFlags(["sm_90"]), [
    "-gencode",
    "arch=compute_90,code=sm_90",
    "-gencode",
    "arch=compute_80,code=compute_80",
  ]);
  // PTX follows the lowest target, so older GPUs named explicitly still get a JIT fallback.
  assert.deepEqual(gencodeFlags(["sm_90", "75"]).slice(-1), ["arch=compute_75,code=compute_75"]);
  assert.throws(() => gencodeFlags(["hopper"]), /bad CUDA arch/);
});

Deno.test("cuda: row strides and the inner batch reach the shim and count in the bounds", () => {
  const { calls, backend } = fakeShim();
  const a = backend.alloc(64, "f32");
  const c = backend.alloc(64, "f32");
  // 3x2 blocks of an [.., 8]-wide matrix (rows 8 apart), two inner items.
  backend.gemm(
    gemmArgs(a, a, c, 3, 3, 2, {
      transB: true,
      lda: 8,
      ldb: 8,
      ldc: 8,
      batch2: 2,
      strideA2: 2,
      strideB2: 4,
      strideC2: 3,
    }),
  );
  const g = calls.find((x) => x.fn === "duaf_gemm")!;
  assert.deepEqual(g.args.slice(14), [8, 8, 8, 2, 2, 4, 3]);
  // C spans (batch2 - 1) * 21 + 2 * 8 + 3 elements: 40 fit in 64, 61 do, 82 do not.
  const inner = (n: number) => () =>
    backend.gemm(gemmArgs(a, a, c, 3, 3, 2, { ldc: 8, batch2: n, strideC2: 21 }));
  inner(3)();
  assert.throws(inner(4), RangeError);
  // A row stride under the row length is refused.
  assert.throws(() => backend.gemm(gemmArgs(a, a, c, 3, 3, 2, { lda: 1 })), RangeError);
});
