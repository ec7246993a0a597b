/**
 * A tiny dataset and training config for the end-to-end CLI tests: the beauty-mini fixture
 * (real Amazon reviews) and a one-layer, 16-wide SASRec trained for 2 epochs of 3 steps, so a
 * whole run takes about a second.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadDataset } from "../../core/data/dataset.ts";
import { Rng } from "../../core/random.ts";
import { runCli } from "./run_cli.ts";

const FIXTURE = new URL("../../fixtures/beauty-mini/", import.meta.url).pathname;

export const MAIN_TS = new URL("../../cli/main.ts", import.meta.url).pathname;

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
