/**
 * Training and evaluation against large item catalogs, in two modes.
 *
 * Synthetic (the default): one SASRec training step on random histories over the catalog, CE over
 * all items on its materialised logits ("plain") against CE in item blocks
 * (op.linearCrossEntropy, "chunked") and the sampled losses ("gbce", "sampled", over --negatives
 * uniform negatives per position): seconds per step and the wasm arena's peak bytes in use during
 * a step. The default model config (d = 64, 2 layers); one micro-batch of --rows sequences.
 *
 *   deno task bench scale [--items 12000,120000] [--rows 2048] [--len 20] [--steps 3]
 *                         [--backend native|wasm] [--threads 1|2] [--ce-only]
 *                         [--paths plain,chunked,gbce,sampled] [--negatives 256]
 *
 * --ce-only times the loss alone (forward and backward of the CE over the item table, from random
 * sequence outputs [rows, 64]), without the encoder's share of the step.
 *
 * Real data (--replicas and/or --zipf): Amazon Beauty 2014 replicated xK (ids suffixed, so users
 * and items scale by K) and a synthetic Zipf catalog, built once under --cache (scale_data.ts).
 * Per catalog, each in a child process whose peak RSS (VmHWM) is its own:
 *   - `duaf preprocess` with each --engines engine: wall seconds, peak RSS, and whether both
 *     engines wrote byte-identical dataset folders;
 *   - SASRec training through runTraining (what `duaf train` runs) on the built-in engine's
 *     dataset, per --losses entry: seconds per step (median and slowest of --train-steps steps
 *     after one warm-up step), peak RSS and the arena's peak when the last step ends (before any
 *     evaluation), the item table's value, gradient and two Adam moments, and the peak minus them;
 *   - full-ranking evaluation of the test split (every item scored) for the first --eval-users
 *     users (0: all) with a freshly initialised SASRec: users per second and peak RSS.
 *
 *   deno task bench scale --replicas 1,10 [--zipf] [--zipf-items 1000000]
 *                         [--zipf-interactions 5000000] [--zipf-exponent 1] [--zipf-mean-length 10]
 *                         [--data ../shared/data/amazon-beauty-2014] [--cache runs/scale-data]
 *                         [--engines builtin,duckdb] [--losses ce,gbce,sampled] [--train-steps 3]
 *                         [--eval-users 10000] [--set KEY=VALUE ...] [--backend NAME]
 *                         [--record docs/benchmarks.md]
 *
 * --losses: ce (ceChunkItems auto), ce-plain (0), ce-chunked (blocks within 32 MiB), gbce,
 * sampled, and gbce-shared / sampled-shared (negativeSharing=batch). --set passes training config keys (e.g. negatives=128). --record appends the tables to
 * the "## scale" section of the file.
 *
 * Each (catalog, path) runs in a child process of its own, so every peak starts from a clean
 * arena and an out-of-memory failure ends only that case (it is reported as such).
 */
import { cpuModel, runChildJson } from "./measure.ts";
import { parseArgs } from "node:util";
import os from "node:os";
import { join } from "node:path";
import { NativeBackend } from "../core/backends/native.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { TrainConfigSchema } from "../core/config.ts";
import { lossPositions, type SequenceBatch } from "../core/models/batch.ts";
import { negativeSampler, nextItemLoss, Sasrec } from "../core/models/sasrec.ts";
import { budgetBlockItems } from "../core/ops/linear_ce.ts";
import { Adam } from "../core/optim/adam.ts";
import { Rng } from "../core/random.ts";
import { backward, setBackend, tensor, tidy } from "../core/tensor.ts";
import { resolveConfig } from "../core/config.ts";
import { loadDataset } from "../core/data/dataset.ts";
import { evaluate } from "../core/eval/evaluate.ts";
import { ceBlockItems } from "../core/ops/linear_ce.ts";
import { createModel } from "../core/models/registry.ts";
import type { Progress } from "../core/progress.ts";
import { activateBackend, itemSide, runTraining } from "../core/train/run.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { replicatedBeauty, type ScaleInput, ZIPF_DEFAULTS, zipfCatalog } from "./scale_data.ts";

const ROOT = join(import.meta.dirname!, "..");

