/**
 * `deno task bench wgrad [--rounds K]`: the weight-gradient products X^T G of a training step
 * (a small [d x d'] output, K = every token of the batch) on the native backend with one kernel
 * thread and with two, GFLOP/s as medians of K rounds (hot caches: the same operands each round).
 * "bits" compares the two-thread result with the wasm backend's.
 */
import { parseArgs } from "node:util";
import { gemmArgs } from "../core/backend.ts";
import { NativeBackend } from "../core/backends/native.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { Rng } from "../core/random.ts";
import { medianMs } from "./measure.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "11" } } });
const rounds = Number(values.rounds);
/** [m, k, n]: dW [m x n] = X^T [m x k] G [k x n]; the shapes of a Beauty SASRec step. */
const SHAPES: [number, number, number][] = [
  [64, 28704, 64],
  [64, 28704, 256],
  [256, 28704, 64],
  [64, 6400, 64],
  [64, 2048, 64],
];

const backends = [];
for (const threads of [1, 2] as const) {
  const be = await NativeBackend.open({ threads });
  if ("unavailable" in be) throw new Error(`native backend: ${be.unavailable}`);
  backends.push(be);
}
const wasm = await WasmBackend.create({ threads: 1 });
console.log(`backend: native (${backends[1].description})`);
console.log("| X^T G | 1 thread GFLOP/s | 2 threads GFLOP/s | 2 / 1 | bits |");
console.log("|---|---|---|---|---|");
for (const [m, k, n] of SHAPES) {
  const rng = new Rng(m + k + n);
  const xs = Float32Array.from({ length: k * m }, () => rng.normal());
  const gs = Float32Array.from({ length: k * n }, () => rng.normal());
  const results: Float32Array[] = [];
  const rates: number[] = [];
  for (const be of [...backends, wasm]) {
    const x = be.upload(xs, "f32"), g = be.upload(gs, "f32"), dw = be.alloc(m * n, "f32");
    const run = () => be.gemm(gemmArgs(x, g, dw, m, n, k, { transA: true }));
    rates.push(2 * m * n * k / medianMs([run], be === wasm ? 1 : rounds)[0] / 1e6);
    results.push(be.download(dw) as Float32Array);
    for (const s of [x, g, dw]) be.free(s);
  }
  const same = new Uint32Array(results[1].buffer).every((v, i) =>
    v === new Uint32Array(results[2].buffer)[i]
  );
  console.log(
    `| [${m} x ${k}]^T [${k} x ${n}] | ${rates[0].toFixed(1)} | ${rates[1].toFixed(1)} | ` +
      `${(rates[1] / rates[0]).toFixed(2)}x | ${same ? "same" : "DIFFERENT"} |`,
  );
}
for (const be of [...backends, wasm]) be.dispose();
