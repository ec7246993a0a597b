/**
 * Before/after timings of single training-step ops, A and B alternating in one process so both
 * see the same load on a shared machine (medians over rounds; "B/A" is the median of the
 * per-round ratios):
 *
 * - `ce`: CE over all items on one SASRec step's shapes (2048 sequence outputs of d = 64 against
 *   the 12,102-row Beauty item table), forward + backward, native backend: A = the composition
 *   crossEntropy(matmul(h, table^T)) (log-softmax, pick, zero-filled pick gradient, softmax
 *   gradient), B = op.linearCrossEntropy over one block of every item (what nextItemLoss runs).
 *   The two give the same bits (checked here).
 * - `kernels`: the wasm kernels' transcendental unary ops (exp, tanh, gelu, and the gelu gradient)
 *   and the CE row kernels over 4M floats on one thread: A = a kernel module given with
 *   --old-kernels (e.g. `git show REV:wasm/build/kernels-relaxed.wasm > /tmp/old.wasm`), B = the
 *   committed wasm/build/kernels-relaxed.wasm. Outputs are compared bit for bit.
 *
 * - `step` (with --data, a preprocessed dataset): a whole SASRec forward + backward (no optimizer
 *   step) on the first --batches batches of an epoch (the trainer's bucketed order, batch 2048,
 *   micro-batches of the CPU token budget), native backend, with A = that composition and B =
 *   linearCrossEntropy as the loss, alternating batch by batch; the sum over batches per round.
 *
 * - `eval` (with --run, a trained run): the run's full-ranking test evaluation, A = the scores
 *   downloaded and ranked on the host (metrics.ts rankOf), B = ranked where they are
 *   (Backend.rankRows); the metrics must agree to the bit. `--mask-seen` ranks without the
 *   users' earlier items.
 *
 * - `model-step` (with --data): a whole training step of any model (forward + backward of
 *   model.loss and afterStep, no optimizer step) on the first --batches batches of the trainer's
 *   order (window training, batch 128 unless --set says otherwise), native backend, for each
 *   --variant "LABEL=ROOT|KEY=VALUE,..." (ROOT: a checkout whose core/ is imported, "." for this
 *   one; KEY=VALUE: config settings over --set), all alternating batch by batch; B/A is each
 *   variant against the first. Each step draws from `new Rng(1)`, so variants of the same config
 *   on two checkouts see the same draws: their loss parts and gradients are compared bit for bit.
 *
 * - `vscl` (with --data and --base ROOT): VSCL's host-side virtual sequences for every window
 *   batch of an epoch (batch 128, every similarity index of the dataset's text and image
 *   features, the default VSCL settings), A = virtualSequences of the checkout at ROOT, B = this
 *   one's, alternating; the sequences are compared item for item.
 *
 * `--ab exp` compares, in `ce` and `step`, linearCrossEntropy with the kept exponentials
 * (B, `keepsCrossEntropyExp`: the gradient is one multiply per logit) against the same op
 * computing them again in the backward (A); the loss bits are compared, and the gradients'
 * largest relative difference is printed.
 *
 *   deno task bench ops [--what ce,kernels,step,model-step] [--ab plain|exp] [--rounds 11]
 *                       [--old-kernels FILE] [--data DIR] [--batches 8] [--run DIR [--mask-seen]]
 *                       [--set KEY=VALUE ...] [--variant "LABEL=ROOT|KEY=VALUE,..." ...] [--base ROOT]
 */
import { parseArgs } from "node:util";
import { join, resolve as resolvePath } from "node:path";
import { pathToFileURL } from "node:url";
import { NativeBackend } from "../core/backends/native.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { backward, full, setBackend, type Tensor, tensor, tidy } from "../core/tensor.ts";
import { CPU_TOKEN_BUDGET } from "../core/backend.ts";
import { resolveConfig } from "../core/config.ts";
import { loadDataset } from "../core/data/dataset.ts";
import { createModel } from "../core/models/registry.ts";
import { gatherLast } from "../core/models/sasrec.ts";
import type { Sasrec } from "../core/models/sasrec.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { buildSimilarityIndex, virtualSequences } from "../core/models/duaf/vscl.ts";
import {
  makeBatch,
  microBatches,
  splitExamples,
  timestampOrigin,
  windowExamples,
} from "../core/models/examples.ts";
import { bucketedOrder } from "../core/train/order.ts";
import { activateBackend, evaluateRun, itemSide, openRun } from "../core/train/run.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    what: { type: "string", default: "ce,kernels" },
    rounds: { type: "string", default: "11" },
    "old-kernels": { type: "string" },
    data: { type: "string" },
    batches: { type: "string", default: "8" },
    ab: { type: "string", default: "plain" },
    run: { type: "string" },
    "mask-seen": { type: "boolean", default: false },
    set: { type: "string", multiple: true, default: [] },
    variant: { type: "string", multiple: true, default: [] },
    base: { type: "string" },
  },
});
if (values.ab !== "plain" && values.ab !== "exp") throw new Error("--ab: plain or exp");
const abExp = values.ab === "exp";

