/**
 * Native CBLAS sgemm through Deno FFI: per-call overhead and GFLOP/s on the shapes of
 * docs/backends.md, with operands inside a shared WebAssembly.Memory as the native backend uses
 * them. Best of `--rounds` rounds, each at least ~0.2 s of work. With --backends, the same shapes
 * through Backend.gemm of the wasm and native backends (same thread count for both).
 *
 *   deno run -A --v8-flags=--no-liftoff tools/bench_blas.ts [--threads 1] [--rounds 5] [--backends]
 */
import { parseArgs } from "node:util";
import { openBlas, pointerOf } from "../ffi/blas.ts";
import type { Backend } from "../core/backend.ts";
import { NativeBackend } from "../core/backends/native.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { type GemmShape, shapeGemm, SHAPES } from "./gemm_shapes.ts";

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      threads: { type: "string", default: "1" },
      rounds: { type: "string", default: "5" },
      backends: { type: "boolean", default: false },
    },
  });
  const blas = openBlas();
  if ("unavailable" in blas) {
    console.error(`bench_blas: ${blas.unavailable}`);
    Deno.exit(1);
  }
  const threads = Number(values.threads);
  blas.setThreads(threads);
  const rounds = Number(values.rounds);
  console.log(`${blas.description} (${blas.library}), threads=${blas.threads()}`);

  const maxFloats = Math.max(...SHAPES.map((s) => s.batch * (s.m * s.k + s.k * s.n + s.m * s.n)));
  const pages = Math.ceil((maxFloats * 4) / 65536) + 1;
  const mem = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const f32 = new Float32Array(mem.buffer);
  for (let i = 0; i < f32.length; i++) f32[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
  const base = pointerOf(f32);
  const at = (elem: number) => Deno.UnsafePointer.offset(base, elem * 4);

  // Per-call overhead: a 1x1x1 product is all call, no work.
  let overhead = Infinity;
  for (let r = 0; r < rounds; r++) {
    const calls = 100_000;
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) {
      blas.sgemm(false, false, 1, 1, 1, 1, at(0), 1, at(1), 1, 0, at(2), 1);
    }
    overhead = Math.min(overhead, ((performance.now() - t0) / calls) * 1000);
  }
  console.log(`per-call overhead (1x1x1 sgemm): ${overhead.toFixed(2)} us`);

  console.log("| shape | GFLOP/s | ms/call |");
  console.log("|---|---|---|");
  for (const s of SHAPES) {
    const aLen = s.m * s.k, bLen = s.k * s.n, cLen = s.m * s.n;
    const aOff = 0, bOff = s.batch * aLen, cOff = bOff + s.batch * bLen;
    const run = () => {
      for (let b = 0; b < s.batch; b++) {
        blas.sgemm(
          false,
          false,
          s.m,
          s.n,
          s.k,
          1,
          at(aOff + b * aLen),
          s.k,
          at(bOff + b * bLen),
          s.n,
          0,
          at(cOff + b * cLen),
          s.n,
        );
      }
    };
    const flop = 2 * s.batch * s.m * s.n * s.k;
    run(); // warm-up: page faults, thread pool start
    const reps = Math.max(1, Math.round(2e8 / flop));
    let best = Infinity;
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) run();
      best = Math.min(best, (performance.now() - t0) / reps);
    }
    console.log(`| ${s.name} | ${(flop / best / 1e6).toFixed(1)} | ${best.toFixed(3)} |`);
  }
  blas.close();
  if (values.backends) await compareBackends(threads === 2 ? 2 : 1, rounds);
}

/** GFLOP/s of Backend.gemm for one shape: best of `rounds`, each ~0.2 GFLOP of work. */
function gemmRate(be: Backend, s: GemmShape, rounds: number): number {
  const a = be.upload(new Float32Array(s.batch * s.m * s.k).fill(0.5), "f32");
  const b = be.upload(new Float32Array(s.batch * s.k * s.n).fill(0.25), "f32");
  const c = be.alloc(s.batch * s.m * s.n, "f32");
  const call = () => be.gemm(shapeGemm(s, a, b, c));
  const flop = 2 * s.batch * s.m * s.n * s.k;
  call();
  const reps = Math.max(1, Math.round(2e8 / flop));
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) call();
    best = Math.min(best, (performance.now() - t0) / reps);
  }
  for (const st of [a, b, c]) be.free(st);
  return flop / best / 1e6;
}

async function compareBackends(threads: 1 | 2, rounds: number): Promise<void> {
  const wasm = await WasmBackend.create({ threads });
  const native = await NativeBackend.open({ threads, blasThreads: threads });
  if ("unavailable" in native) throw new Error(native.unavailable);
  console.log(`\nBackend.gemm, ${threads} thread(s): wasm ${wasm.variant} SIMD vs native`);
  console.log("| shape | wasm GFLOP/s | native GFLOP/s | native/wasm |");
  console.log("|---|---|---|---|");
  for (const s of SHAPES) {
    const w = gemmRate(wasm, s, rounds);
    const n = gemmRate(native, s, rounds);
    console.log(`| ${s.name} | ${w.toFixed(1)} | ${n.toFixed(1)} | ${(n / w).toFixed(2)} |`);
  }
  wasm.dispose();
  native.dispose();
}

if (import.meta.main) await main();
