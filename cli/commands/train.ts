/** `duaf train`: train a model on a dataset artifact into a run directory. */
import { backendSummary } from "../../core/backend.ts";
import { resolveConfig } from "../../core/config.ts";
import { UsageError } from "../../core/errors.ts";
import { formatCategories, formatPhase, profiled } from "../../core/backends/profiling.ts";
import { setBackend } from "../../core/tensor.ts";
import { activateBackend, runTraining } from "../../core/train/run.ts";
import { formatNamed } from "../../core/train/trainer.ts";
import type { Command } from "../command.ts";
import {
  checkpointSecondsFlag,
  DEFAULT_CHECKPOINT_SECONDS,
  durationFlag,
  emitJson,
  parseFlags,
  readConfigFile,
} from "../flags.ts";
import { EXIT_CODE, stopOnSignals } from "../interrupt.ts";
import { StderrProgress } from "../progress.ts";
import type { Progress } from "../../core/progress.ts";

const usage = `usage: duaf train DATASET --out RUN [options]
       duaf train --resume RUN [options]

Trains a sequential recommender on a dataset made by 'duaf preprocess'. Validation (full ranking,
leave-one-out) runs after each epoch; the best model by --metric is kept (early stopping).

options:
  --model NAME         duafmat | sasrec | gru4rec | fdsa | bert4rec | lrurec | nova | difsr |
                       unisrec | tedrec | m3srec | missrec | iisan | pop (default sasrec)
  --config FILE        JSON object of config keys (see docs/config.md)
  --set KEY=VALUE      override one config key, repeatable (e.g. --set lr=0.003 --set duafmat.experts=6)
  --out RUN            run directory to create (an existing one is replaced only if it holds a
                       finished duaf run or nothing)
  --resume RUN         continue an interrupted or killed run from its last checkpoint
  --init-from RUN      start from another run's best parameters where names and shapes match
                       (pre-training, then fine-tuning: docs/transfer.md); the rest start fresh
  --force              replace --out whatever it holds
  --checkpoint-every S save a resumable checkpoint every S seconds within an epoch as well
                       (default ${DEFAULT_CHECKPOINT_SECONDS}; 0: at epoch ends only)
  --time-limit D       stop with a resumable checkpoint after D (seconds, or 90m, 1h30m, ...)
                       and exit 75; --resume continues it
  --backend NAME       auto | cuda | native | wasm | js   (or DUAF_BACKEND)
  --profile            time every backend call by kind (each one synced) and print a table of
                       where the run's time went, host work included, on stderr at the end
                       (and one by category; DUAF_PROFILE_GEMM=1 splits GEMM calls by shape,
                       DUAF_PROFILE_TOP=N lists N kinds, default 25)
  --quiet              no progress output

stdout: one JSON object with the run's outcome, best epoch and test metrics.
SIGINT (Ctrl-C) or SIGTERM saves a resumable checkpoint and exits 130 or 143 (a second signal
exits at once); stdout's "stoppedBy" says which. After a hard kill (SIGKILL, power
loss), --resume continues from the last checkpoint and ends with the same bytes as a run that was
never interrupted.`;

