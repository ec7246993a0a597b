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
 *   (Backend.rankRows), C = scored and ranked in one call where the backend fuses them
 *   (Backend.rankScores); the metrics must agree to the bit. `--mask-seen` ranks without the
 *   users' earlier items.
 *
 * - `attention`: attention's per-head products on a window step's shapes ([128, 50, 64], 2 heads),
 *   forward + backward of scores = q k^T and mix = p v, A = the permute-and-matmul composition
 *   (splitHeads, the head merge), B = op.headDots / op.headMix (heads read in place); outputs and
 *   gradients compared bit for bit; the attention softmax of those scores with a [B, 1, L, L]
 *   mask, A = scale, mask add and softmax as three ops, B = op.maskedSoftmax (one backend call
 *   forward, one backward). Then the same six GEMM calls (each over every sequence and
 *   head) on the native backend's CBLAS (one FFI call per sequence and head, A) against the wasm
 *   kernel on the same memory (one call each, B); the two kernels round differently, so the largest difference is printed.
 *
 * - `head-attention`: op.headAttention forward + backward on the native backend with 2 heads of
 *   32, a causal mask and dropout 0.3, per shape of --shapes "B:Lq:Lk,..." (default sequences of
 *   10 to 200 keys, and one query at a step over 50), A = the separate calls (headDots,
 *   maskedSoftmax, dropout, headMix: the backend's fused calls withheld), B = the op as the
 *   backend takes it (one fused call each way from the CPU's threshold, duaf_attention_min_keys,
 *   up to 256 keys); outputs and gradients compared bit for bit.
 *
 * - `window` (with --data): a whole training step in window mode (batch 128, forward + backward,
 *   no optimizer step) of --model (default sasrec, other keys by --set) on the first --batches
 *   batches, native backend, A = the transformer attention as it was composed (MultiHeadAttention
 *   patched back to permuted heads and a softmax of three passes), B = the attention as
 *   committed; alternating step by step, the sum over batches per round,
 *   and the parameters' gradients compared bit for bit. `--profile` then profiles --rounds more
 *   passes of each (warm: no first-touch page faults) and prints both category tables.
 *
 * - `model-step` (with --data): a whole training step of any model (forward + backward of
 *   model.loss and afterStep, no optimizer step) on the first --batches batches of the trainer's
 *   order (window training, batch 128 unless --set says otherwise: trainMode=prefix takes prefix
 *   examples), native backend, for each
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
 *   deno task bench ops [--what ce,kernels,step,attention,head-attention,window,model-step,vscl]
 *                       [--ab plain|exp] [--shapes B:Lq:Lk,...]
 *                       [--rounds 11]
 *                       [--old-kernels FILE] [--data DIR] [--batches 8] [--run DIR [--mask-seen]]
 *                       [--model sasrec] [--profile]
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
import { type GemmArgs, gemmArgs } from "../core/backend.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { formatCategories, formatPhase, profiled } from "../core/backends/profiling.ts";
import type { ForwardContext } from "../core/nn/context.ts";
import type { Linear } from "../core/nn/layers.ts";
import { MultiHeadAttention, ValueAttention } from "../core/nn/transformer.ts";
import { negativeDistribution } from "../core/models/negatives.ts";
import { median } from "./measure.ts";

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
    model: { type: "string", default: "sasrec" },
    profile: { type: "boolean", default: false },
    set: { type: "string", multiple: true, default: [] },
    variant: { type: "string", multiple: true, default: [] },
    base: { type: "string" },
    shapes: {
      type: "string",
      default: "2048:10:10,2048:20:20,2048:32:32,2048:50:50,512:100:100,256:200:200,2048:1:50",
    },
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
  const kept = { rankRows: backend.rankRows, rankScores: backend.rankScores };
  const ways = ["host", "rankRows", "rankScores"] as const;
  const once = (way: typeof ways[number]) => {
    for (const name of ["rankRows", "rankScores"] as const) {
      const on = name === "rankRows" ? way !== "host" : way === "rankScores";
      Object.defineProperty(backend, name, {
        value: on ? kept[name] : undefined,
        configurable: true,
        writable: true,
      });
    }
    const t0 = performance.now();
    const r = evaluateRun(run, { split: "test", ks: [10], maskSeen: values["mask-seen"]! });
    return { ms: performance.now() - t0, metrics: JSON.stringify(r.metrics) };
  };
  once("rankScores");
  const times = ways.map(() => [] as number[]);
  let same = true;
  for (let i = 0; i < rounds; i++) {
    const got = ways.map((w) => once(w));
    got.forEach((g, k) => times[k].push(g.ms));
    same &&= got.every((g) => g.metrics === got[0].metrics);
  }
  const what = `full-ranking test eval of ${values.run}` +
    `${values["mask-seen"] ? ", seen items masked" : ""} (native)${same ? "" : " METRICS DIFFER"}`;
  report(`${what}: host (A) vs rankRows (B)`, times[0], times[1]);
  report(`${what}: rankRows (A) vs rankScores (B)`, times[1], times[2]);
}

