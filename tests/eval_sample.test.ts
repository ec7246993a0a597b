// Validation on a fixed sample of users (`validUsers`): the same users for the same generator,
// others for another, every user when the sample is as large as the split; training with it
// trains the same and validates on the sample.
import assert from "node:assert/strict";
import { join } from "node:path";
import { evaluate } from "../core/eval/evaluate.ts";
import { Rng } from "../core/random.ts";
import { activateBackend, openRun } from "../core/train/run.ts";
import { TINY_SETS, tinyDataset, tinyTrain } from "./helpers/tiny_run.ts";

Deno.test("evaluate with a user sample: the sampled users' metrics, the same users per seed", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-eval-sample-" });
  try {
    const ds = await tinyDataset(root);
    await activateBackend("wasm");
    const dir = join(root, "run");
    await tinyTrain(ds, dir, TINY_SETS);
    const run = await openRun(dir);
    const opts = {
      split: "valid" as const,
      ks: [5, 10, 20],
      maskSeen: false,
      batchSize: 16,
      maxLen: run.manifest.config.maxLen,
      origin: run.origin,
    };
    const all = evaluate(run.model, run.dataset, opts);
    const sample = (n: number, seed: number) =>
      evaluate(run.model, run.dataset, { ...opts, sample: { n, rng: new Rng(seed) } });
    const a = sample(20, 7);
    assert.equal(a.users, 20);
    assert.deepEqual(sample(20, 7).metrics, a.metrics);
    assert.notDeepEqual(sample(20, 8).metrics, a.metrics);
    // At least every user: the full evaluation.
    assert.deepEqual(sample(all.users, 7).metrics, all.metrics);
    assert.deepEqual(sample(all.users + 5, 7).metrics, all.metrics);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("train with validUsers: early stopping sees the sample, test ranks every user", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-valid-users-" });
  try {
    const ds = await tinyDataset(root);
    await tinyTrain(ds, join(root, "full"), TINY_SETS);
    const some = await tinyTrain(ds, join(root, "some"), [...TINY_SETS, "validUsers=15"]);
    const m = JSON.parse(await Deno.readTextFile(join(root, "some", "manifest.json")));
    assert.equal(m.config.validUsers, 15);
    // The same training (validation draws nothing from the run's generators), other valid
    // numbers; test ranks every user either way.
    const fullM = JSON.parse(await Deno.readTextFile(join(root, "full", "manifest.json")));
    assert.deepEqual(
      m.history.map((h: { loss: unknown }) => h.loss),
      fullM.history.map((h: { loss: unknown }) => h.loss),
    );
    assert.notDeepEqual(m.history[0].valid, fullM.history[0].valid);
    assert.equal(typeof (some.test as Record<string, number>)["ndcg@10"], "number");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