const { values } = parseArgs({
  args: Deno.args,
  options: {
    items: { type: "string", default: "12000,120000" },
    rows: { type: "string", default: "2048" },
    len: { type: "string", default: "20" },
    steps: { type: "string", default: "3" },
    backend: { type: "string", default: "native" },
    threads: { type: "string", default: "1" },
    "ce-only": { type: "boolean", default: false },
    paths: { type: "string", default: "plain,chunked,gbce" },
    negatives: { type: "string", default: "256" },
    one: { type: "string" },
    // Real-data mode.
    replicas: { type: "string" },
    zipf: { type: "boolean", default: false },
    "zipf-items": { type: "string", default: String(ZIPF_DEFAULTS.items) },
    "zipf-interactions": { type: "string", default: String(ZIPF_DEFAULTS.interactions) },
    "zipf-exponent": { type: "string", default: String(ZIPF_DEFAULTS.exponent) },
    "zipf-mean-length": { type: "string", default: String(ZIPF_DEFAULTS.meanLength) },
    data: { type: "string", default: join(ROOT, "../shared/data/amazon-beauty-2014") },
    cache: { type: "string", default: join(ROOT, "runs/scale-data") },
    engines: { type: "string", default: "builtin,duckdb" },
    losses: { type: "string", default: "ce,gbce,sampled" },
    "train-steps": { type: "string", default: "3" },
    "eval-users": { type: "string", default: "10000" },
    set: { type: "string", multiple: true, default: [] },
    record: { type: "string" },
    "child-train": { type: "string" },
    "child-eval": { type: "string" },
  },
});
const rows = Number(values.rows);
const len = Number(values.len);
const steps = Number(values.steps);
const threads = Number(values.threads) as 1 | 2;

function syntheticBatch(rng: Rng, numItems: number): SequenceBatch {
  const items = new Int32Array(rows * len);
  const lengths = new Int32Array(rows);
  const targets = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    lengths[r] = 1 + rng.int(len);
    for (let i = 0; i < lengths[r]; i++) items[r * len + i] = 1 + rng.int(numItems);
    targets[r] = 1 + rng.int(numItems);
  }
  return {
    size: rows,
    len,
    items,
    lengths,
    times: new Float32Array(rows * len),
    users: Int32Array.from({ length: rows }, (_, i) => i),
    targets,
  };
}

/** Child: one catalog size and one CE path; prints one JSON line. */
async function runOne(numItems: number, path: string): Promise<void> {
  const chunked = path === "chunked";
  const loss = path === "gbce" || path === "sampled" ? path : "ce";
  const be = values.backend === "wasm"
    ? await WasmBackend.create({ threads })
    : await NativeBackend.open({ threads });
  if ("unavailable" in be) throw new Error(be.unavailable);
  setBackend(be);
  // Chunked: the block "auto" takes above its plain limit, here at every catalog size.
  const block = chunked ? budgetBlockItems(rows, numItems + 1) : 0;
  const cfg = TrainConfigSchema.parse({
    ceChunkItems: block,
    loss,
    negatives: Number(values.negatives),
  });
  const rng = new Rng(1);
  const model = new Sasrec({ ...cfg, numItems, maxLen: len }, rng);
  const opt = new Adam(model.parameters(), { lr: 1e-3, weightDecay: 0 });
  const batch = syntheticBatch(rng, numItems);
  const ctx = { training: true, rng };
  const h = tensor(Float32Array.from({ length: rows * cfg.hidden }, () => rng.normal()), [
    rows,
    cfg.hidden,
  ]);
  h.requiresGrad = true;
  const lossOf = values["ce-only"]
    ? () =>
      nextItemLoss(
        h,
        model.itemEmbedding.weight,
        lossPositions(batch),
        cfg.loss,
        cfg.ceChunkItems,
        negativeSampler(cfg, ctx),
      )
    : () => model.loss(batch, ctx).total;
  const times: number[] = [];
  let peak = 0;
  for (let s = 0; s <= steps; s++) {
    be.resetPeak();
    const t0 = performance.now();
    tidy(() => {
      backward(lossOf(), undefined, { release: true });
    });
    tidy(() => {
      opt.step();
      opt.zeroGrad();
    });
    h.grad?.dispose();
    h.grad = null;
    be.sync();
    if (s > 0) times.push((performance.now() - t0) / 1000); // step 0 warms up
    peak = Math.max(peak, be.memoryStats().peak);
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ ok: true, seconds: times[times.length >> 1], peak, block }));
}