/** [B, L, h * dh] -> [B, h, L, dh], a copy: the layout the attention used to compute in. */
function splitHeads(t: Tensor, heads: number): Tensor {
  const [b, l, d] = t.shape;
  return op.transpose(op.reshape(t, [b, l, heads, d / heads]), [0, 2, 1, 3]);
}
/** [B, h, L, dh] -> [B, L, h * dh], a copy. */
function mergeHeads(t: Tensor): Tensor {
  const [b, h, l, dh] = t.shape;
  return op.reshape(op.transpose(t, [0, 2, 1, 3]), [b, l, h * dh]);
}

/** softmax(scores * scale + mask) as three ops: a scale pass, a mask pass, the softmax. */
function maskedSoftmaxA(scores: Tensor, mask: Tensor | null, scale: number): Tensor {
  const z = op.scale(scores, scale);
  return op.softmax(mask ? op.add(z, mask) : z);
}

/** Bit-for-bit equality of two float arrays (NaN payloads included). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

if (what.has("attention")) {
  const nb = await NativeBackend.open();
  if ("unavailable" in nb) throw new Error(nb.unavailable);
  const prof = profiled(nb, { sync: true });
  setBackend(prof.backend);
  const b = 128, l = 50, d = 64, heads = 2, dh = d / heads;
  const r = new Rng(4);
  const rand = (n: number) => Float32Array.from({ length: n }, () => r.normal());
  const q0 = rand(b * l * d), k0 = rand(b * l * d), v0 = rand(b * l * d), g0 = rand(b * l * d);
  const pass = (inPlace: boolean) =>
    tidy(() => {
      const [q, k, v] = [q0, k0, v0].map((x) => {
        const t = tensor(x, [b, l, d]);
        t.requiresGrad = true;
        return t;
      });
      const start = performance.now();
      const scores = inPlace
        ? op.headDots(q, k, heads)
        : op.matmul(splitHeads(q, heads), splitHeads(k, heads), false, true);
      const p = op.softmax(scores);
      const mix = inPlace ? op.headMix(p, v) : mergeHeads(op.matmul(p, splitHeads(v, heads)));
      backward(op.sum(op.mul(mix, tensor(g0, [b, l, d]))));
      const ms = performance.now() - start;
      const outs = [mix, q.grad!, k.grad!, v.grad!].map((t) => t.toFloat32());
      // Leaf gradients outlive the scope: freed here, or every round would take new memory.
      for (const t of [q, k, v]) t.grad!.dispose();
      return { ms, outs };
    });
  const a: number[] = [], bb: number[] = [];
  let same = true;
  for (let i = 0; i < rounds; i++) {
    const x = pass(false), y = pass(true);
    a.push(x.ms);
    bb.push(y.ms);
    same &&= x.outs.every((o, j) => sameBits(o, y.outs[j]));
  }
  report(
    `attention products fwd+bwd [${b}x${l}x${d}], ${heads} heads, composition vs in place (native)${
      same ? "" : " BITS DIFFER"
    }`,
    a,
    bb,
  );
  // The attention softmax of those scores with SASRec's [B, 1, L, L] mask: separate passes (A)
  // or op.maskedSoftmax's one call each way (B).
  const s0 = rand(b * heads * l * l), m0 = rand(b * l * l).map((x) => (x < -0.5 ? -10000 : 0));
  const g1 = rand(b * heads * l * l);
  const softmaxPass = (fused: boolean) =>
    tidy(() => {
      const scores = tensor(s0, [b, heads, l, l]);
      scores.requiresGrad = true;
      const mask = tensor(m0, [b, 1, l, l]);
      const start = performance.now();
      const p = (fused ? op.maskedSoftmax : maskedSoftmaxA)(scores, mask, 1 / Math.sqrt(dh));
      backward(op.sum(op.mul(p, tensor(g1, p.shape))));
      const ms = performance.now() - start;
      const outs = [p.toFloat32(), scores.grad!.toFloat32()];
      scores.grad!.dispose();
      return { ms, outs };
    });
  const sa: number[] = [], sb: number[] = [];
  let sameSoftmax = true;
  for (let i = 0; i < rounds; i++) {
    const x = softmaxPass(false), y = softmaxPass(true);
    sa.push(x.ms);
    sb.push(y.ms);
    sameSoftmax &&= x.outs.every((o, j) => sameBits(o, y.outs[j]));
  }
  report(
    `masked softmax fwd+bwd [${b}x${heads}x${l}x${l}], mask [${b}x1x${l}x${l}], scale + add + ` +
      `softmax vs one call (native)${sameSoftmax ? "" : " BITS DIFFER"}`,
    sa,
    sb,
  );
  if (values.profile) {
    for (const [name, inPlace] of [["A", false], ["B", true]] as const) {
      prof.phase(`attention ${name}`);
      for (let i = 0; i < rounds; i++) pass(inPlace);
      prof.phase("idle");
    }
    for (const p of prof.report()) if (p.phase.startsWith("attention")) console.log(formatPhase(p));
  }

  // The per-head GEMMs of one forward + backward, on CBLAS (A) or the wasm kernel (B).
  const up = (x: Float32Array) => nb.upload(x, "f32");
  const Q = up(q0), K = up(k0), V = up(v0), G = up(g0), P = up(rand(b * heads * l * l));
  const S = nb.alloc(b * heads * l * l, "f32"), C = nb.alloc(b * l * d, "f32");
  const rows = { stride: l * d, perHead: dh, ld: d };
  const sq = { stride: heads * l * l, perHead: l * l, ld: l };
  const call = (
    x: typeof Q,
    xo: typeof rows,
    y: typeof Q,
    yo: typeof rows,
    z: typeof Q,
    zo: typeof rows,
    m: number,
    n: number,
    kk: number,
    transA: boolean,
    transB: boolean,
  ): GemmArgs =>
    gemmArgs(x, y, z, m, n, kk, {
      transA,
      transB,
      batch: b,
      strideA: xo.stride,
      strideB: yo.stride,
      strideC: zo.stride,
      batch2: heads,
      strideA2: xo.perHead,
      strideB2: yo.perHead,
      strideC2: zo.perHead,
      lda: xo.ld,
      ldb: yo.ld,
      ldc: zo.ld,
    });
  const calls: GemmArgs[] = [
    call(Q, rows, K, rows, S, sq, l, l, dh, false, true), // scores
    call(P, sq, V, rows, C, rows, l, dh, l, false, false), // mix
    call(S, sq, K, rows, C, rows, l, dh, l, false, false), // dq
    call(S, sq, Q, rows, C, rows, l, dh, l, true, false), // dk
    call(G, rows, V, rows, S, sq, l, l, dh, false, true), // dp
    call(P, sq, G, rows, C, rows, l, dh, l, true, false), // dv
  ];
  const wasmGemm = WasmBackend.prototype.gemm;
  const time = (kernel: (g: GemmArgs) => void) => {
    const t0 = performance.now();
    for (const g of calls) kernel(g);
    return performance.now() - t0;
  };
  const ga: number[] = [], gb: number[] = [];
  for (let i = 0; i < rounds; i++) {
    ga.push(time((g) => nb.gemm(g)));
    gb.push(time((g) => wasmGemm.call(nb, g)));
  }
  const first = calls[0];
  const outOf = (kernel: (g: GemmArgs) => void) => {
    kernel(first);
    return nb.download(S) as Float32Array;
  };
  const x = outOf((g) => nb.gemm(g)).slice(), y = outOf((g) => wasmGemm.call(nb, g));
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff = Math.max(diff, Math.abs(x[i] - y[i]));
  report(
    `the ${calls.length} per-head GEMM calls of attention fwd+bwd, CBLAS per product vs wasm kernel` +
      ` (scores max abs diff ${diff.toExponential(1)})`,
    ga,
    gb,
  );
  // The same products on CBLAS in three layouts: A = on permuted copies (each (sequence, head)
  // matrix contiguous, one batch of B * h), B = in place, sequences outer and heads inner (what
  // headGemm runs); C = in place, heads outer (one batch of B per head).
  const contiguous = (g: GemmArgs): GemmArgs =>
    gemmArgs(g.a, g.b, g.c, g.m, g.n, g.k, {
      transA: g.transA,
      transB: g.transB,
      batch: b * heads,
      strideA: g.m * g.k,
      strideB: g.k * g.n,
      strideC: g.m * g.n,
    });
  const headsOuter = (g: GemmArgs): GemmArgs[] =>
    Array.from({ length: heads }, (_, j) => ({
      ...g,
      batch2: 1,
      aOffset: j * g.strideA2!,
      bOffset: j * g.strideB2!,
      cOffset: j * g.strideC2!,
    }));
  const layouts = [calls.map(contiguous), calls, calls.flatMap(headsOuter)];
  const lt: number[][] = [[], [], []];
  for (let i = 0; i < rounds; i++) {
    layouts.forEach((list, v) => {
      const t0 = performance.now();
      for (const g of list) nb.gemm(g);
      lt[v].push(performance.now() - t0);
    });
  }
  report(
    "attention GEMMs on CBLAS: on permuted copies (A) vs in place, heads inner (B)",
    lt[0],
    lt[1],
  );
  report("attention GEMMs on CBLAS: in place, heads outer (A) vs heads inner (B)", lt[2], lt[1]);
  nb.dispose?.();
}

if (what.has("head-attention")) {
  const nb = await NativeBackend.open();
  if ("unavailable" in nb) throw new Error(nb.unavailable);
  if (!nb.attention) throw new Error("head-attention: these C kernels fuse no attention");
  setBackend(nb);
  const d = 64, heads = 2, p = 0.3;
  for (const shape of values.shapes!.split(",")) {
    const [batch, lq, lk] = shape.split(":").map(Number);
    const r = new Rng(batch + lk);
    const fill = (n: number) => Float32Array.from({ length: n }, () => r.normal());
    const data = [fill(batch * lq * d), fill(batch * lk * d), fill(batch * lk * d)];
    const mask = Float32Array.from({ length: batch * lq * lk }, (_, e) => {
      const i = Math.floor(e / lk) % lq, j = e % lk;
      return j > i + lk - lq ? -10000 : 0;
    });
    const steps = lq === 1 ? Int32Array.from({ length: batch }, () => r.int(lk)) : undefined;
    // A withholds the backend's fused calls (own properties shadowing the methods), B keeps them.
    const run = (fused: boolean) => {
      const withheld = fused ? {} : { attention: undefined, attentionGrad: undefined };
      Object.assign(nb, withheld);
      try {
        return tidy(() => {
          const [q, k, v] = [[batch, lq, d], [batch, lk, d], [batch, lk, d]].map((sh, i) =>
            tensor(data[i], sh)
          );
          for (const t of [q, k, v]) t.requiresGrad = true;
          const t0 = performance.now();
          const y = op.headAttention(
            q,
            k,
            v,
            tensor(mask, [batch, 1, lq, lk]),
            heads,
            1 / Math.sqrt(d / heads),
            { p, seed: 3, training: true, steps },
          );
          backward(op.sum(y));
          const ms = performance.now() - t0;
          const out = [y, q.grad!, k.grad!, v.grad!].map((t) => t.toFloat32());
          for (const t of [q, k, v]) t.grad!.dispose();
          return { ms, out };
        });
      } finally {
        for (const key of Object.keys(withheld)) {
          delete (nb as unknown as Record<string, unknown>)[key];
        }
      }
    };
    run(true);
    const a: number[] = [], b: number[] = [];
    let same = true;
    for (let i = 0; i < rounds; i++) {
      const x = run(false), y = run(true);
      a.push(x.ms);
      b.push(y.ms);
      same &&= x.out.every((t, j) => sameBits(t, y.out[j]));
    }
    report(
      `headAttention [${batch} x ${lq} x ${lk}], fwd+bwd${
        same ? " (same bits)" : " OUTPUTS DIFFER"
      }`,
      a,
      b,
    );
  }
  nb.dispose?.();
}

if (what.has("window")) {
  if (!values.data) throw new Error("--what window needs --data DIR (a preprocessed dataset)");
  const nb = await NativeBackend.open();
  if ("unavailable" in nb) throw new Error(nb.unavailable);
  const prof = profiled(nb, { sync: true });
  setBackend(prof.backend);
  const cfg = resolveConfig(null, [
    `model=${values.model}`,
    "trainMode=window",
    "batchSize=128",
    ...values.set,
  ]);
  const ds = await loadDataset(values.data);
  const model = createModel(cfg, itemSide(ds), new Rng(cfg.seed), () => {});
  model.train();
  const ex = windowExamples(ds);
  const order = bucketedOrder(ex, cfg.maxLen, cfg.batchSize, new Rng(0));
  const origin = timestampOrigin(ds);
  const negatives = negativeDistribution(cfg, ds);
  const nBatches = Math.min(Number(values.batches), Math.ceil(ex.users.length / cfg.batchSize));
  const batches = Array.from({ length: nBatches }, (_, i) => {
    const start = i * cfg.batchSize;
    const end = Math.min(ex.users.length, start + cfg.batchSize);
    return makeBatch(ds, ex, order, start, end, cfg.maxLen, origin, new Rng(i), true);
  });
  const params = model.parameters();

  // Variant A: the attention as it was, heads permuted to [B, h, L, dh] and back.
  const drop = (x: Tensor, p: number, ctx: ForwardContext) =>
    op.dropout(x, p, ctx.rng.nextU32(), ctx.training);
  const scoresA = (q: Linear, k: Linear, x: Tensor, heads: number, memory: Tensor = x) =>
    op.matmul(splitHeads(q.forward(x), heads), splitHeads(k.forward(memory), heads), false, true);
  type Attend = (
    scores: Tensor,
    x: Tensor,
    mask: Tensor,
    ctx: ForwardContext,
    memory?: Tensor,
  ) => Tensor;
  const attendA = function (
    this: ValueAttention,
    scores: Tensor,
    x: Tensor,
    mask: Tensor,
    ctx: ForwardContext,
    memory: Tensor = x,
  ): Tensor {
    const heads = this.cfg.heads;
    const probs = drop(
      maskedSoftmaxA(scores, mask, 1 / Math.sqrt(x.shape[2] / heads)),
      this.cfg.attnDropout,
      ctx,
    );
    const v = splitHeads(this.value.forward(memory), heads);
    const out = drop(
      this.dense.forward(mergeHeads(op.matmul(probs, v))),
      this.cfg.hiddenDropout,
      ctx,
    );
    return this.norm.forward(op.add(out, x));
  };
  const proto = ValueAttention.prototype as unknown as { attend: Attend };
  const mha = MultiHeadAttention.prototype;
  const saved = { attend: proto.attend, forward: mha.forward, forwardQueries: mha.forwardQueries };
  const useA = (a: boolean) => {
    proto.attend = a ? attendA : saved.attend;
    mha.forward = a
      ? function (this: MultiHeadAttention, x, mask, ctx, scoresFrom = x) {
        const s = scoresA(this.query, this.key, scoresFrom, this.cfg.heads);
        return (this as unknown as { attend: Attend }).attend(s, x, mask, ctx);
      }
      : saved.forward;
    mha.forwardQueries = a
      ? function (this: MultiHeadAttention, queries, memory, mask, ctx) {
        const s = scoresA(this.query, this.key, queries, this.cfg.heads, memory);
        return (this as unknown as { attend: Attend }).attend(s, queries, mask, ctx, memory);
      }
      : saved.forwardQueries;
  };
  const stepOnce = (a: boolean, batch: (typeof batches)[number], keep = true) => {
    useA(a);
    const t0 = performance.now();
    const ctx = { training: true, rng: new Rng(1), negatives };
    tidy(() => {
      const out = model.loss(batch, ctx);
      backward(out.total, undefined, { release: true });
    });
    const ms = performance.now() - t0;
    const grads = keep ? params.map((p) => p.grad?.toFloat32() ?? new Float32Array(0)) : [];
    for (const p of params) {
      p.grad?.dispose();
      p.grad = null;
    }
    return { ms, grads };
  };
  stepOnce(false, batches[0]); // first touch of the arena's memory
  const a: number[] = [], bb: number[] = [];
  let same = true;
  for (let r = 0; r < rounds; r++) {
    let sa = 0, sb = 0;
    for (const batch of batches) {
      const x = stepOnce(true, batch), y = stepOnce(false, batch);
      sa += x.ms;
      sb += y.ms;
      same &&= x.grads.every((g, i) => sameBits(g, y.grads[i]));
    }
    a.push(sa);
    bb.push(sb);
  }
  report(
    `${values.model} window step fwd+bwd, ${nBatches} batches of 128 (native), attention as composed` +
      ` before vs now${same ? "" : " GRADIENTS DIFFER"}`,
    a,
    bb,
  );
  if (values.profile) {
    for (const [name, variant] of [["A", true], ["B", false]] as const) {
      prof.phase(`profile ${name}`);
      for (let r = 0; r < rounds; r++) for (const batch of batches) stepOnce(variant, batch, false);
      prof.phase("idle");
    }
    for (const p of prof.report()) {
      if (p.phase.startsWith("profile")) {
        console.log(`${formatPhase(p, 20)}\n${formatCategories(p)}`);
      }
    }
  }
  useA(false);
  nb.dispose?.();
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
  const window = cfg.trainMode === "window";
  const ex = window ? E.windowExamples(ds) : E.splitExamples(ds, "train");
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
      window,
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
