/**
 * A tiny dataset and training config for the end-to-end CLI tests: the beauty-mini fixture
 * (real Amazon reviews) and a one-layer, 16-wide SASRec trained for 2 epochs of 3 steps, so a
 * whole run takes about a second; ml-100k-mini with its poster features for the multimodal
 * models. Also the model tests' shared checks: a few Adam steps lower the loss, and a model
 * trains, evaluates and recommends from the CLI.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../core/data/dataset.ts";
import type { SequenceBatch } from "../../core/models/batch.ts";
import { type Examples, makeBatch, type SequenceSource } from "../../core/models/examples.ts";
import type { SequentialModel } from "../../core/models/model.ts";
import { Adam } from "../../core/optim/adam.ts";
import { Rng } from "../../core/random.ts";
import { backward, noGrad, tidy } from "../../core/tensor.ts";
import { type CliResult, runCli, runCliProcess } from "./run_cli.ts";

const FIXTURE = new URL("../../fixtures/beauty-mini/", import.meta.url).pathname;

/** ml-100k-mini: RecBole atomic files and MobileNetV2 poster features of real MovieLens items. */
export const ML_MINI = new URL("../../fixtures/ml-100k-mini/", import.meta.url).pathname;

export { MAIN_TS } from "./run_cli.ts";

/** Overrides shared by the CLI tests (as `--set` pairs). */
export const TINY_SETS = [
  "hidden=16",
  "inner=32",
  "layers=1",
  "maxSteps=3",
  "epochs=2",
  "batchSize=64",
];

export function setFlags(sets: string[]): string[] {
  return sets.flatMap((s) => ["--set", s]);
}

/** `sweep` arguments (no --out) of one tiny configuration under `seeds` ("1,2"). */
export function tinySweepPlan(dataset: string, seeds: string): string[] {
  return ["sweep", dataset, "--grid", '{"lr": [0.001]}', "--seeds", seeds, ...setFlags(TINY_SETS)];
}

/** `train` arguments for the tiny config on the wasm backend. */
export function tinyTrainArgs(dataset: string, out: string, sets = TINY_SETS): string[] {
  return ["train", dataset, "--out", out, ...setFlags(sets), "--backend", "wasm", "--quiet"];
}

/** `preprocess` arguments for the beauty-mini fixture's raw dumps into `out`. */
export function tinyPreprocessArgs(out: string): string[] {
  return [
    "preprocess",
    "--format",
    "amazon2014",
    "--reviews",
    join(FIXTURE, "reviews_Beauty_5.json.gz"),
    "--meta",
    join(FIXTURE, "meta_Beauty.json.gz"),
    "--out",
    out,
  ];
}

/**
 * Preprocesses the beauty-mini fixture into `root`/`name` (extra preprocess flags appended) and
 * returns that path.
 */
export async function tinyDataset(
  root: string,
  extra: string[] = [],
  name = "ds",
): Promise<string> {
  const out = join(root, name);
  const r = await runCli([...tinyPreprocessArgs(out), ...extra, "--quiet"]);
  assert.equal(r.code, 0, r.stderr);
  return out;
}