// ---------------------------------------------------------------------------------------------
// Real-data mode.

const MiB = 2 ** 20;

/** Peak resident set of this process (VmHWM), in bytes. */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Resident set of this process now (VmRSS), in bytes. */
function rss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Config overrides of one --losses entry. */
function lossSettings(loss: string): string[] {
  switch (loss) {
    case "ce":
      return ["loss=ce", "ceChunkItems=auto"];
    case "ce-plain":
      return ["loss=ce", "ceChunkItems=0"];
    case "ce-chunked":
      return ["loss=ce", `ceChunkItems=${budgetBlockItems(2048, 1 << 30)}`];
    case "gbce":
    case "sampled":
      return [`loss=${loss}`];
    case "gbce-shared":
    case "sampled-shared":
      return [`loss=${loss.split("-")[0]}`, "negativeSharing=batch"];
    default:
      throw new Error(
        `--losses: unknown '${loss}' (ce, ce-plain, ce-chunked, gbce, sampled, gbce-shared, ` +
          `sampled-shared)`,
      );
  }
}

function childConfig(loss: string, steps: number) {
  return resolveConfig(null, [
    "model=sasrec",
    ...lossSettings(loss),
    "epochs=1",
    `maxSteps=${steps}`,
    ...values.set!,
  ]);
}

interface TrainResult {
  ok: true;
  items: number;
  users: number;
  block: number;
  stepSeconds: number[];
  /** Resident set when the first step starts: runtime, dataset, model. */
  startRss: number;
  peakRss: number;
  arenaPeak: number | null;
  itemTableBytes: number;
}

/**
 * Child: trains through runTraining and leaves the process when the last timed step ends, before
 * the epoch's validation, so the peak is the training steps' own.
 */
async function childTrain(dataset: string, loss: string): Promise<void> {
  const steps = Number(values["train-steps"]) + 1; // the first one warms up
  const { backend } = await activateBackend(values.backend);
  const config = childConfig(loss, steps);
  // Counts from the manifest: a second loaded copy of the dataset would count in the peak.
  const { counts } = JSON.parse(await Deno.readTextFile(join(dataset, "manifest.json")));
  const items: number = counts.items;
  const users: number = counts.users;
  const ticks: number[] = [];
  let startRss = NaN;
  const out = await Deno.makeTempDir({ prefix: "duaf-bench-scale-" });
  const progress: Progress = {
    log: (m) => console.error(m),
    start(label) {
      const t0 = performance.now();
      if (label === "epoch 1") {
        ticks.push(t0);
        startRss = rss();
      }
      return {
        tick() {
          if (label !== "epoch 1") return;
          ticks.push(performance.now());
          if (ticks.length <= steps) return;
          const stepSeconds = ticks.slice(2).map((t, i) => (t - ticks[i + 1]) / 1000);
          const result: TrainResult = {
            ok: true,
            items,
            users,
            block: ceBlockItems(config.batchSize, items + 1, config.ceChunkItems),
            stepSeconds,
            startRss,
            peakRss: peakRss(),
            arenaPeak: backend.memoryStats?.().peak ?? null,
            // Value, gradient and Adam's two moments of the [items + 1, d] table.
            itemTableBytes: 4 * 4 * (items + 1) * config.hidden,
          };
          console.log(JSON.stringify(result));
          Deno.removeSync(out, { recursive: true });
          Deno.exit(0);
        },
        done() {},
      };
    },
  };
  await runTraining({
    dataset,
    out: join(out, "run"),
    config,
    progress,
    backendName: backend.name,
  });
  throw new Error(`the epoch ended before ${steps} steps (a smaller --train-steps)`);
}

interface EvalResult {
  ok: true;
  users: number;
  seconds: number;
  /** Resident set when the evaluation starts: runtime, dataset, model. */
  startRss: number;
  peakRss: number;
  arenaPeak: number | null;
}

