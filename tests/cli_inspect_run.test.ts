// `duaf inspect` on a run directory (finished and interrupted) and on a sweep, beside datasets.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describeRun } from "../core/train/describe_run.ts";
import { readRunManifest } from "../core/train/run_dir.ts";
import { runCli } from "./helpers/run_cli.ts";
import {
  TINY_SETS,
  tinyDataset,
  tinySweepPlan,
  tinyTrain,
  tinyTrainArgs,
} from "./helpers/tiny_run.ts";

Deno.test("duaf inspect RUN and SWEEP: status, metrics and non-default config", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-cli-inspect-" });
  try {
    const ds = await tinyDataset(root);
    const run = join(root, "run");
    await tinyTrain(ds, run);
    const m = await readRunManifest(run);

    await t.step("a finished run: JSON from its manifest", async () => {
      const r = await runCli(["inspect", run, "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout);
      assert.equal(s.model, "sasrec");
      assert.equal(s.status, "finished");
      assert.equal(s.epochs, m.history.length);
      assert.equal(s.bestEpoch, m.bestEpoch);
      assert.equal(s.valid["ndcg@10"], m.bestMetric);
      assert.deepEqual(s.test, m.test);
      assert.equal(s.checkpoint, null);
      // Exactly the --set keys of the tiny config differ from the defaults.
      const expected = Object.fromEntries(
        TINY_SETS.map((kv) => kv.split("=")).map(([k, v]) => [k, Number(v)]),
      );
      assert.deepEqual(s.config, expected);
    });

    await t.step("nested config keys that differ are named dotted, alone", () => {
      const changed = structuredClone(m);
      changed.config.duafmat.experts += 1;
      const s = describeRun(run, changed);
      assert.equal(s.config["duafmat.experts"], m.config.duafmat.experts + 1);
      assert.equal(Object.keys(s.config).filter((k) => k.startsWith("duafmat")).length, 1);
    });

    await t.step("the text form names status, metrics and config", async () => {
      const r = await runCli(["inspect", run]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^run +.*\nmodel +sasrec\nstatus +finished \(max-epochs\), 2 epochs/);
      assert.match(r.stdout, /\ntest +hit@10 [0-9.]+ +mrr@10/);
      const config = /\nconfig +(.*)$/.exec(r.stdout)![1].split(" ").sort();
      assert.deepEqual(config, [...TINY_SETS].sort());
    });

    await t.step("an interrupted run says where --resume continues", async () => {
      const dir = join(root, "stopped");
      const r = await runCli([...tinyTrainArgs(ds, dir), "--time-limit", "0"]);
      assert.equal(r.code, 75, r.stderr);
      const s = JSON.parse((await runCli(["inspect", dir, "--json"])).stdout);
      assert.equal(s.status, "interrupted");
      assert.deepEqual(s.checkpoint, { epoch: 0, step: 0 });
      assert.match((await runCli(["inspect", dir])).stdout, /resumes at epoch 1 step 0/);
    });

    await t.step("a sweep: its status", async () => {
      const sweep = join(root, "sweep");
      const plan = tinySweepPlan(ds, "1");
      assert.equal(
        (await runCli([...plan, "--out", sweep, "--time-limit", "0", "--quiet"])).code,
        75,
      );
      const r = await runCli(["inspect", sweep, "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout);
      assert.equal(s.runs.length, 1);
      assert.equal(s.runs[0].state, "pending");
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