/** Trains the tiny config into `out` in-process; returns the stdout JSON. */
export async function tinyTrain(
  dataset: string,
  out: string,
  sets = TINY_SETS,
): Promise<Record<string, unknown>> {
  const r = await runCli(tinyTrainArgs(dataset, out, sets));
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** Image features for about 70 % of the dataset's items (seeded), as precomputed JSONL. */
export async function imageFeatures(ds: string, path: string): Promise<void> {
  const rng = new Rng(7);
  const lines: string[] = [];
  for (const id of (await loadDataset(ds)).itemIds().slice(1)) {
    if (rng.uniform() < 0.3) continue;
    lines.push(JSON.stringify({ id, vector: Array.from({ length: 8 }, () => rng.normal()) }));
  }
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
}

/** The beauty-mini dataset with generated image features for ~70 % of its items. */
export async function tinyImageDataset(root: string, name = "ds-images"): Promise<string> {
  const plain = await tinyDataset(root, [], `${name}-plain`);
  const features = join(root, `${name}.jsonl`);
  await imageFeatures(plain, features);
  return tinyDataset(root, ["--image-features", features, "--text-dim", "16"], name);
}

/**
 * `preprocess` arguments for ml-100k-mini (no k-core, the poster features, 16-d text) without
 * `--out`.
 */
export function mlMiniPreprocessArgs(): string[] {
  return [
    "preprocess",
    "--format",
    "recbole",
    "--inter",
    join(ML_MINI, "ml-100k-mini.inter.gz"),
    "--item",
    join(ML_MINI, "ml-100k-mini.item"),
    "--kcore",
    "0",
    "--image-features",
    join(ML_MINI, "image_mobilenet_v2.npy"),
    "--text-dim",
    "16",
    "--quiet",
  ];
}

/** Preprocesses ml-100k-mini into `root`/`name` (extra preprocess flags appended); its path. */
export async function mlMiniDataset(
  root: string,
  extra: string[] = [],
  name = "ml",
): Promise<string> {
  const out = join(root, name);
  const r = await runCli([...mlMiniPreprocessArgs(), ...extra, "--out", out]);
  assert.equal(r.code, 0, r.stderr);
  return out;
}

/** Batches of `rows` examples: slice 0 is `fixed`, step s trains on slice s mod `cycle`. */
export function cyclingBatches(
  src: SequenceSource,
  ex: Examples,
  rows: number,
  cycle: number,
  maxLen: number,
  everyPosition = false,
): { fixed: SequenceBatch; batchAt: (s: number) => SequenceBatch } {
  const slice = (k: number) =>
    makeBatch(src, ex, null, k * rows, k * rows + rows, maxLen, 0, null, everyPosition);
  return { fixed: slice(0), batchAt: (s) => slice(s % cycle) };
}

export interface LossDrop {
  /** Adam's learning rate. */
  lr: number;
  steps: number;
  /** The batch measured before and after training (training off, the same draws each time). */
  fixed: SequenceBatch;
  /** The batch of step s. */
  batchAt: (s: number) => SequenceBatch;
  /** The least the measured loss must fall by. */
  minDrop: number;
  /** The loss part measured; default the total. */
  part?: string;
  /** Seeds of the generators for measuring (default 0) and for training (default 2). */
  measureSeed?: number;
  trainSeed?: number;
}

/** `steps` Adam steps on `model` lower its loss on `fixed` by at least `minDrop`. */
export function assertLossFalls(model: SequentialModel, o: LossDrop): void {
  const opt = new Adam(model.parameters(), { lr: o.lr });
  const rng = new Rng(o.trainSeed ?? 2);
  const measure = () =>
    noGrad(() =>
      tidy(() => {
        const out = model.loss(o.fixed, { training: false, rng: new Rng(o.measureSeed ?? 0) });
        return (o.part === undefined ? out.total : out.parts[o.part]).item();
      })
    );
  const before = measure();
  for (let s = 0; s < o.steps; s++) {
    const b = o.batchAt(s);
    tidy(() => {
      backward(model.loss(b, { training: true, rng }).total);
      opt.step();
      opt.zeroGrad();
    });
  }
  const after = measure();
  assert.ok(after < before - o.minDrop, `loss ${before.toFixed(4)} -> ${after.toFixed(4)}`);
}

/** `train --model <model>` into `out` on the wasm backend, quiet; `extra` after the sets. */
export function trainModel(
  ds: string,
  model: string,
  out: string,
  sets: string[],
  extra: string[] = [],
): Promise<CliResult> {
  return runCli([
    "train",
    ds,
    "--model",
    model,
    "--out",
    out,
    ...setFlags(sets),
    ...extra,
    "--backend",
    "wasm",
    "--quiet",
  ]);
}

/** What `train` prints (the parts the model tests read). */
export interface TrainReport {
  status: string;
  model: string;
  test: Record<string, number>;
  [key: string]: unknown;
}

/** A `train` that exited 0 and reports a finished run of `model` with ndcg@10 in [0, 1]. */
export function assertTrained(trained: CliResult, model: string): TrainReport {
  assert.equal(trained.code, 0, trained.stderr);
  const report: TrainReport = JSON.parse(trained.stdout);
  assert.equal(report.status, "finished");
  assert.equal(report.model, model);
  assert.ok(report.test["ndcg@10"] >= 0 && report.test["ndcg@10"] <= 1);
  return report;
}

/**
 * Trains `model` into `run` from the CLI (assertTrained), then checks that `eval` of the run
 * (`evalArgs` added) reproduces its test metrics. Returns the train report.
 */
export async function assertTrainEval(
  ds: string,
  model: string,
  run: string,
  sets: string[],
  evalArgs: string[] = [],
): Promise<TrainReport> {
  const report = assertTrained(await trainModel(ds, model, run, sets), model);
  const evaluated = await runCli(["eval", run, ...evalArgs, "--backend", "wasm", "--quiet"]);
  assert.equal(evaluated.code, 0, evaluated.stderr);
  assert.deepEqual(JSON.parse(evaluated.stdout).metrics, report.test);
  return report;
}

/** `recommend` of a trained run for `user` answers 5 items. */
export async function assertRecommends(run: string, user: string): Promise<void> {
  const rec = await runCliProcess(["recommend", run, "--user", user, "--k", "5", "--quiet"]);
  assert.equal(rec.code, 0, rec.stderr);
  assert.equal(JSON.parse(rec.stdout).items.length, 5);
}
