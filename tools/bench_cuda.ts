/**
 * cuda backend micro-benchmarks: GEMM GFLOP/s on the shapes of docs/backends.md through cuBLAS
 * and through the shim's built-in kernel, and the host cost of one small kernel call (FFI +
 * launch). Times include a sync, so they are end-to-end. Prints a markdown table; exits 0 with a
 * notice when no GPU is present.
 *
 *   deno run -A --no-config tools/bench_cuda.ts [--rounds 5]
 */
import { parseArgs } from "node:util";
import { CudaBackend, loadCudaShim } from "../core/backends/cuda.ts";
import { shapeGemm, SHAPES } from "./gemm_shapes.ts";

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { rounds: { type: "string", default: "5" } },
  });
  const rounds = Number(values.rounds);
  const shim = await loadCudaShim();
  if ("unavailable" in shim) {
    console.log(`bench_cuda: skipped (${shim.unavailable})`);
    return;
  }
  const be = new CudaBackend(shim);
  console.log(be.description);

  // Host cost per call: a 1-element kernel, synced once per 10k calls.
  const x = be.upload(new Float32Array(1), "f32");
  const y = be.alloc(1, "f32");
  for (let i = 0; i < 1000; i++) be.unary("exp", x, y, 1, 0);
  be.sync();
  let perCall = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < 10_000; i++) be.unary("exp", x, y, 1, 0);
    be.sync();
    perCall = Math.min(perCall, ((performance.now() - t0) / 10_000) * 1000);
  }
  console.log(`per-call cost (1-element unary, FFI + launch): ${perCall.toFixed(2)} us`);

  const engines = be.usingCublas ? [true, false] : [false];
  console.log("| shape | engine | GFLOP/s | ms/call |");
  console.log("|---|---|---|---|");
  for (const s of SHAPES) {
    const a = be.upload(new Float32Array(s.batch * s.m * s.k).fill(0.5), "f32");
    const b = be.upload(new Float32Array(s.batch * s.k * s.n).fill(0.25), "f32");
    const c = be.alloc(s.batch * s.m * s.n, "f32");
    const flop = 2 * s.batch * s.m * s.n * s.k;
    for (const cublas of engines) {
      be.setCublas(cublas);
      const call = () => be.gemm(shapeGemm(s, a, b, c));
      call();
      be.sync();
      const reps = Math.max(10, Math.round(2e11 / flop));
      let best = Infinity;
      for (let r = 0; r < rounds; r++) {
        const t0 = performance.now();
        for (let i = 0; i < reps; i++) call();
        be.sync();
        best = Math.min(best, (performance.now() - t0) / reps);
      }
      const engine = cublas ? "cuBLAS" : "built-in";
      console.log(
        `| ${s.name} | ${engine} | ${(flop / best / 1e6).toFixed(0)} | ${best.toFixed(4)} |`,
      );
    }
    for (const st of [a, b, c]) be.free(st);
  }
  if (engines.length > 1) be.setCublas(true);
}

if (import.meta.main) await main();
