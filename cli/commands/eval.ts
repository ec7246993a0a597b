/** `duaf eval`: full-ranking metrics of a trained run, with an optional CI expectation check. */
import { backendSummary } from "../../core/backend.ts";
import { CheckFailed, DataError, UsageError } from "../../core/errors.ts";
import { reconstructionMetrics } from "../../core/eval/reconstruction.ts";
import { OrtScorer } from "../../core/serve/ort_scorer.ts";
import { formatCategories, formatPhase, profiled } from "../../core/backends/profiling.ts";
import { setBackend } from "../../core/tensor.ts";
import { activateBackend, evaluateRun, evaluateRunWith, openRun } from "../../core/train/run.ts";
import type { Command } from "../command.ts";
import { choiceFlag, emitJson, listFlag, numberFlag, parseFlags } from "../flags.ts";
import { StderrProgress } from "../progress.ts";

const usage = `usage: duaf eval RUN [options]

Ranks every item for each user's held-out item (leave-one-out) and reports NDCG, MRR, HR and
Recall at each K.

options:
  --split valid|test   which held-out item (default test)
  --k 5,10,20          cut-offs (default 5,10,20)
  --mask-seen          exclude items the user already interacted with from the ranking
  --dataset DIR        dataset location if it moved (must be the same artifact)
  --expect FILE        JSON of expected metrics; exit 1 if any differs by more than --tol
  --tol X              absolute tolerance for --expect (default 1e-6)
  --backend NAME       auto | cuda | native | wasm | js
  --runtime engine|ort run the engine (default) or the exported ONNX graph on onnxruntime-web
  --onnx FILE          the graph for --runtime ort (default RUN/model.onnx; see duaf export)
  --reconstruction     also report how well the images hidden from training (duafmat.hideImages)
                       are rebuilt: cosines to the real ones, plain and centred, and squared
                       error against the mean guess ("recon.*", docs/config.md)
  --profile            time every backend call by kind (each one synced) and print where the
                       time went on stderr at the end: "setup" (loading the run, building the
                       model) and "eval" (DUAF_PROFILE_GEMM=1 splits GEMM calls by shape,
                       DUAF_PROFILE_TOP=N lists N kinds, default 25); engine runtime only
  --json               (default) one JSON object on stdout
  --quiet              no progress output`;

export const evalCommand: Command = {
  name: "eval",
  summary: "full-ranking NDCG/MRR/HR/Recall of a trained run",
  usage,
  async run(args) {
    const { values, positionals } = parseFlags("eval", args, {
      split: { type: "string" },
      k: { type: "string" },
      "mask-seen": { type: "boolean" },
      dataset: { type: "string" },
      expect: { type: "string" },
      tol: { type: "string" },
      backend: { type: "string" },
      runtime: { type: "string" },
      onnx: { type: "string" },
      json: { type: "boolean" },
      reconstruction: { type: "boolean" },
      profile: { type: "boolean" },
      quiet: { type: "boolean" },
    }, true);
    const dir = positionals[0];
    if (!dir) throw new UsageError("RUN is required (see duaf help eval)");
    const split = choiceFlag("split", values.split, ["valid", "test"] as const) ?? "test";
    const ks = (listFlag(values.k) ?? ["5", "10", "20"]).map((k) => {
      const n = Number(k);
      if (!Number.isInteger(n) || n <= 0) {
        throw new UsageError(`--k: '${k}' is not a positive integer`);
      }
      return n;
    });
    const tol = numberFlag("tol", values.tol) ?? 1e-6;
    const runtime = choiceFlag("runtime", values.runtime, ["engine", "ort"] as const) ?? "engine";
    if (values.onnx !== undefined && runtime !== "ort") {
      throw new UsageError("--onnx needs --runtime ort");
    }
    if (values.profile && runtime === "ort") {
      throw new UsageError("--profile times the engine's backend calls: it needs --runtime engine");
    }
    const progress = new StderrProgress({ quiet: values.quiet });
    const { backend } = await activateBackend(values.backend);
    progress.log(`backend: ${backendSummary(backend)}`);
    const profiler = values.profile
      ? profiled(backend, { sync: true, gemmShapes: Boolean(Deno.env.get("DUAF_PROFILE_GEMM")) })
      : null;
    // Wrapped before the run opens, so that building the model counts as setup.
    if (profiler) setBackend(profiler.backend);
    const run = await openRun(dir, progress, values.dataset);
    profiler?.phase("eval");
    const evalOpts = { split, ks, maskSeen: Boolean(values["mask-seen"]), progress };
    let result;
    if (runtime === "ort") {
      const scorer = await OrtScorer.open(run, dir, values.onnx);
      try {
        result = await evaluateRunWith(run, scorer, evalOpts);
      } finally {
        await scorer.close();
      }
    } else result = evaluateRun(run, evalOpts);
    if (profiler) {
      profiler.phase("setup");
      console.error(`profile (${backend.name}, every backend call synced):`);
      for (const p of profiler.report()) {
        console.error(formatPhase(p, Number(Deno.env.get("DUAF_PROFILE_TOP") ?? 25)));
        console.error(formatCategories(p));
      }
    }
    let reconstruction: Record<string, number> | undefined;
    if (values.reconstruction) {
      const r = run.model.reconstruction?.();
      if (!r) {
        throw new UsageError(
          `--reconstruction: ${dir} hid no images from training (train duafmat on a dataset ` +
            `with images and --set duafmat.hideImages=0.2)`,
        );
      }
      reconstruction = reconstructionMetrics(r);
    }
    const report = {
      run: dir,
      model: run.manifest.config.model,
      ...(runtime === "ort" ? { runtime } : {}),
      ...result,
      ...(reconstruction ? { reconstruction } : {}),
    };
    emitJson(report);
    if (values.expect) {
      let expected: Record<string, number>;
      try {
        const raw = JSON.parse(await Deno.readTextFile(values.expect));
        expected = raw.metrics ?? raw;
      } catch {
        throw new DataError(values.expect, null, null, "expected a JSON object of metrics");
      }
      const bad: string[] = [];
      for (const [name, want] of Object.entries(expected)) {
        const got = result.metrics[name];
        if (got === undefined) bad.push(`${name} not computed`);
        else if (Math.abs(got - want) > tol) bad.push(`${name} ${got} vs expected ${want}`);
      }
      if (bad.length) throw new CheckFailed(`metrics differ beyond ${tol}: ${bad.join("; ")}`);
      progress.log(`expectations met (${Object.keys(expected).length} metrics within ${tol})`);
    }
    return 0;
  },
};
