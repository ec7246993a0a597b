/**
 * What a training epoch asks of the device, counted without a GPU: kernel launches by kind,
 * bytes the memory-bound kernels move (each operand read or written once) and GEMM FLOPs. Every
 * backend call of the epoch's whole-batch steps (the trainer's order: length-bucketed batches
 * padded to their own longest history, unless `bucket` is off) goes through a counting proxy; the
 * counts are a property of the op sequence, not of the machine, so they compare two versions of
 * the code. On the cuda backend it also prints what the memory pool reserved.
 * With the no-op shim (`deno task build:cuda --null`, then DUAF_CUDA_LIB=ffi/cuda/build/
 * libduaf_null.so) the cuda backend's exact sequence runs on a CPU machine in seconds.
 *
 *   deno run -A tools/step_traffic.ts DATASET [--model duafmat] [--backend cuda] [--steps N]
 *     [--set KEY=VALUE ...]     (--steps: the epoch's first N steps; default all)
 */
import { parseArgs } from "node:util";
import type { Backend } from "../core/backend.ts";
import { CudaBackend } from "../core/backends/cuda.ts";
import { resolveConfig } from "../core/config.ts";
import { loadDataset } from "../core/data/dataset.ts";
import { createModel } from "../core/models/registry.ts";
import { Adam } from "../core/optim/adam.ts";
import { Rng } from "../core/random.ts";
import { backward, full, getBackend, setBackend, tidy } from "../core/tensor.ts";
import { makeBatch, splitExamples, timestampOrigin } from "../core/models/examples.ts";
import { bucketedOrder, shuffledOrder } from "../core/train/order.ts";
import { activateBackend, itemSide } from "../core/train/run.ts";

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Bytes a memory-bound call moves, from its arguments (float32 operands, int32 indices). */
// deno-lint-ignore no-explicit-any
const BYTES: Record<string, (a: any[]) => number> = {
  unary: (a) => a[3] * 8,
  unaryGrad: (a) => a[5] * 16,
  binary: (a) => prod(a[6]) * 12,
  reduceSum: (a) => prod(a[1]) * 4 + a[4] * 4,
  axpy: (a) => a[2] * 12,
  permute: (a) => prod(a[1]) * 8,
  softmax: (a) => a[2] * a[3] * 8,
  softmaxGrad: (a) => a[3] * a[4] * 12,
  layerNorm: (a) => a[6] * a[7] * 8,
  layerNormGrad: (a) => a[8] * a[9] * 16,
  gather: (a) => a[3] * a[4] * 8,
  scatterAdd: (a) => a[3] * a[4] * 12,
  copy2d: (a) => a[6] * a[7] * 8,
  fill: (a) => (a[3] ?? a[0].size ?? 0) * 4,
  dropout: (a) => a[2] * 8,
  adam: (a) => a[0].n * 28,
  pick: (a) => a[3] * 8,
  pickGrad: (a) => a[3] * 8,
  crossEntropyBlock: (a) => a[4] * a[5] * 4 + a[4] * 16,
  crossEntropyBlockGrad: (a) => a[5] * a[6] * 8 + a[5] * 12,
  upload: () => 0,
};

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      model: { type: "string", default: "duafmat" },
      backend: { type: "string", default: "cuda" },
      steps: { type: "string", default: "0" },
      set: { type: "string", multiple: true, default: [] },
    },
  });
  if (positionals.length !== 1) throw new Error("usage: step_traffic.ts DATASET [options]");
  await activateBackend(values.backend as "cuda");
  const inner = getBackend();
  const launches = new Map<string, number>();
  const bytes = new Map<string, number>();
  let flops = 0;
  const proxy = new Proxy(inner, {
    get(target, prop) {
      // deno-lint-ignore no-explicit-any
      const f = (target as any)[prop];
      if (typeof f !== "function") return f;
      const kind = String(prop);
      // deno-lint-ignore no-explicit-any
      return (...a: any[]) => {
        if (kind === "gemm") {
          const g = a[0];
          flops += 2 * g.m * g.n * g.k * g.batch;
        }
        if (kind === "gemm" || kind in BYTES) {
          launches.set(kind, (launches.get(kind) ?? 0) + 1);
          bytes.set(kind, (bytes.get(kind) ?? 0) + (BYTES[kind]?.(a) ?? 0));
        }
        return f.apply(target, a);
      };
    },
  }) as Backend;
  setBackend(proxy);

  const ds = await loadDataset(positionals[0]);
  const cfg = resolveConfig(null, [`model=${values.model}`, ...values.set]);
  const model = createModel(cfg, itemSide(ds), new Rng(cfg.seed), () => {});
  const opt = new Adam(model.trainableParameters?.() ?? model.parameters(), {
    lr: cfg.lr,
    weightDecay: cfg.weightDecay,
  });
  const ex = splitExamples(ds, "train");
  const n = ex.users.length;
  const order = cfg.bucket
    ? bucketedOrder(ex, cfg.maxLen, cfg.batchSize, new Rng(cfg.seed))
    : shuffledOrder(n, new Rng(cfg.seed));
  const origin = timestampOrigin(ds);
  const rng = new Rng(cfg.seed ^ 1);
  const bs = cfg.batchSize;
  const stepsPerEpoch = Math.ceil(n / bs);
  const steps = Number(values.steps) > 0
    ? Math.min(Number(values.steps), stepsPerEpoch)
    : stepsPerEpoch;
  model.train();
  const step = (s: number) => {
    const batch = makeBatch(
      ds,
      ex,
      order,
      s * bs,
      Math.min(n, s * bs + bs),
      cfg.maxLen,
      origin,
      model.needsNegatives ? rng : null,
    );
    const ctx = { training: true, rng };
    const padded = batch.size * batch.len;
    tidy(() => {
      const out = model.loss(batch, ctx);
      backward(out.total, full(out.total.shape, 1), { release: true });
    });
    tidy(() => {
      opt.step();
      opt.zeroGrad();
    });
    for (const t of Object.values(model.afterStep?.(batch, ctx) ?? {})) t.dispose();
    return padded;
  };
  let tokens = 0;
  for (let s = 0; s < steps; s++) {
    tokens += step(s);
  }

  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  const rows = [...launches.keys()].sort((a, b) =>
    a === "gemm" ? -1 : b === "gemm" ? 1 : bytes.get(b)! - bytes.get(a)!
  );
  console.log(
    `${values.model}, ${values.backend}, ${steps} steps of ${bs} (of ${stepsPerEpoch}), ` +
      `${(tokens / steps).toFixed(0)} padded tokens per step; per step:`,
  );
  console.log(`| kind | launches | GB moved (GEMM: work) |\n|---|---|---|`);
  for (const k of rows) {
    const gb = k === "gemm"
      ? `${(flops / steps / 1e9).toFixed(1)} GFLOP`
      : (bytes.get(k)! / steps / 1e9).toFixed(3);
    console.log(`| ${k} | ${(launches.get(k)! / steps).toFixed(0)} | ${gb} |`);
  }
  console.log(
    `| all | ${(total(launches) / steps).toFixed(0)} | ${
      (total(bytes) / steps / 1e9).toFixed(2)
    } |`,
  );
  if (inner instanceof CudaBackend) {
    const p = inner.poolStats();
    const gib = (b: number) => (b / 2 ** 30).toFixed(2);
    console.log(
      `pool after setup and these steps: ${p.mallocs} segments allocated, ` +
        `${gib(p.inUse + p.cached)} GiB reserved, peak ${gib(p.peak)} GiB in use`,
    );
  }
}

if (import.meta.main) await main();
