/**
 * A tiny dataset and training config for the end-to-end CLI tests: the beauty-mini fixture
 * (real Amazon reviews) and a one-layer, 16-wide SASRec trained for 2 epochs of 3 steps, so a
 * whole run takes about a second.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
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
  const r = await runCli([
    "preprocess",
    "--format",
    "amazon2014",
    "--reviews",
    join(FIXTURE, "reviews_Beauty_5.json.gz"),
    "--meta",
    join(FIXTURE, "meta_Beauty.json.gz"),
    "--out",
    out,
    ...extra,
    "--quiet",
  ]);
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
