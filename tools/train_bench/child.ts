/**
 * One system of `deno task bench train`, in its own process: trains one epoch of a duaf model
 * through the library's runTraining (the same path as `duaf train`), timing every step and the
 * full-ranking evaluations through the Progress seam, and prints one JSON line with the timings
 * and its own peak RSS (VmHWM).
 *
 *   deno run -A --v8-flags=--no-liftoff tools/train_bench/child.ts --dataset DIR --model sasrec
 *     [--steps N] [--backend NAME] [--hidden 64] [--max-len 50] [--batch 2048]
 *     [--ce-products fp32|bf16]
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { resolveConfig } from "../../core/config.ts";
import { loadDataset } from "../../core/data/dataset.ts";
import { isUserError } from "../../core/errors.ts";
import { peakRssMib, TimingProgress } from "../../core/bench/timing.ts";
import { activateBackend, runTraining } from "../../core/train/run.ts";
import { splitExamples } from "../../core/models/examples.ts";

export interface ChildResult {
  model: string;
  /** Set instead of the timings when the model cannot be built (e.g. not in this build). */
  unavailable?: string;
  backend: string;
  backendDescription: string;
  stepsPerEpoch: number;
  /** Steps timed (stepsPerEpoch for a full epoch). */
  steps: number;
  /** Wall seconds of each step, in order. */
  stepSeconds: number[];
  /** The trainer's epoch time over `steps` steps. */
  epochSeconds: number;
  evalValidSeconds: number;
  evalTestSeconds: number;
  evalUsers: number;
  loss: Record<string, number>;
  peakRssMb: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      dataset: { type: "string" },
      model: { type: "string", default: "sasrec" },
      steps: { type: "string", default: "0" },
      backend: { type: "string" },
      hidden: { type: "string", default: "64" },
      "max-len": { type: "string", default: "50" },
      batch: { type: "string", default: "2048" },
      "ce-products": { type: "string", default: "fp32" },
    },
  });
  if (!values.dataset) throw new Error("--dataset DIR is required");
  const { backend } = await activateBackend(values.backend);
  const description = (backend as { description?: string }).description ?? backend.name;
  const hidden = Number(values.hidden);
  const config = resolveConfig(null, [
    `model=${values.model}`,
    `hidden=${hidden}`,
    `inner=${4 * hidden}`,
    `maxLen=${values["max-len"]}`,
    `batchSize=${values.batch}`,
    "epochs=1",
    `maxSteps=${values.steps}`,
    `ceProducts=${values["ce-products"]}`,
  ]);
  const ds = await loadDataset(values.dataset);
  const nTrain = splitExamples(ds, "train").users.length;
  const stepsPerEpoch = Math.ceil(nTrain / config.batchSize);
  const steps = config.maxSteps > 0 ? Math.min(config.maxSteps, stepsPerEpoch) : stepsPerEpoch;
  const base = { model: config.model, backend: backend.name, backendDescription: description };
  const out = await Deno.makeTempDir({ prefix: "duaf-bench-run-" });
  const progress = new TimingProgress((m) => console.error(m));
  try {
    const { manifest } = await runTraining({
      dataset: values.dataset,
      out: join(out, "run"),
      config,
      progress,
      backendName: backend.name,
    });
    const stepSeconds = progress.intervals("epoch 1");
    const record = manifest.history[0] as { seconds: number; loss: Record<string, number> };
    const result: ChildResult = {
      ...base,
      stepsPerEpoch,
      steps,
      stepSeconds,
      epochSeconds: record.seconds,
      evalValidSeconds: progress.durations.get("eval valid") ?? NaN,
      evalTestSeconds: progress.durations.get("eval test") ?? NaN,
      evalUsers: splitExamples(ds, "test").users.length,
      loss: record.loss,
      peakRssMb: peakRssMib(),
    };
    console.log(JSON.stringify(result));
  } catch (e) {
    if (!isUserError(e)) throw e;
    console.log(JSON.stringify({ ...base, unavailable: e.message }));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

if (import.meta.main) await main();