export const trainCommand: Command = {
  name: "train",
  summary: "train DuAF-MAT or a baseline; writes a run directory",
  usage,
  async run(args) {
    const { values, positionals } = parseFlags("train", args, {
      model: { type: "string" },
      config: { type: "string" },
      set: { type: "string", multiple: true },
      out: { type: "string" },
      resume: { type: "string" },
      "init-from": { type: "string" },
      backend: { type: "string" },
      profile: { type: "boolean" },
      quiet: { type: "boolean" },
      force: { type: "boolean" },
      "checkpoint-every": { type: "string" },
      "time-limit": { type: "string" },
    }, true);
    const checkpointSeconds = checkpointSecondsFlag(values["checkpoint-every"]);
    const timeLimitSeconds = durationFlag("time-limit", values["time-limit"]);
    if (values.resume && values["init-from"]) {
      throw new UsageError("--init-from starts a new run; it does not apply to --resume");
    }
    if (values.resume && values.force) {
      throw new UsageError("--force replaces a run; it does not apply to --resume");
    }
    const progress = new StderrProgress({ quiet: values.quiet });
    const resume = values.resume;
    const out = resume ?? values.out;
    let dataset = positionals[0];
    if (!out) throw new UsageError("--out RUN is required (see duaf help train)");
    if (!resume && !dataset) throw new UsageError("DATASET is required (see duaf help train)");
    const overrides = [...(values.set ?? [])];
    if (values.model) overrides.unshift(`model=${values.model}`);
    const fileCfg = values.config ? await readConfigFile(values.config) : null;
    const config = resolveConfig(fileCfg, overrides, values.config ?? "config");
    if (resume) {
      const { readRunManifest } = await import("../../core/train/run_dir.ts");
      dataset ??= (await readRunManifest(resume)).dataset.dir;
    }
    const { backend, skipped } = await activateBackend(values.backend);
    progress.log(
      `backend: ${backendSummary(backend)}${
        skipped.length ? ` (skipped ${skipped.join("; ")})` : ""
      }`,
    );
    const profiler = values.profile
      ? profiled(backend, { sync: true, gemmShapes: Boolean(Deno.env.get("DUAF_PROFILE_GEMM")) })
      : null;
    if (profiler) setBackend(profiler.backend);
    // Progress tasks mark the phases: "epoch N" trains, "eval ..." evaluates.
    const tracked: Progress = !profiler ? progress : {
      log: (m) => progress.log(m),
      start(label, total, unit) {
        profiler.phase(
          label.startsWith("epoch") ? "train" : label.startsWith("eval") ? "eval" : "setup",
        );
        const task = progress.start(label, total, unit);
        return {
          tick: (n, status) => task.tick(n, status),
          done(summary) {
            task.done(summary);
            profiler.phase("setup");
          },
        };
      },
    };
    const interrupt = stopOnSignals(progress, { timeLimitSeconds });
    try {
      const { manifest, outcome } = await runTraining({
        dataset: dataset!,
        out,
        config,
        resume: Boolean(resume),
        progress: tracked,
        backendName: backend.name,
        force: values.force,
        checkpointSeconds,
        initFrom: values["init-from"],
        shouldStop: interrupt.shouldStop,
        onEpoch: (r) => {
          const at10 = Object.fromEntries(
            Object.entries(r.valid).filter(([k]) => k.endsWith("@10")),
          );
          progress.log(
            `epoch ${r.epoch}: ${r.seconds.toFixed(1)} s, ${formatNamed(r.loss)}; valid ${
              formatNamed(at10)
            }`,
          );
        },
      });
      if (profiler) {
        console.error(`profile (${backend.name}, every backend call synced):`);
        for (const p of profiler.report()) {
          console.error(formatPhase(p, Number(Deno.env.get("DUAF_PROFILE_TOP") ?? 25)));
          console.error(formatCategories(p));
        }
      }
      emitJson({
        run: out,
        status: manifest.status,
        stopped: outcome.stopped,
        ...(outcome.stopped === "interrupted" ? { stoppedBy: interrupt.reason() } : {}),
        model: manifest.config.model,
        backend: manifest.backend,
        epochs: manifest.history.length,
        bestEpoch: manifest.bestEpoch,
        bestValid: manifest.bestMetric,
        test: manifest.test,
        seconds: Number(manifest.seconds.toFixed(2)),
        ...(manifest.initFrom ? { initFrom: manifest.initFrom.run } : {}),
      });
      return outcome.stopped === "interrupted" ? EXIT_CODE[interrupt.reason() ?? "SIGINT"] : 0;
    } finally {
      interrupt.dispose();
    }
  },
};
