/**
 * The sgemm rate of a backend on one training-step shape (`duaf bench`, and the FLOP floor of
 * `deno task bench train`): best of a few rounds of repeated calls after a warm-up call.
 */
import { type Backend, gemmArgs } from "../backend.ts";
import { Rng } from "../random.ts";

export interface GemmRate {
  shape: string;
  gflops: number;
}

export function measureGemm(
  be: Backend,
  m = 2048,
  k = 64,
  n = 256,
  rounds = 5,
  roundSeconds = 0.25,
): GemmRate {
  const rng = new Rng(1);
  const fill = (len: number) =>
    be.upload(Float32Array.from({ length: len }, () => rng.normal()), "f32");
  const a = fill(m * k);
  const b = fill(k * n);
  const c = be.alloc(m * n, "f32");
  const run = () => be.gemm(gemmArgs(a, b, c, m, n, k));
  run();
  const t0 = performance.now();
  run();
  const once = Math.max(performance.now() - t0, 1e-3);
  const reps = Math.max(1, Math.round((roundSeconds * 1000) / once));
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    for (let i = 0; i < reps; i++) run();
    // Reading one value back makes sure asynchronous backends (cuda) have finished.
    be.download(c, 0, 1);
    best = Math.min(best, (performance.now() - t) / reps);
  }
  for (const s of [a, b, c]) be.free(s);
  return { shape: `[${m}x${k}]@[${k}x${n}]`, gflops: (2 * m * n * k) / best / 1e6 };
}