/**
 * The loss of variant A or B of --ab: plain = the composition (A) against linearCrossEntropy (B);
 * exp = linearCrossEntropy recomputing the exponentials (A) against keeping them (B).
 */
function abLoss(nb: NativeBackend, b: boolean, h: Tensor, table: Tensor, targets: Tensor): Tensor {
  if (!abExp && !b) return op.crossEntropy(op.matmul(h, table, false, true), targets);
  Object.defineProperty(nb, "keepsCrossEntropyExp", { value: !abExp || b, configurable: true });
  return op.linearCrossEntropy(h, table, targets, table.shape[0]);
}

/** Largest |a - b| / max(|a|, 1e-30) over two gradients' first values. */
function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(Math.abs(a[i]), 1e-30));
  }
  return m;
}
const rounds = Number(values.rounds);
const what = new Set(values.what!.split(","));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

function report(name: string, a: number[], b: number[]): void {
  const ratios = a.map((x, i) => b[i] / x);
  console.log(
    `| ${name} | ${median(a).toFixed(1)} | ${median(b).toFixed(1)} | ${
      median(ratios).toFixed(2)
    }x |`,
  );
}

console.log("| op | A ms | B ms | B/A |");
console.log("|---|---|---|---|");

if (what.has("ce")) {
  const nb = await NativeBackend.open();
  if ("unavailable" in nb) throw new Error(nb.unavailable);
  setBackend(nb);
  const rows = 2048, items = 12102, d = 64;
  const r = new Rng(1);
  const h0 = Float32Array.from({ length: rows * d }, () => r.normal());
  const t0 = Float32Array.from({ length: items * d }, () => 0.1 * r.normal());
  const tg = Int32Array.from({ length: rows }, () => 1 + r.int(items - 1));
  const run = (fused: boolean) =>
    tidy(() => {
      const h = tensor(h0, [rows, d]);
      const table = tensor(t0, [items, d]);
      h.requiresGrad = table.requiresGrad = true;
      const targets = tensor(tg, [rows], "i32");
      const start = performance.now();
      const loss = abLoss(nb, fused, h, table, targets);
      backward(loss, undefined, { release: true });
      const ms = performance.now() - start;
      const out = { ms, loss: loss.item(), grad: h.grad!.toFloat32().subarray(0, 4096) };
      h.grad!.dispose();
      table.grad!.dispose();
      return out;
    });
  const a: number[] = [], b: number[] = [];
  let sameLoss = true, gradDiff = 0;
  for (let i = 0; i < rounds; i++) {
    const x = run(false), y = run(true);
    a.push(x.ms);
    b.push(y.ms);
    sameLoss &&= Object.is(x.loss, y.loss);
    gradDiff = Math.max(gradDiff, maxRelDiff(x.grad, y.grad));
  }
  const bits = gradDiff === 0 && sameLoss
    ? ""
    : ` (loss ${sameLoss ? "same bits" : "DIFFERS"}; gradient max rel. diff ${
      gradDiff.toExponential(1)
    })`;
  report(`CE fwd+bwd [${rows}x${d}] vs ${items} items (native, --ab ${values.ab})${bits}`, a, b);
  nb.dispose?.();
}