/** Child: full-ranking evaluation of the test split for the first --eval-users users. */
async function childEval(dataset: string): Promise<void> {
  const { backend } = await activateBackend(values.backend);
  const config = childConfig("ce", 0);
  const ds = await loadDataset(dataset);
  const model = createModel(config, itemSide(ds), new Rng(config.seed), () => {});
  const limit = Number(values["eval-users"]);
  const n = limit > 0 ? Math.min(limit, ds.numUsers) : ds.numUsers;
  // The first n users' histories: the same arrays, fewer offsets.
  const src = {
    numUsers: n,
    numItems: ds.numItems,
    seqOffsets: ds.seqOffsets.subarray(0, n + 1),
    seqItems: ds.seqItems,
    seqTimes: ds.seqTimes,
  };
  const startRss = rss();
  const t0 = performance.now();
  const r = evaluate(model, src, {
    split: "test",
    ks: config.validKs,
    maskSeen: false,
    batchSize: config.evalBatchSize,
    maxLen: config.maxLen,
    origin: 0,
  });
  const result: EvalResult = {
    ok: true,
    users: r.users,
    seconds: (performance.now() - t0) / 1000,
    startRss,
    peakRss: peakRss(),
    arenaPeak: backend.memoryStats?.().peak ?? null,
  };
  console.log(JSON.stringify(result));
}

type Failed = { ok: false; error: string };

interface PreprocessRow {
  engine: string;
  wall: number;
  seconds?: number;
  peakRss?: number;
  counts?: { users: number; items: number; interactions: number };
  error?: string;
}

async function preprocess(input: ScaleInput, engine: string, out: string) {
  const args = [
    join(ROOT, "tools/bench_preprocess.ts"),
    "--child",
    "preprocess",
    "--format=amazon2014",
    `--reviews=${input.reviews}`,
    ...(input.meta ? [`--meta=${input.meta}`] : []),
    ...input.preprocessArgs,
    `--engine=${engine}`,
    `--out=${out}`,
    // The name is in the manifest; both engines' folders must carry the same one.
    `--name=${input.name}`,
    "--force",
    "--quiet",
  ];
  const t0 = performance.now();
  const proc = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const wall = (performance.now() - t0) / 1000;
  const stderr = new TextDecoder().decode(proc.stderr);
  if (!proc.success) {
    const first = /^duaf \w+: (.+)$/m.exec(stderr)?.[1] ?? stderr.trim().split("\n").pop();
    return { engine, wall, error: `exit ${proc.code}: ${first}` };
  }
  const s = JSON.parse(new TextDecoder().decode(proc.stdout));
  const kib = Number(/peak-rss-kib (\d+)/.exec(stderr)?.[1]);
  return {
    engine,
    wall,
    seconds: s.seconds,
    peakRss: kib * 1024,
    counts: { users: s.users, items: s.items, interactions: s.interactions },
  } satisfies PreprocessRow;
}

/** Whether two files hold the same bytes, read in 1 MiB pieces. */
async function sameFile(a: string, b: string): Promise<boolean> {
  const [fa, fb] = [await Deno.open(a), await Deno.open(b)];
  try {
    if ((await fa.stat()).size !== (await fb.stat()).size) return false;
    const [ba, bb] = [new Uint8Array(MiB), new Uint8Array(MiB)];
    for (;;) {
      const na = await readFull(fa, ba);
      const nb = await readFull(fb, bb);
      if (na !== nb) return false;
      for (let i = 0; i < na; i++) if (ba[i] !== bb[i]) return false;
      if (na < MiB) return true;
    }
  } finally {
    fa.close();
    fb.close();
  }
}

async function readFull(f: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let n = 0;
  while (n < buf.length) {
    const r = await f.read(buf.subarray(n));
    if (r === null) break;
    n += r;
  }
  return n;
}

/** Whether two dataset folders hold the same files with the same bytes. */
export async function sameTree(a: string, b: string): Promise<boolean> {
  const list = async (dir: string, rel = ""): Promise<string[]> => {
    const names: string[] = [];
    for await (const e of Deno.readDir(join(dir, rel))) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) names.push(...await list(dir, p));
      else names.push(p);
    }
    return names.sort();
  };
  const [la, lb] = [await list(a), await list(b)];
  if (la.join("\n") !== lb.join("\n")) return false;
  for (const f of la) if (!await sameFile(join(a, f), join(b, f))) return false;
  return true;
}

const mib = (bytes: number | null | undefined) =>
  bytes === null || bytes === undefined || !Number.isFinite(bytes) ? "-" : (bytes / MiB).toFixed(0);
