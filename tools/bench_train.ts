/**
 * Training speed on Amazon Beauty 2014 (d=64, max length 50, batch 2048): seconds per epoch and
 * peak RSS of our SASRec and DuAF-MAT, and their full-ranking evaluation over all users, beside
 * RecBole-default PyTorch SASRec (tools/torch/sasrec_train.py) run in the same invocation. Each
 * system trains in its own process (tools/train_bench/child.ts; peak RSS is each process's own
 * VmHWM / ru_maxrss). Each epoch is also shown as a multiple of its FLOP floor: the analytic FLOPs
 * of an epoch (core/bench/flops.ts) at the sgemm rate the active backend reaches in this
 * run on a [2048x64]@[64x256] product.
 *
 *   deno task bench train [--steps N] [--rounds 1] [--models sasrec,duafmat] [--backend NAME]
 *                         [--threads 2] [--data DIR] [--no-torch] [--record docs/benchmarks.md]
 *                         [--ce-products fp32|bf16]
 *
 * --steps N times N steps per system and extrapolates the epoch from the mean step time after the
 * first (labelled "extrapolated"); the default is a full epoch. --rounds N runs each of our systems
 * N times, alternating them, and reports each one's median epoch and evaluation with their ranges
 * (peak RSS: the largest), so that a shared machine's noise between runs (10% here) does not decide
 * a target; PyTorch runs once. --record replaces the "## train" section of the given markdown file
 * with the tables printed here. --ce-products bf16 trains our systems with ceProducts=bf16 (the
 * loss's products on bf16 operands); their floors stay float32's.
 */
import { cpuModel, median, runChildJson } from "./measure.ts";
import { parseArgs } from "node:util";
import os from "node:os";
import { join } from "node:path";
import { resolveConfig } from "../core/config.ts";
import { type Dataset, loadDataset } from "../core/data/dataset.ts";
import { writeFileAtomic } from "../core/io/atomic.ts";
import { splitExamples } from "../core/models/examples.ts";
import { activateBackend } from "../core/train/run.ts";
import type { ChildResult } from "./train_bench/child.ts";
import { configFlops, lengthStats, paddedLengths, sasrecEpochFlops } from "../core/bench/flops.ts";
import { measureGemm } from "../core/bench/gemm_rate.ts";
import { runTorchSasrec } from "./train_bench/torch.ts";

const ROOT = join(import.meta.dirname!, "..");
const CHILD = join(ROOT, "tools/train_bench/child.ts");
const RSS_LIMIT_MIB = 1536;
const SHAPE = { hidden: 64, maxLen: 50, batch: 2048 };

function log(msg: string): void {
  console.error(`[bench train] ${msg}`);
}

const load = () => os.loadavg().map((l) => l.toFixed(2)).join(" ");

async function preprocess(data: string, out: string): Promise<void> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(ROOT, "cli/main.ts"),
      "preprocess",
      "--format",
      "amazon2014",
      "--reviews",
      join(data, "reviews_Beauty_5.json.gz"),
      "--meta",
      join(data, "meta_Beauty.json.gz"),
      "--out",
      out,
      "--quiet",
    ],
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (!r.success) throw new Error(`preprocess failed (exit ${r.code})`);
}

/** A child's result, or why it produced none (the first error line of its stderr). */
async function runChild(
  dataset: string,
  model: string,
  steps: number,
  backend: string | undefined,
  ceProducts: string,
): Promise<ChildResult | { failed: string }> {
  const { r } = await runChildJson<ChildResult>([
    CHILD,
    "--dataset",
    dataset,
    "--model",
    model,
    "--steps",
    String(steps),
    "--hidden",
    String(SHAPE.hidden),
    "--max-len",
    String(SHAPE.maxLen),
    "--batch",
    String(SHAPE.batch),
    "--ce-products",
    ceProducts,
    ...(backend ? ["--backend", backend] : []),
  ]);
  const failed = r as { ok?: unknown; error?: string };
  return failed.ok === false ? { failed: failed.error! } : r as ChildResult;
}

/** Useful FLOPs of one epoch of each model (and SASRec's with every history padded). */
function epochFlops(ds: Dataset) {
  const flopsOf = (model: string) =>
    configFlops(
      ds,
      resolveConfig(null, [
        `model=${model}`,
        `hidden=${SHAPE.hidden}`,
        `inner=${4 * SHAPE.hidden}`,
        `maxLen=${SHAPE.maxLen}`,
        `batchSize=${SHAPE.batch}`,
      ]),
    )!;
  const sasrec = flopsOf("sasrec"), duafmat = flopsOf("duafmat");
  const lengths = lengthStats(
    Array.from(splitExamples(ds, "train").positions, (p) => Math.min(p, SHAPE.maxLen)),
  );
  const shape = {
    hidden: SHAPE.hidden,
    inner: 4 * SHAPE.hidden,
    layers: 2,
    items: ds.numItems + 1,
  };
  return {
    sasrec: sasrec.epoch,
    sasrecPadded: sasrecEpochFlops(paddedLengths(lengths, SHAPE.maxLen), shape),
    duafmat: duafmat.epoch,
    sasrecEval: sasrec.eval,
    duafmatEval: duafmat.eval,
  };
}