if (what.has("kernels")) {
  const oldFile = values["old-kernels"];
  if (!oldFile) throw new Error("--old-kernels FILE: the kernel module to compare against");
  const newFile = join(import.meta.dirname!, "../wasm/build/kernels-relaxed.wasm");
  const memory = new WebAssembly.Memory({ initial: 2000, maximum: 65536, shared: true });
  // deno-lint-ignore no-explicit-any
  const load = async (f: string): Promise<any> =>
    (await WebAssembly.instantiate(await WebAssembly.compile(await Deno.readFile(f)), {
      env: { memory },
    })).exports;
  const A = await load(oldFile), B = await load(newFile);
  const n = 4 << 20;
  const base = 1 << 20; // above both modules' static data
  const f32 = new Float32Array(memory.buffer);
  const u32 = new Uint32Array(memory.buffer);
  const r = new Rng(2);
  const x = base, g = x + 4 * n, oa = g + 4 * n, ob = oa + 4 * n, lse = ob + 4 * n;
  for (let i = 0; i < n; i++) f32[(x >> 2) + i] = 2 * r.normal();
  for (let i = 0; i < n; i++) f32[(g >> 2) + i] = r.normal();
  const cols = 12102, crows = Math.floor(n / cols);
  const tgt = lse + 4 * crows, picked = tgt + 4 * crows, y = picked + 4 * crows;
  for (let i = 0; i < crows; i++) u32[(tgt >> 2) + i] = r.int(cols);
  // GELU's output, which its gradient kernel may read (the forward's bits do not change).
  B.unary(6, x, y, n, 0);
  for (let i = 0; i < crows; i++) f32[(g >> 2) + i] = 1 / crows;
  // Each case: its name, the call writing at `out`, and how many floats it writes there.
  const cases: [string, (k: typeof A, out: number) => void, number][] = [
    ["exp", (k, o) => k.unary(1, x, o, n, 0), n],
    ["tanh", (k, o) => k.unary(4, x, o, n, 0), n],
    ["gelu", (k, o) => k.unary(6, x, o, n, 0), n],
    ["gelu gradient", (k, o) => k.unaryGrad(6, x, y, g, o, n, 0), n],
    ["crossEntropyBlock (log-sum-exp)", (k, o) => {
      k.crossEntropyBlock(x, tgt, o, picked, crows, cols, 0, 1);
    }, crows],
    ["crossEntropyBlockGrad", (k, o) => {
      k.copy2d(x, 0, o, 0, 1, n, 0);
      k.crossEntropyBlockGrad(o, tgt, lse, g, crows, cols, 0);
    }, crows * cols],
  ];
  B.crossEntropyBlock(x, tgt, lse, picked, crows, cols, 0, 1);
  for (const [name, fn, written] of cases) {
    const a: number[] = [], b: number[] = [];
    for (let i = 0; i < rounds; i++) {
      let s = performance.now();
      fn(A, oa);
      a.push(performance.now() - s);
      s = performance.now();
      fn(B, ob);
      b.push(performance.now() - s);
    }
    let differ = 0;
    for (let i = 0; i < written; i++) if (u32[(oa >> 2) + i] !== u32[(ob >> 2) + i]) differ++;
    report(`${name}, ${n} floats, 1 thread${differ ? ` (${differ} outputs differ)` : ""}`, a, b);
  }
}

if (what.has("step")) {
  if (!values.data) throw new Error("--what step needs --data DIR (a preprocessed dataset)");
  const nb = await NativeBackend.open();
  if ("unavailable" in nb) throw new Error(nb.unavailable);
  setBackend(nb);
  const cfg = resolveConfig(null, ["model=sasrec", "hidden=64", "inner=256", "batchSize=2048"]);
  const ds = await loadDataset(values.data);
  const model = createModel(cfg, itemSide(ds), new Rng(cfg.seed), () => {}) as Sasrec;
  model.train();
  const ex = splitExamples(ds, "train");
  const order = bucketedOrder(ex, cfg.maxLen, cfg.batchSize, new Rng(0));
  const origin = timestampOrigin(ds);
  const nBatches = Math.min(Number(values.batches), Math.ceil(ex.users.length / cfg.batchSize));
  const micro = Array.from({ length: nBatches }, (_, i) => {
    const start = i * cfg.batchSize;
    const end = Math.min(ex.users.length, start + cfg.batchSize);
    const batch = makeBatch(ds, ex, order, start, end, cfg.maxLen, origin, null);
    return microBatches(batch, CPU_TOKEN_BUDGET).map((m) => ({ m, w: m.size / batch.size }));
  });
  const table = model.itemEmbedding.weight;
  const params = model.parameters();
  const stepOnce = (fused: boolean, parts: (typeof micro)[number]) => {
    const t0 = performance.now();
    for (const { m, w } of parts) {
      tidy(() => {
        const ctx = { training: true, rng: new Rng(1) };
        const h = gatherLast(model.encode(m, ctx), m);
        const targets = tensor(m.targets, [m.size], "i32");
        const loss = abLoss(nb, fused, h, table, targets);
        backward(loss, full(loss.shape, w), { release: true });
      });
    }
    const ms = performance.now() - t0;
    for (const p of params) {
      p.grad?.dispose();
      p.grad = null;
    }
    return ms;
  };
  const a: number[] = [], b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let sa = 0, sb = 0;
    for (const parts of micro) {
      sa += stepOnce(false, parts);
      sb += stepOnce(true, parts);
    }
    a.push(sa);
    b.push(sb);
  }
  report(
    `SASRec forward + backward, ${nBatches} Beauty batches of 2048 (native, --ab ${values.ab})`,
    a,
    b,
  );
  nb.dispose?.();
}