const count = (n: number) => n.toLocaleString("en-US");

async function realMain(): Promise<void> {
  const cache = values.cache!;
  const started = new Date();
  const loadBefore = os.loadavg().map((l) => l.toFixed(2)).join(" ");
  const inputs: ScaleInput[] = [];
  for (const k of (values.replicas ?? "").split(",").filter(Boolean).map(Number)) {
    if (!Number.isInteger(k) || k < 1) throw new Error("--replicas takes whole numbers >= 1");
    console.error(`[bench scale] building Beauty x${k} under ${cache}`);
    inputs.push(await replicatedBeauty(values.data!, k, cache));
  }
  if (values.zipf) {
    const opts = {
      items: Number(values["zipf-items"]),
      interactions: Number(values["zipf-interactions"]),
      exponent: Number(values["zipf-exponent"]),
      meanLength: Number(values["zipf-mean-length"]),
      seed: 0,
    };
    console.error(`[bench scale] building the Zipf catalog of ${opts.items} items under ${cache}`);
    inputs.push(await zipfCatalog(opts, cache));
  }
  const engines = values.engines!.split(",").filter(Boolean);
  const losses = values.losses!.split(",").filter(Boolean);
  losses.forEach(lossSettings); // names checked before the long part
  const self = new URL(import.meta.url).pathname;
  const common = [
    ...(values.backend ? ["--backend", values.backend] : []),
    ...values.set!.flatMap((s) => ["--set", s]),
    "--train-steps",
    values["train-steps"]!,
    "--eval-users",
    values["eval-users"]!,
  ];
  const pre: string[] = [];
  const train: string[] = [];
  const trained = new Map<string, TrainResult | Failed>();
  const evals = new Map<string, EvalResult | Failed>();
  const ev: string[] = [];
  for (const input of inputs) {
    const dirs = new Map<string, string>();
    const rows: PreprocessRow[] = [];
    for (const engine of engines) {
      const out = join(input.dir, `dataset-${engine}`);
      console.error(`[bench scale] ${input.name}: preprocess --engine ${engine}`);
      const r = await preprocess(input, engine, out);
      rows.push(r);
      if (!r.error) dirs.set(engine, out);
    }
    const outs = [...dirs.values()];
    let same = "-";
    if (outs.length > 1) {
      let all = true;
      for (const o of outs.slice(1)) all &&= await sameTree(outs[0], o);
      same = all ? "yes" : "NO";
    }
    for (const r of rows) {
      const c = r.counts;
      pre.push(
        r.error
          ? `| ${input.name} | ${r.engine} | failed: ${r.error} | | | | | | |`
          : `| ${input.name} | ${count(c!.users)} | ${count(c!.items)} | ${
            count(c!.interactions)
          } | ${r.engine} | ${r.wall.toFixed(1)} | ${r.seconds!.toFixed(1)} | ${
            mib(r.peakRss)
          } | ${same} |`,
      );
    }
    const dataset = dirs.get("builtin") ?? outs[0];
    if (!dataset) continue;
    for (const loss of losses) {
      console.error(`[bench scale] ${input.name}: training, ${loss}`);
      const { r } = await runChildJson<TrainResult>([
        self,
        ...common,
        "--child-train",
        `${dataset}:${loss}`,
      ]);
      trained.set(`${input.name}:${loss}`, r);
      if (!r.ok) {
        train.push(`| ${input.name} | | ${loss} | failed: ${r.error} | | | | | | |`);
        continue;
      }
      const s = [...r.stepSeconds].sort((a, b) => a - b);
      const label = loss.startsWith("ce")
        ? `${loss} (${r.block ? `blocks of ${r.block}` : "plain logits"})`
        : loss;
      train.push(
        `| ${input.name} | ${count(r.items)} | ${label} | ${s[s.length >> 1].toFixed(2)} | ${
          s[s.length - 1].toFixed(2)
        } | ${mib(r.startRss)} | ${mib(r.peakRss)} | ${mib(r.arenaPeak)} | ${
          mib(r.itemTableBytes)
        } | ${mib(r.peakRss - r.itemTableBytes)} |`,
      );
    }
    console.error(`[bench scale] ${input.name}: evaluation`);
    const { r } = await runChildJson<EvalResult>([self, ...common, "--child-eval", dataset]);
    evals.set(input.name, r);
    ev.push(
      r.ok
        ? `| ${input.name} | ${count(r.users)} | ${r.seconds.toFixed(1)} | ${
          (r.users / r.seconds).toFixed(0)
        } | ${mib(r.startRss)} | ${mib(r.peakRss)} | ${mib(r.arenaPeak)} |`
        : `| ${input.name} | failed: ${r.error} | | | | | |`,
    );
  }
  const cfg = childConfig("ce", 0);
  const { backend } = await activateBackend(values.backend);
  const text = [
    `### Real catalogs, ${started.toISOString().slice(0, 16).replace("T", " ")} UTC`,
    "",
    `${cpuModel()}, ${navigator.hardwareConcurrency} cores, deno ${Deno.version.deno}, backend ` +
    `${backend.name}; load average ${loadBefore} before, ${
      os.loadavg().map((l) => l.toFixed(2)).join(" ")
    } after (the machine is shared).`,
    "",
    `\`deno task bench scale ${Deno.args.join(" ")}\``,
    "",
    "Preprocess (`duaf preprocess --format amazon2014`, a child process per engine; wall = " +
    "process start to exit, preprocess s = its own timer; same = both engines wrote " +
    "byte-identical folders):",
    "",
    "| data | users | items | interactions | engine | wall s | preprocess s | peak RSS MiB | same |",
    "|---|---|---|---|---|---|---|---|---|",
    ...pre,
    "",
    `One SASRec training step (runTraining, d = ${cfg.hidden}, ${cfg.layers} layers, batch ` +
    `${cfg.batchSize}, max length ${cfg.maxLen}, prefix training; median and slowest of ` +
    `${values["train-steps"]} steps after a warm-up step; RSS before = resident when the first ` +
    "step starts (runtime, dataset, model); peak RSS and arena peak when the last step ends; " +
    "item table = the [items + 1, d] table's value, gradient and two Adam moments):",
    "",
    "| data | items | loss | s / step | slowest s | RSS before MiB | peak RSS MiB | " +
    "arena peak MiB | item table MiB | peak RSS - table MiB |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...train,
    "",
    `Full-ranking evaluation of the test split (every item scored, evalBatchSize ` +
    `${cfg.evalBatchSize}), the first ${
      Number(values["eval-users"]) > 0 ? values["eval-users"] : "(all)"
    } users, a freshly initialised SASRec:`,
    "",
    "| data | users | seconds | users / s | RSS before MiB | peak RSS MiB | arena peak MiB |",
    "|---|---|---|---|---|---|---|",
    ...ev,
    "",
    "| target | measured | result |",
    "|---|---|---|",
    ...targetRows(inputs.map((i) => i.name), losses, trained, evals),
    "",
  ].join("\n");
  console.log(text);
  if (values.record) await recordScale(values.record, text);
}

