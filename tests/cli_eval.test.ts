// `duaf eval` end to end: it reproduces the test metrics `train` reported, and `--expect FILE`
// turns them into a CI check (exit 0 within --tol, exit 1 with one line naming what differs).
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli } from "./helpers/run_cli.ts";
import { tinyDataset, tinyTrain } from "./helpers/tiny_run.ts";

Deno.test("eval: metrics match training's, and --expect checks them", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-cli-eval-" });
  try {
    const ds = await tinyDataset(root);
    const run = join(root, "run");
    const trained = await tinyTrain(ds, run);
    const evalArgs = ["eval", run, "--k", "5,10,20", "--backend", "wasm", "--quiet"];
    const first = await runCli(evalArgs);
    assert.equal(first.code, 0, first.stderr);
    const report = JSON.parse(first.stdout);
    assert.deepEqual(report.metrics, trained.test);
    const expectFile = join(root, "expected.json");

    await t.step("eval's own output as the expectation passes", async () => {
      await Deno.writeTextFile(expectFile, first.stdout);
      const r = await runCli([...evalArgs, "--expect", expectFile, "--tol", "0"]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout).metrics, report.metrics);
    });

    await t.step("a metric off by more than --tol fails with exit 1", async () => {
      const want = {
        "ndcg@10": report.metrics["ndcg@10"] + 0.01,
        "mrr@5": report.metrics["mrr@5"],
      };
      await Deno.writeTextFile(expectFile, JSON.stringify(want));
      const r = await runCli([...evalArgs, "--expect", expectFile, "--tol", "0.001"]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /^duaf eval: metrics differ beyond 0\.001: ndcg@10 /);
      assert.doesNotMatch(r.stderr, /mrr@5/);
      // The measured metrics are still printed for the log.
      assert.deepEqual(JSON.parse(r.stdout).metrics, report.metrics);
    });

    await t.step("the same difference within a looser --tol passes", async () => {
      const r = await runCli([...evalArgs, "--expect", expectFile, "--tol", "0.02"]);
      assert.equal(r.code, 0, r.stderr);
    });

    await t.step("an expected metric that eval does not compute fails", async () => {
      await Deno.writeTextFile(expectFile, JSON.stringify({ "ndcg@50": 0.1 }));
      const r = await runCli([...evalArgs, "--expect", expectFile]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /ndcg@50 not computed$/);
    });

    await t.step("an expectation file that is not JSON is bad input (exit 2)", async () => {
      await Deno.writeTextFile(expectFile, "ndcg@10 = 0.1\n");
      const r = await runCli([...evalArgs, "--expect", expectFile]);
      assert.equal(r.code, 2);
      assert.equal(r.stderr, `duaf eval: ${expectFile}: expected a JSON object of metrics`);
    });

    await t.step(
      "--profile: where setup and evaluation went, on stderr; the same metrics",
      async () => {
        const r = await runCli(["eval", run, "--k", "5,10,20", "--backend", "wasm", "--profile"]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout).metrics, report.metrics);
        for (const phase of ["setup", "eval"]) {
          assert.match(r.stderr, new RegExp(`^${phase} +calls +ms +share$`, "m"));
          assert.match(r.stderr, new RegExp(`^${phase} by category +calls +ms +share$`, "m"));
        }
        assert.match(r.stderr, /^ {2}gemm +\d+ +[\d.]+ +[\d.]+%$/m);
        assert.match(r.stderr, /^ {2}host \(outside backend calls\) +[\d.]+ +[\d.]+%$/m);
      },
    );

    await t.step("--profile with --runtime ort is a usage error (exit 2)", async () => {
      const r = await runCli([...evalArgs, "--profile", "--runtime", "ort"]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^duaf eval: --profile times the engine's backend calls/);
      assert.equal(r.stdout, "");
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