if (what.has("eval")) {
  if (!values.run) throw new Error("--what eval needs --run DIR (a trained run)");
  const { backend } = await activateBackend("native");
  const run = await openRun(values.run);
  const rankRows = backend.rankRows;
  const once = (onBackend: boolean) => {
    Object.defineProperty(backend, "rankRows", {
      value: onBackend ? rankRows : undefined,
      configurable: true,
      writable: true,
    });
    const t0 = performance.now();
    const r = evaluateRun(run, { split: "test", ks: [10], maskSeen: values["mask-seen"]! });
    return { ms: performance.now() - t0, metrics: JSON.stringify(r.metrics) };
  };
  once(true);
  const a: number[] = [], b: number[] = [];
  let same = true;
  for (let i = 0; i < rounds; i++) {
    const x = once(false), y = once(true);
    a.push(x.ms);
    b.push(y.ms);
    same &&= x.metrics === y.metrics;
  }
  report(
    `full-ranking test eval of ${values.run}${values["mask-seen"] ? ", seen items masked" : ""}` +
      ` (native)${same ? "" : " METRICS DIFFER"}`,
    a,
    b,
  );
}

if (what.has("model-step")) {
  if (!values.data) throw new Error("--what model-step needs --data DIR (a preprocessed dataset)");
  const variants = values.variant!.map((v) => {
    const m = /^([^=]+)=([^|]*)\|?(.*)$/.exec(v);
    if (!m) throw new Error(`--variant ${v}: LABEL=ROOT|KEY=VALUE,...`);
    return { label: m[1], root: m[2] || ".", sets: m[3] ? m[3].split(",") : [] };
  });
  if (!variants.length) throw new Error("--what model-step needs at least one --variant");
  const steppers = [];
  for (const v of variants) steppers.push(await modelStepper(v.root, values.data, v.sets));
  const nb = Number(values.batches);
  const times = variants.map(() => [] as number[]);
  const sums = variants.map(() => [] as string[]);
  for (let r = 0; r < rounds; r++) {
    const round = variants.map(() => 0);
    for (let i = 0; i < nb; i++) {
      steppers.forEach((s, k) => {
        const { ms, sum } = s(i);
        round[k] += ms;
        if (r === 0) sums[k].push(sum);
      });
    }
    round.forEach((ms, k) => times[k].push(ms));
  }
  variants.forEach((v, k) => {
    // Same config on another checkout: are the step's numbers the same bits as the first's?
    const twin = variants.findIndex((w) => w.sets.join() === v.sets.join());
    const bits = twin < k
      ? (sums[twin].join() === sums[k].join() ? " (same bits)" : " (bits DIFFER)")
      : "";
    report(`${v.label} [${v.root}] ${v.sets.join(" ")}${bits}, ${nb} steps`, times[0], times[k]);
  });
}