/** The issue's targets, against what this run measured. */
function targetRows(
  names: string[],
  losses: string[],
  trained: Map<string, TrainResult | Failed>,
  evals: Map<string, EvalResult | Failed>,
): string[] {
  const rows: string[] = [];
  const ce = trained.get("beauty-x10:ce");
  rows.push(
    `| Beauty x10 trains with full CE within 4 GiB peak RSS | ${
      !ce ? "not run" : ce.ok ? `${mib(ce.peakRss)} MiB` : `failed: ${ce.error}`
    } | ${!ce ? "-" : ce.ok && ce.peakRss <= 4 * 2 ** 30 ? "pass" : "FAIL"} |`,
  );
  const g = trained.get("beauty-x100:gbce");
  const e = evals.get("beauty-x100");
  rows.push(
    `| Beauty x100 (1.2M items) trains with gbce and evaluates on this machine | ${
      !g || !e ? "not run" : [
        g.ok ? `gbce step ${mib(g.peakRss)} MiB` : `gbce failed: ${g.error}`,
        e.ok
          ? `eval ${(e.users / e.seconds).toFixed(0)} users/s, ${mib(e.peakRss)} MiB`
          : `eval failed: ${e.error}`,
      ].join("; ")
    } | ${!g || !e ? "-" : g.ok && e.ok ? "pass" : "FAIL"} |`,
  );
  // Flat: the smallest against the largest replication that trained, per loss.
  const beauty = names.filter((n) => n.startsWith("beauty-x"));
  for (const loss of losses) {
    const ok = beauty.map((n) => [n, trained.get(`${n}:${loss}`)] as const)
      .filter((x): x is readonly [string, TrainResult] => x[1]?.ok === true);
    if (ok.length < 2) continue;
    const [[a, ra], [b, rb]] = [ok[0], ok[ok.length - 1]];
    const less = (r: TrainResult) => r.peakRss - r.itemTableBytes;
    const own = (r: TrainResult) => r.peakRss - r.startRss;
    rows.push(
      `| ${loss} step's peak RSS minus the item table flat, ${a} to ${b} | ${mib(less(ra))} to ${
        mib(less(rb))
      } MiB (x${(less(rb) / less(ra)).toFixed(2)}); peak minus RSS before the step ${
        mib(own(ra))
      } to ${mib(own(rb))} MiB | - |`,
    );
  }
  return rows;
}

