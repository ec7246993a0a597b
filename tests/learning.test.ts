/**
 * Learning test on real data (the beauty-mini fixture): after a short run, SASRec and DuAF-MAT
 * each beat the most-popular baseline on valid NDCG@10 by a clear margin.
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

async function bestValid(dataset: string, out: string, model: string): Promise<number> {
  const r = await runCli([
    "train",
    dataset,
    "--model",
    model,
    "--out",
    out,
    ...setFlags(SHORT),
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
