/**
 * Native CBLAS sgemm through Deno FFI: per-call overhead and GFLOP/s on the shapes of
 * docs/backends.md, with operands inside a shared WebAssembly.Memory as the native backend uses
 * them. Best of `--rounds` rounds, each at least ~0.2 s of work.
 *
 *   deno run -A tools/bench_blas.ts [--threads 1] [--rounds 5]
 */
import { parseArgs } from "node:util";
import { openBlas, pointerOf } from "../ffi/blas.ts";
import { SHAPES } from "./bench_shapes.ts";

function main(): void {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      threads: { type: "string", default: "1" },
      rounds: { type: "string", default: "5" },
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
}

if (import.meta.main) main();