/** Our epoch seconds: measured, or the mean step after the first times the steps per epoch. */
function epochOf(r: ChildResult): { seconds: number; extrapolated: boolean } {
  if (r.steps >= r.stepsPerEpoch) return { seconds: r.epochSeconds, extrapolated: false };
  const later = r.stepSeconds.length > 1 ? r.stepSeconds.slice(1) : r.stepSeconds;
  const mean = later.reduce((a, b) => a + b, 0) / later.length;
  return { seconds: mean * r.stepsPerEpoch, extrapolated: true };
}

interface Row {
  system: string;
  epochSeconds: number;
  extrapolated: boolean;
  steps: number;
  stepsPerEpoch: number;
  floorSeconds: number;
  evalSeconds: number;
  evalUsers: number;
  /** The evaluation's forward FLOPs at this run's sgemm rate. */
  evalFloorSeconds: number;
  peakRssMb: number;
  /** With --rounds N > 1: the epochs' and evaluations' [min, max] over the rounds. */
  ranges?: { epoch: [number, number]; eval: [number, number]; rounds: number };
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");

function rowLine(r: Row): string {
  const range = ([lo, hi]: [number, number], digits = 1) =>
    `; ${lo.toFixed(digits)}-${hi.toFixed(digits)}`;
  const rounds = r.ranges ? `, median of ${r.ranges.rounds}` : "";
  const epoch = r.extrapolated
    ? `${f1(r.epochSeconds)} (extrapolated from ${r.steps} of ${r.stepsPerEpoch} steps${rounds}`
    : `${f1(r.epochSeconds)} (${r.stepsPerEpoch} steps${rounds}`;
  const evalS = r.ranges
    ? `${r.evalSeconds.toFixed(2)} (${r.evalUsers}${range(r.ranges.eval, 2)})`
    : `${f1(r.evalSeconds)} (${r.evalUsers})`;
  return `| ${r.system} | ${epoch}${r.ranges ? range(r.ranges.epoch) : ""}) | ` +
    `${f1(r.floorSeconds)} | ${(r.epochSeconds / r.floorSeconds).toFixed(1)}x | ${evalS} | ` +
    `${(r.evalSeconds / r.evalFloorSeconds).toFixed(1)}x | ${r.peakRssMb.toFixed(0)} |`;
}

function check(label: string, value: number, limit: number, unit: string, note = ""): string {
  if (!Number.isFinite(value)) return `| ${label} | ${note || "not measured"} | - |`;
  const shown = unit === "x" ? `${value.toFixed(3)}x` : `${value.toFixed(0)} ${unit}`;
  return `| ${label} | ${shown} | ${value <= limit ? "pass" : "FAIL"} |`;
}

async function recordSection(file: string, section: string): Promise<void> {
  let text = "";
  try {
    text = await Deno.readTextFile(file);
  } catch {
    text = "# Benchmarks\n\nMeasured with `deno task bench NAME`; newest run of each kind.\n";
  }
  const start = text.search(/^## train\s*$/m);
  if (start < 0) text = text.trimEnd() + "\n\n" + section;
  else {
    const rest = text.slice(start + 1);
    const next = rest.search(/^## /m);
    text = text.slice(0, start) + section + (next < 0 ? "" : "\n" + rest.slice(next));
  }
  await writeFileAtomic(file, text.trimEnd() + "\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      steps: { type: "string", default: "0" },
      rounds: { type: "string", default: "1" },
      models: { type: "string", default: "sasrec,duafmat" },
      backend: { type: "string" },
      threads: { type: "string", default: "2" },
      data: { type: "string", default: join(ROOT, "../shared/data/amazon-beauty-2014") },
      "no-torch": { type: "boolean", default: false },
      record: { type: "string" },
      "ce-products": { type: "string", default: "fp32" },
    },
  });
  const steps = Number(values.steps);
  if (!Number.isInteger(steps) || steps < 0) throw new Error("--steps takes an integer >= 0");
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error("--rounds takes an integer >= 1");
  const models = values.models.split(",").map((s) => s.trim()).filter(Boolean);
  const loadBefore = load();
  const started = new Date();
  const tmp = await Deno.makeTempDir({ prefix: "duaf-bench-train-" });
  try {
    log(`preprocessing ${values.data}`);
    const dataset = join(tmp, "beauty");
    await preprocess(values.data, dataset);

    const { backend } = await activateBackend(values.backend);
    const desc = (backend as { description?: string }).description ?? backend.name;
    const gemm = measureGemm(backend);
    log(`sgemm ${gemm.shape} on ${backend.name}: ${gemm.gflops.toFixed(1)} GFLOP/s`);
    const floor = (flopsPerEpoch: number) => flopsPerEpoch / (gemm.gflops * 1e9);
    const flops = epochFlops(await loadDataset(dataset));
    log(
      `epoch FLOPs: SASRec ${(flops.sasrec / 1e12).toFixed(2)} T (padded to ${SHAPE.maxLen}: ` +
        `${(flops.sasrecPadded / 1e12).toFixed(2)} T), DuAF-MAT ${
          (flops.duafmat / 1e12).toFixed(2)
        } T`,
    );

    const rows = new Map<string, Row>();
    const notes: string[] = [];
    // Each model's results over the rounds; the models alternate so that they share the noise.
    const results = new Map<string, ChildResult[]>(models.map((m) => [m, []]));
    const dropped = new Set<string>();
    for (let round = 1; round <= rounds; round++) {
      for (const model of models) {
        if (dropped.has(model)) continue;
        const which = rounds > 1 ? `, round ${round} of ${rounds}` : "";
        log(`training ${model} (${steps ? `${steps} steps` : "one epoch"}${which})`);
        const r = await runChild(dataset, model, steps, values.backend, values["ce-products"]);
        if ("failed" in r || r.unavailable) {
          const why = "failed" in r ? `failed (${r.failed})` : `not available (${r.unavailable})`;
          notes.push(`duaf ${model}: ${why}`);
          dropped.add(model);
          continue;
        }
        results.get(model)!.push(r);
      }
    }
    for (const model of models) {
      const rs = results.get(model)!;
      if (dropped.has(model) || !rs.length) continue;
      const epochs = rs.map((r) => epochOf(r).seconds);
      const evals = rs.map((r) => r.evalTestSeconds);
      const first = rs[0];
      rows.set(model, {
        system: `duaf ${model === "duafmat" ? "DuAF-MAT" : "SASRec"} (${first.backend})`,
        epochSeconds: median(epochs),
        extrapolated: epochOf(first).extrapolated,
        steps: first.steps,
        stepsPerEpoch: first.stepsPerEpoch,
        floorSeconds: floor(model === "duafmat" ? flops.duafmat : flops.sasrec),
        evalSeconds: median(evals),
        evalUsers: first.evalUsers,
        evalFloorSeconds: floor(model === "duafmat" ? flops.duafmatEval : flops.sasrecEval),
        peakRssMb: Math.max(...rs.map((r) => r.peakRssMb)),
        ranges: rs.length > 1
          ? {
            epoch: [Math.min(...epochs), Math.max(...epochs)],
            eval: [Math.min(...evals), Math.max(...evals)],
            rounds: rs.length,
          }
          : undefined,
      });
    }
    for (const m of ["sasrec", "duafmat"]) {
      if (!models.includes(m)) notes.push(`duaf ${m}: not run (--models)`);
    }

    if (values["no-torch"]) notes.push("PyTorch SASRec: skipped (--no-torch)");
    else {
      log(`training PyTorch SASRec (${values.threads} threads)`);
      const t = await runTorchSasrec(join(values.data, "reviews_Beauty_5.json.gz"), {
        threads: Number(values.threads),
        steps,
        ...SHAPE,
      });
      if ("skipped" in t) notes.push(`PyTorch SASRec: skipped (${t.skipped})`);
      else {
        rows.set("torch", {
          system: `PyTorch ${t.torch} SASRec (${t.threads} threads)`,
          epochSeconds: t.epochSeconds,
          extrapolated: t.extrapolated,
          steps: t.steps,
          stepsPerEpoch: t.stepsPerEpoch,
          floorSeconds: floor(flops.sasrec),
          evalSeconds: t.evalTestSeconds,
          evalUsers: t.evalUsers,
          evalFloorSeconds: floor(flops.sasrecEval),
          peakRssMb: t.peakRssMb,
        });
      }
    }

    const sas = rows.get("sasrec");
    const duaf = rows.get("duafmat");
    const pt = rows.get("torch");
    const rel = (a: Row | undefined, b: Row | undefined, key: "epochSeconds" | "evalSeconds") =>
      a && b ? a[key] / b[key] : NaN;
    const why = (r: Row | undefined, name: string) =>
      !r ? `no ${name} result` : !pt ? "no PyTorch run" : "";
    const out = [
      "## train",
      "",
      `${started.toISOString().slice(0, 16).replace("T", " ")} UTC; ${cpuModel()}, ` +
      `${navigator.hardwareConcurrency} cores; load average ${loadBefore} before, ${load()} after ` +
      `(the machine is shared: other processes ran too); deno ${Deno.version.deno}.`,
      "",
      `Command: \`deno task bench train${Deno.args.length ? " " + Deno.args.join(" ") : ""}\`. ` +
      `Amazon Beauty 2014 (5-core), d=${SHAPE.hidden}, max length ${SHAPE.maxLen}, batch ` +
      `${SHAPE.batch}, CE over all items${
        values["ce-products"] === "bf16"
          ? " with its products on bf16 operands (ceProducts=bf16; the floor below is float32's)"
          : ""
      }; eval = full ranking of every item for every test user.`,
      "",
      `Backend: ${desc}. FLOP floor = analytic GEMM FLOPs of an epoch (forward x 3, each example ` +
      `at its real history length: SASRec ${(flops.sasrec / 1e12).toFixed(2)} TFLOP, DuAF-MAT ` +
      `${(flops.duafmat / 1e12).toFixed(2)} TFLOP; padding every history to ${SHAPE.maxLen} as ` +
      `RecBole does makes SASRec ${(flops.sasrecPadded / 1e12).toFixed(2)} TFLOP) at ` +
      `${gemm.gflops.toFixed(1)} GFLOP/s, this run's ${backend.name} sgemm on ${gemm.shape}. ` +
      `The evaluation's floor is its forward FLOPs at the same rate (SASRec ${
        (flops.sasrecEval / 1e9).toFixed(0)
      } GFLOP, DuAF-MAT ${(flops.duafmatEval / 1e9).toFixed(0)} GFLOP).`,
      "",
      "| system | epoch s | FLOP floor s | epoch / floor | full eval s (users) | eval / its floor | peak RSS MiB |",
      "|---|---|---|---|---|---|---|",
      ...[pt, sas, duaf].filter((r): r is Row => r !== undefined).map(rowLine),
      ...(notes.length ? ["", ...notes.map((n) => `- ${n}`)] : []),
      "",
      "| target | measured | result |",
      "|---|---|---|",
      check(
        "SASRec epoch <= 0.2x PyTorch's",
        rel(sas, pt, "epochSeconds"),
        0.2,
        "x",
        why(sas, "SASRec"),
      ),
      check(
        "DuAF-MAT epoch <= 0.5x PyTorch SASRec's",
        rel(duaf, pt, "epochSeconds"),
        0.5,
        "x",
        why(duaf, "DuAF-MAT"),
      ),
      check(
        "SASRec full eval <= 0.5x PyTorch's",
        rel(sas, pt, "evalSeconds"),
        0.5,
        "x",
        why(sas, "SASRec"),
      ),
      check(
        "DuAF-MAT full eval <= 0.5x PyTorch's",
        rel(duaf, pt, "evalSeconds"),
        0.5,
        "x",
        why(duaf, "DuAF-MAT"),
      ),
      check("SASRec peak RSS <= 1.5 GiB", sas?.peakRssMb ?? NaN, RSS_LIMIT_MIB, "MiB"),
      check("DuAF-MAT peak RSS <= 1.5 GiB", duaf?.peakRssMb ?? NaN, RSS_LIMIT_MIB, "MiB"),
      check(
        "SASRec full eval <= 1.5x its FLOP floor",
        sas ? sas.evalSeconds / sas.evalFloorSeconds : NaN,
        1.5,
        "x",
      ),
      check(
        "DuAF-MAT full eval <= 1.5x its FLOP floor",
        duaf ? duaf.evalSeconds / duaf.evalFloorSeconds : NaN,
        1.5,
        "x",
      ),
      check(
        "SASRec epoch <= 1.5x its FLOP floor",
        sas ? sas.epochSeconds / sas.floorSeconds : NaN,
        1.5,
        "x",
      ),
      check(
        "DuAF-MAT epoch <= 2x its FLOP floor",
        duaf ? duaf.epochSeconds / duaf.floorSeconds : NaN,
        2,
        "x",
      ),
      check(
        "DuAF-MAT epoch <= 1.3x our SASRec's",
        rel(duaf, sas, "epochSeconds"),
        1.3,
        "x",
        !duaf ? "no DuAF-MAT result" : !sas ? "no SASRec result" : "",
      ),
      "",
    ].join("\n");
    console.log(out);
    if (values.record) {
      await recordSection(values.record, out);
      log(`recorded in ${values.record}`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) {
  await main();
  // The wasm backend's kernel thread would keep the process alive.
  Deno.exit(0);
}
