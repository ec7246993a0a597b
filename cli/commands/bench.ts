/**
 * `duaf bench DATASET`: how fast a configuration trains and evaluates on this machine, on one
 * backend or several side by side (core/bench/train_speed.ts).
 */
import type { Command } from "../command.ts";
import { UsageError } from "../../core/errors.ts";
import { resolveConfig } from "../../core/config.ts";
import { readManifest } from "../../core/data/dataset.ts";
import { measureTrainingSpeed, type SpeedResult } from "../../core/bench/train_speed.ts";
import { registeredBackends } from "../../core/backends/registry.ts";
import { activateBackend } from "../../core/train/run.ts";
import {
  choiceFlag,
  emitJson,
  intFlag,
  listFlag,
  onePositional,
  parseFlags,
  readConfigFile,
} from "../flags.ts";
import { StderrProgress } from "../progress.ts";

const DEFAULT_STEPS = 20;

const usage = `usage: duaf bench DATASET [options]

Times a configuration on this machine: the first training steps of a real run (every cost of
duaf train included), an epoch estimated from them, a full-ranking evaluation of the validation
and test users, the backend's sgemm rate and memory. Several backends run one after another in
this process, so their numbers compare. Nothing is kept: the run goes to a temporary folder.

options:
  --model NAME         the configuration, as for duaf train (default sasrec)
  --config FILE        JSON object of config keys
  --set KEY=VALUE      override one config key, repeatable
  --backend LIST       backends to time, comma-separated, or all (every one that loads here, js
                       aside); default: the one duaf train would use
  --steps N            training steps to time (default ${DEFAULT_STEPS}; the first is a warm-up,
                       left out of the step statistics); 0: a whole epoch
  --format json|md     one JSON object per backend on stdout (default), or a Markdown table
  --quiet              no progress output

stdout, per backend: backend, description, model, trainMode, batchSize, gemmGflops
([2048x64]@[64x256]), steps, stepsPerEpoch, stepSeconds {median, mean, min, max},
epochSecondsEstimate, evalUsersPerSecond {valid, test}, backendPeakMiB (wasm arena or GPU pool),
peakRssMiB (the process's, every backend before it included), floor {epochSeconds, epochRatio,
evalSeconds, evalRatio} (SASRec and DuAF-MAT: the epoch's and the test evaluation's useful GEMM
FLOPs at gemmGflops, and the measured times as multiples of them; null for other models). The
epoch estimate is the mean
step times the epoch's steps; bucketed batches of longer histories come later in an epoch, so a
whole epoch can take longer (--steps 0 times the whole epoch instead). For regression-grade measurements beside PyTorch see
docs/benchmarks.md (deno task bench train).`;

function markdown(rows: SpeedResult[]): string {
  const head = "| backend | model | mode | batch | sgemm GFLOP/s | s / step (median) | " +
    "steps / epoch | epoch s (est.) | epoch / floor | eval users/s (test) | eval / floor | " +
    "backend peak MiB | peak RSS MiB |";
  const ratio = (x: number | undefined) => x === undefined ? "" : `${x.toFixed(1)}x`;
  const line = (r: SpeedResult) =>
    `| ${r.backend} | ${r.model} | ${r.trainMode} | ${r.batchSize} | ${
      r.gemmGflops.toFixed(1)
    } | ` +
    `${r.stepSeconds.median.toFixed(3)} | ${r.stepsPerEpoch} | ${
      r.epochSecondsEstimate.toFixed(1)
    } | ${ratio(r.floor?.epochRatio)} | ` +
    `${r.evalUsersPerSecond.test.toFixed(0)} | ${ratio(r.floor?.evalRatio)} | ${
      r.backendPeakMiB?.toFixed(0) ?? ""
    } | ${r.peakRssMiB.toFixed(0)} |`;
  return [head, `|${"---|".repeat(13)}`, ...rows.map(line)].join("\n");
}

export const benchCommand: Command = {
  name: "bench",
  summary: "time training and evaluation of a config on this machine, per backend",
  usage,
  async run(args) {
    const { values, positionals } = parseFlags("bench", args, {
      model: { type: "string" },
      config: { type: "string" },
      set: { type: "string", multiple: true },
      backend: { type: "string" },
      steps: { type: "string" },
      format: { type: "string" },
      quiet: { type: "boolean" },
    }, true);
    const dataset = onePositional("bench", "DATASET", positionals);
    const steps = intFlag("steps", values.steps, 0) ?? DEFAULT_STEPS;
    if (steps === 1) throw new UsageError("--steps: expected 0 (a whole epoch) or at least 2");
    const format = choiceFlag("format", values.format, ["json", "md"] as const) ?? "json";
    const overrides = [...(values.set ?? [])];
    if (values.model) overrides.unshift(`model=${values.model}`);
    const fileCfg = values.config ? await readConfigFile(values.config) : null;
    const config = resolveConfig(fileCfg, overrides, values.config ?? "config");
    const progress = new StderrProgress({ quiet: values.quiet });
    await readManifest(dataset); // not a dataset: one line before any backend starts

    const all = values.backend === "all";
    const names = all
      ? registeredBackends().filter((n) => n !== "js")
      : listFlag(values.backend) ?? [undefined];
    if (!names.length) throw new UsageError("--backend: expected at least one backend");

    const rows: SpeedResult[] = [];
    for (const name of names) {
      let backend;
      try {
        ({ backend } = await activateBackend(name));
      } catch (e) {
        // With "all", a backend that does not load here is skipped; a named one is an error.
        if (!all || !(e instanceof UsageError)) throw e;
        progress.log(`bench: ${name} skipped: ${e.message}`);
        continue;
      }
      progress.log(`bench: ${backend.name}, ${steps || "an epoch's"} steps of ${config.model}`);
      const r = await measureTrainingSpeed({
        dataset,
        config,
        steps,
        backendName: backend.name,
        log: (m) => progress.log(m),
      });
      rows.push(r);
      if (format === "json") emitJson(r);
    }
    if (format === "md") console.log(markdown(rows));
    return 0;
  },
};
