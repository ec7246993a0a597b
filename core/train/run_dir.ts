/**
 * The run directory written by `duaf train` and read by eval, recommend, report and export:
 *   manifest.json      config, dataset identity, backend, seed, status, metric history
 *   model.safetensors  best parameters (torch names; loadable with safetensors in PyTorch)
 *   state.safetensors  last parameters + Adam moments + trainer state, for --resume
 * Every file is written atomically.
 */
import { join } from "node:path";
import { z } from "zod";
import { TrainConfigSchema } from "../config.ts";
import { DatasetRecordSchema } from "../data/identity.ts";
import { DataError, UsageError } from "../errors.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import type { DirArtifact } from "../io/output_guard.ts";
import { readSafetensors, type SafeTensor, writeSafetensors } from "../io/safetensors.ts";
import type { Module } from "../nn/module.ts";
import type { Adam } from "../optim/adam.ts";
import { assign, type Tensor } from "../tensor.ts";
import { VERSION } from "../version.ts";
import type { TrainerState } from "./trainer.ts";

export const RUN_FORMAT = "duaf-run";
export const RUN_VERSION = 1;

/** A run directory as the output guard sees it: the files duaf writes there. */
export const RUN_ARTIFACT: DirArtifact = {
  format: RUN_FORMAT,
  label: "run",
  entries: ["manifest.json", "model.safetensors", "state.safetensors", "model.onnx"],
};

export const RunManifestSchema = z.object({
  format: z.literal(RUN_FORMAT),
  version: z.literal(RUN_VERSION),
  duaf: z.string(),
  config: TrainConfigSchema,
  dataset: DatasetRecordSchema,
  backend: z.string(),
  status: z.enum(["running", "interrupted", "finished"]),
  stopped: z.string().nullable(),
  bestEpoch: z.number(),
  bestMetric: z.number().nullable(),
  history: z.array(z.any()),
  test: z.record(z.string(), z.number()).nullable(),
  seconds: z.number(),
  /** Training seconds already spent in the unfinished epoch (restored on --resume). */
  partialSeconds: z.number().optional(),
  /** Where --resume continues: the last saved state's epoch and step (null before the first). */
  checkpoint: z.object({ epoch: z.number(), step: z.number() }).nullable().optional(),
  /** The dataset's text features (width and source), for --init-from's checks. */
  textFeatures: z.object({ dim: z.number(), source: z.string() }).nullable().optional(),
  /** The run whose parameters this one started from (--init-from), and which it loaded. */
  initFrom: z.object({ run: z.string(), loaded: z.array(z.string()), fresh: z.array(z.string()) })
    .optional(),
});
export type RunManifest = z.infer<typeof RunManifestSchema>;

export async function writeRunManifest(dir: string, m: RunManifest): Promise<void> {
  await writeFileAtomic(join(dir, "manifest.json"), JSON.stringify(m, null, 2) + "\n");
}

export async function readRunManifest(dir: string): Promise<RunManifest> {
  const path = join(dir, "manifest.json");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`${dir}: not a duaf run (no manifest.json)`);
    }
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new DataError(path, null, null, "not valid JSON");
  }
  const obj = raw as Record<string, unknown>;
  if (obj?.format !== RUN_FORMAT) {
    throw new DataError(path, null, "format", `expected "${RUN_FORMAT}"`);
  }
  if (obj.version !== RUN_VERSION) {
    throw new DataError(
      path,
      null,
      "version",
      `run format ${obj.version} is not supported by duaf ${VERSION} (expects ${RUN_VERSION})`,
    );
  }
  const parsed = RunManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DataError(path, null, issue.path.join("."), issue.message);
  }
  return parsed.data;
}

function paramTensors(model: Module): Record<string, SafeTensor> {
  const out: Record<string, SafeTensor> = {};
  for (const [name, t] of model.namedParameters()) {
    out[name] = { dtype: "F32", shape: [...t.shape], data: t.toFloat32() };
  }
  return out;
}

/** Best-model checkpoint: parameters only, with identifying metadata. Byte-deterministic. */
export async function saveModel(
  dir: string,
  model: Module,
  meta: Record<string, string>,
): Promise<void> {
  await writeSafetensors(join(dir, "model.safetensors"), paramTensors(model), {
    format: RUN_FORMAT,
    duaf: VERSION,
    ...meta,
  });
}

async function readChecked(path: string) {
  try {
    return await readSafetensors(path);
  } catch (e) {
    if (e instanceof DataError && e.problem === "no such file") {
      throw new UsageError(
        `${path}: checkpoint missing (was the run trained to the end of an epoch?)`,
      );
    }
    throw e;
  }
}