/** Appends `text` at the end of the file's "## scale" section (the section is made if absent). */
async function recordScale(file: string, text: string): Promise<void> {
  let doc = "";
  try {
    doc = await Deno.readTextFile(file);
  } catch {
    doc = "# Benchmarks\n";
  }
  const start = doc.search(/^## scale\s*$/m);
  if (start < 0) doc = `${doc.trimEnd()}\n\n## scale\n\n${text}`;
  else {
    const rest = doc.slice(start + 1);
    const next = rest.search(/^## /m);
    const end = next < 0 ? doc.length : start + 1 + next;
    doc = `${doc.slice(0, end).trimEnd()}\n\n${text.trimEnd()}\n${
      end < doc.length ? "\n" + doc.slice(end) : ""
    }`;
  }
  await writeFileAtomic(file, doc.trimEnd() + "\n");
  console.error(`[bench scale] recorded in ${file}`);
}

async function main(): Promise<void> {
  if (values["child-train"]) {
    const at = values["child-train"].lastIndexOf(":");
    return await childTrain(
      values["child-train"].slice(0, at),
      values["child-train"].slice(at + 1),
    );
  }
  if (values["child-eval"]) return await childEval(values["child-eval"]);
  if (values.replicas || values.zipf) return await realMain();
  if (values.one) {
    const [n, path] = values.one.split(":");
    try {
      await runOne(Number(n), path);
    } catch (e) {
      console.log(JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) }));
    }
    return;
  }
  const sizes = values.items!.split(",").map(Number);
  console.log(
    `${values["ce-only"] ? "CE alone, forward + backward" : "SASRec step"} (d=64, 2 layers), ` +
      `${rows} sequences x ${len}, backend ${values.backend}, ` +
      `${threads} thread(s), median of ${steps} steps after one warm-up`,
  );
  console.log("| items | loss | seconds / step | peak arena MiB | plain logits MiB |");
  console.log("|---|---|---|---|---|");
  // Blocks of budgetBlockItems(rows, items): a [rows x B] scratch within 32 MiB.
  for (const n of sizes) {
    for (const path of values.paths!.split(",")) {
      const args = [
        "run",
        "-A",
        "--v8-flags=--no-liftoff",
        new URL(import.meta.url).pathname,
        ...Deno.args,
        "--one",
        `${n}:${path}`,
      ];
      const out = await new Deno.Command(Deno.execPath(), { args, stderr: "inherit" }).output();
      const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "{}";
      const r = JSON.parse(line) as {
        ok: boolean;
        seconds?: number;
        peak?: number;
        block?: number;
        error?: string;
      };
      const logits = (rows * (n + 1) * 4 / 2 ** 20).toFixed(0);
      console.log(
        r.ok
          ? `| ${n} | ${path}${r.block ? ` (blocks of ${r.block})` : ""}${
            path === "gbce" || path === "sampled" ? ` (${values.negatives} negatives)` : ""
          } | ${r.seconds!.toFixed(2)} | ${(r.peak! / 2 ** 20).toFixed(0)} | ${logits} |`
          : `| ${n} | ${path} | failed: ${r.error} | | ${logits} |`,
      );
    }
  }
}

await main();
// The wasm backend's kernel thread would keep the process alive.
Deno.exit(0);