if (what.has("vscl")) {
  if (!values.data || !values.base) throw new Error("--what vscl needs --data DIR and --base ROOT");
  const imp = (root: string, p: string) =>
    import(new URL(p, pathToFileURL(resolvePath(root) + "/")).href);
  const nb = await NativeBackend.open();
  if ("unavailable" in nb) throw new Error(nb.unavailable);
  setBackend(nb);
  const A = (await imp(values.base, "core/models/duaf/vscl.ts")).virtualSequences;
  const B = virtualSequences;
  const cfg = resolveConfig(null, ["model=duafmat", "trainMode=window", "batchSize=128"]);
  const dc = cfg.duafmat;
  const ds = await loadDataset(values.data);
  const side = itemSide(ds);
  const idx = [side.text, side.image].filter((f) => f !== null).map((f) =>
    buildSimilarityIndex(f!, dc.vsclCandidates)
  );
  const ex = windowExamples(ds);
  const order = bucketedOrder(ex, cfg.maxLen, cfg.batchSize, new Rng(0));
  const origin = timestampOrigin(ds);
  const batches: SequenceBatch[] = [];
  for (let s = 0; s < ex.users.length; s += cfg.batchSize) {
    const end = Math.min(ex.users.length, s + cfg.batchSize);
    batches.push(makeBatch(ds, ex, order, s, end, cfg.maxLen, origin, null, true));
  }
  const opts = {
    rate: dc.poissonRate,
    gamma: dc.gamma,
    temperature: dc.lambdaTemp,
    maxLen: cfg.maxLen,
  };
  // deno-lint-ignore no-explicit-any
  const epoch = (fn: any) => {
    const rng = new Rng(1);
    const out: Int32Array[] = [];
    const t0 = performance.now();
    for (const b of batches) for (const i of idx) out.push(fn(b, b.size, i, opts, rng).items);
    return { ms: performance.now() - t0, out };
  };
  const a: number[] = [], b: number[] = [];
  let same = true;
  for (let r = 0; r < rounds; r++) {
    const x = epoch(A), y = epoch(B);
    a.push(x.ms);
    b.push(y.ms);
    same &&= x.out.every((s, i) => s.join() === y.out[i].join());
  }
  report(
    `VSCL virtual sequences, one epoch (${batches.length} batches x ${idx.length} modalities)` +
      (same ? " (same sequences)" : " (sequences DIFFER)"),
    a,
    b,
  );
  nb.dispose?.();
}

/**
 * A step function over the first batches of a model's window-training epoch, built from the
 * modules of the checkout at `root` (each checkout has its own backend and tensor registry).
 * Returns the step's milliseconds and a checksum of its loss parts and gradients.
 */
async function modelStepper(root: string, data: string, sets: string[]) {
  const base = pathToFileURL(resolvePath(root) + "/");
  const imp = (p: string) => import(new URL(p, base).href);
  const { NativeBackend: Native } = await imp("core/backends/native.ts");
  const T = await imp("core/tensor.ts");
  const { resolveConfig: resolve } = await imp("core/config.ts");
  const { loadDataset: load } = await imp("core/data/dataset.ts");
  const { createModel: create } = await imp("core/models/registry.ts");
  const E = await imp("core/models/examples.ts");
  const { bucketedOrder: order } = await imp("core/train/order.ts");
  const { itemSide: side } = await imp("core/train/run.ts");
  const { microBatchTokens } = await imp("core/train/trainer.ts");
  const R = await imp("core/random.ts");
  const backend = await Native.open();
  if ("unavailable" in backend) throw new Error(backend.unavailable);
  T.setBackend(backend);
  const cfg = resolve(null, ["trainMode=window", "batchSize=128", ...values.set!, ...sets]);
  const ds = await load(data);
  const model = create(cfg, side(ds), new R.Rng(cfg.seed), () => {});
  model.train();
  const ex = E.windowExamples(ds);
  const ord = order(ex, cfg.maxLen, cfg.batchSize, new R.Rng(0));
  const origin = E.timestampOrigin(ds);
  const micro = microBatchTokens(cfg, model.memoryFactor ?? 1, ds.numItems);
  const params: Tensor[] = model.trainableParameters?.() ?? model.parameters();
  return (i: number) => {
    T.setBackend(backend);
    const start = i * cfg.batchSize;
    const batch = E.makeBatch(
      ds,
      ex,
      ord,
      start,
      Math.min(ex.users.length, start + cfg.batchSize),
      cfg.maxLen,
      origin,
      null,
      true,
    );
    const ctx = { training: true, rng: new R.Rng(1) };
    const parts: number[] = [];
    const t0 = performance.now();
    for (const m of E.microBatches(batch, micro, model.padsTo)) {
      T.tidy(() => {
        const out = model.loss(m, ctx);
        for (const t of Object.values(out.parts) as Tensor[]) parts.push(t.item());
        T.backward(out.total, T.full(out.total.shape, 1), { release: true });
      });
    }
    const extra = model.afterStep?.(batch, ctx) ?? {};
    const ms = performance.now() - t0;
    for (const t of Object.values(extra) as Tensor[]) {
      parts.push(t.item());
      t.dispose();
    }
    let h = 0x811c9dc5;
    for (const p of params) {
      if (!p.grad) continue;
      const u = new Uint32Array(p.grad.toFloat32().buffer);
      for (let j = 0; j < u.length; j++) h = Math.imul(h ^ u[j], 16777619);
      p.grad.dispose();
      p.grad = null;
    }
    return { ms, sum: `${parts.join("/")}#${(h >>> 0).toString(16)}` };
  };
}