function loadInto(path: string, named: [string, Tensor][], tensors: Map<string, SafeTensor>): void {
  for (const [name, t] of named) {
    const s = tensors.get(name);
    if (!s) throw new DataError(path, null, name, "tensor missing from checkpoint");
    if (s.dtype !== "F32" || s.data.length !== t.size) {
      throw new DataError(
        path,
        null,
        name,
        `expected F32 [${t.shape}], found ${s.dtype} [${s.shape}]`,
      );
    }
    assign(t, s.data as Float32Array);
  }
}

export async function loadModel(dir: string, model: Module): Promise<Record<string, string>> {
  const path = join(dir, "model.safetensors");
  const file = await readChecked(path);
  if (file.metadata.duaf !== VERSION) {
    throw new UsageError(
      `${path}: written by duaf ${file.metadata.duaf ?? "?"}, this is duaf ${VERSION}`,
    );
  }
  loadInto(path, model.namedParameters(), file.tensors);
  return file.metadata;
}

/**
 * The trainer state without its wall-clock fields. Timings differ between otherwise identical
 * runs, so they live in manifest.json (history seconds, partialSeconds) and state.safetensors
 * stays byte-identical for the same seed, data, config and backend.
 */
function withoutTimings(state: TrainerState): TrainerState {
  return {
    ...state,
    partialSeconds: 0,
    history: state.history.map((r) => ({ ...r, seconds: 0, examplesPerSecond: 0 })),
  };
}

/** Puts back the timings kept in the manifest (absent or stale ones stay 0). */
async function restoreTimings(dir: string, state: TrainerState): Promise<void> {
  let m: RunManifest;
  try {
    m = await readRunManifest(dir);
  } catch {
    return;
  }
  state.history.forEach((r, i) => {
    const saved = m.history[i] as { epoch?: number; seconds?: number; examplesPerSecond?: number };
    if (saved?.epoch !== r.epoch) return;
    r.seconds = saved.seconds ?? 0;
    r.examplesPerSecond = saved.examplesPerSecond ?? 0;
  });
  // The manifest is written right after the state; an older one belongs to another epoch.
  if (m.history.length === state.history.length) state.partialSeconds = m.partialSeconds ?? 0;
}

/** The main optimizer and any a model steps itself, by checkpoint prefix. */
function optimizers(model: Module, main: Adam): [string, Adam][] {
  const aux = (model as { auxOptimizers?(): Record<string, Adam> }).auxOptimizers?.() ?? {};
  return [
    ["optimizer", main],
    ...Object.entries(aux).map(([k, o]): [string, Adam] => [`optimizer_${k}`, o]),
  ];
}

/**
 * Resumable state: parameters, every optimizer's moments and step count, and the trainer's state
 * (epoch, step, random streams, early-stopping counters) as JSON metadata.
 */
export async function saveState(
  dir: string,
  model: Module,
  optimizer: Adam,
  state: TrainerState,
): Promise<void> {
  const tensors = paramTensors(model);
  const steps: Record<string, number> = {};
  for (const [prefix, opt] of optimizers(model, optimizer)) {
    steps[prefix] = opt.step_;
    for (const [name, t] of opt.state()) {
      tensors[`${prefix}.${name}`] = { dtype: "F32", shape: [...t.shape], data: t.toFloat32() };
    }
  }
  await writeSafetensors(join(dir, "state.safetensors"), tensors, {
    format: RUN_FORMAT,
    duaf: VERSION,
    optimizerSteps: JSON.stringify(steps),
    trainer: JSON.stringify(withoutTimings(state)),
  });
}

/** Whether `dir` holds a resumable state (a run killed before its first checkpoint has none). */
export async function hasState(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(join(dir, "state.safetensors"))).isFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

export async function loadState(
  dir: string,
  model: Module,
  optimizer: Adam,
): Promise<TrainerState> {
  const path = join(dir, "state.safetensors");
  const file = await readChecked(path);
  loadInto(path, model.namedParameters(), file.tensors);
  const steps = JSON.parse(file.metadata.optimizerSteps ?? "{}") as Record<string, number>;
  for (const [prefix, opt] of optimizers(model, optimizer)) {
    loadInto(path, opt.state().map(([n, t]) => [`${prefix}.${n}`, t]), file.tensors);
    opt.step_ = steps[prefix] ?? opt.step_;
  }
  const state = JSON.parse(file.metadata.trainer) as TrainerState;
  // JSON has no -Infinity: a run that never validated stores null.
  state.bestMetric ??= -Infinity;
  await restoreTimings(dir, state);
  return state;
}
