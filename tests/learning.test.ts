/**
 * Learning test on real data (the beauty-mini fixture): after a short run, SASRec and DuAF-MAT
 * each beat the most-popular baseline on valid NDCG@10 by a clear margin, and every trained model
 * learns in window training (trainMode "window") too.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli } from "./helpers/run_cli.ts";
import { setFlags, tinyDataset } from "./helpers/tiny_run.ts";

const SHORT = [
  "hidden=32",
  "inner=64",
  "layers=1",
  "epochs=2",
  "batchSize=256",
  "lr=0.003",
  "hiddenDropout=0.2",
  "attnDropout=0.2",
  "validKs=10",
];

async function bestValid(
  dataset: string,
  out: string,
  model: string,
  sets = SHORT,
): Promise<number> {
  const r = await runCli([
    "train",
    dataset,
    "--model",
    model,
    "--out",
    out,
    ...setFlags(sets),
    "--quiet",
  ]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout).bestValid;
}

Deno.test("learning: SASRec and DuAF-MAT beat most-popular on valid NDCG@10 after two epochs", async () => {
  const root = await Deno.makeTempDir();
  try {
    const ds = await tinyDataset(root);
    const pop = await bestValid(ds, join(root, "pop"), "pop");
    const sasrec = await bestValid(ds, join(root, "sasrec"), "sasrec");
    const duafmat = await bestValid(ds, join(root, "duafmat"), "duafmat");
    assert.ok(pop > 0, "most-popular scores something");
    assert.ok(sasrec > 2 * pop, `SASRec ${sasrec} vs most-popular ${pop}`);
    assert.ok(duafmat > 2 * pop, `DuAF-MAT ${duafmat} vs most-popular ${pop}`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("learning: every model trained on windows beats a random ranking on valid NDCG@10", async () => {
  const root = await Deno.makeTempDir();
  try {
    const ds = await tinyDataset(root);
    // One window per user: 1,584 examples an epoch, 25 steps of 64.
    const sets = [...SHORT, "trainMode=window", "epochs=3", "batchSize=64"];
    // A random ranking of the fixture's 1,024 items puts the target in the top 10 with
    // probability 10 / 1024, at 1 / log2(rank + 1) each.
    let random = 0;
    for (let r = 1; r <= 10; r++) random += 1 / Math.log2(r + 1) / 1024;
    for (const model of ["sasrec", "gru4rec", "fdsa", "duafmat", "bert4rec", "lrurec"]) {
      const got = await bestValid(ds, join(root, model), model, sets);
      assert.ok(got > 3 * random, `${model} ${got} vs random ${random}`);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
