// `duaf bench`: one JSON object per backend with consistent timings, a whole epoch with --steps 0,
// a Markdown table, and one-line usage errors.
import assert from "node:assert/strict";
import { runCli } from "./helpers/run_cli.ts";
import { setFlags, tinyDataset } from "./helpers/tiny_run.ts";

const SETS = ["hidden=16", "inner=32", "layers=1", "batchSize=64"];

Deno.test("duaf bench: timings per backend, a whole epoch, a table, usage errors", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-cli-bench-" });
  try {
    const ds = await tinyDataset(root);
    const base = ["bench", ds, ...setFlags(SETS), "--quiet"];

    await t.step("two backends: one JSON line each, timings that add up", async () => {
      const r = await runCli([...base, "--backend", "wasm,js", "--steps", "4"]);
      assert.equal(r.code, 0, r.stderr);
      const rows = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
      assert.deepEqual(rows.map((x) => x.backend), ["wasm", "js"]);
      for (const x of rows) {
        assert.equal(x.model, "sasrec");
        assert.equal(x.steps, 4);
        assert.ok(x.stepsPerEpoch > 4, JSON.stringify(x));
        const s = x.stepSeconds;
        assert.ok(s.min > 0 && s.min <= s.median && s.median <= s.max, JSON.stringify(s));
        assert.ok(Math.abs(x.epochSecondsEstimate - s.mean * x.stepsPerEpoch) < 1e-9);
        assert.ok(x.gemmGflops > 0 && x.evalUsersPerSecond.valid > 0);
        assert.ok(x.evalUsersPerSecond.test > 0 && x.peakRssMiB > 0);
        // The floor: the useful FLOPs at the measured sgemm rate, and the times as multiples.
        const f = x.floor;
        assert.ok(f.epochSeconds > 0 && f.evalSeconds > 0, JSON.stringify(f));
        assert.ok(Math.abs(f.epochRatio * f.epochSeconds - x.epochSecondsEstimate) < 1e-9);
        // evalRatio * evalSeconds is the test evaluation's time: users / (users per second).
        const users = f.evalRatio * f.evalSeconds * x.evalUsersPerSecond.test;
        assert.ok(users >= 1 && Math.abs(users - Math.round(users)) < 1e-6, String(users));
      }
      assert.ok(rows[0].backendPeakMiB > 0, "the wasm arena's peak");
    });

    await t.step(
      "the floor follows the train mode; models it does not count have none",
      async () => {
        const floorOf = async (...args: string[]) => {
          const r = await runCli([...base, "--backend", "wasm", "--steps", "2", ...args]);
          assert.equal(r.code, 0, r.stderr);
          return JSON.parse(r.stdout).floor;
        };
        const prefix = await floorOf();
        const window = await floorOf("--set", "trainMode=window");
        // Window training has one example per user, prefix training one per history step.
        assert.ok(window.epochSeconds > 0 && window.epochSeconds !== prefix.epochSeconds);
        assert.equal(await floorOf("--model", "gru4rec"), null);
      },
    );

    await t.step("--steps 0 times the whole epoch", async () => {
      const r = await runCli([...base, "--backend", "wasm", "--steps", "0"]);
      assert.equal(r.code, 0, r.stderr);
      const x = JSON.parse(r.stdout);
      assert.equal(x.steps, x.stepsPerEpoch);
      assert.ok(x.epochSecondsEstimate >= x.stepSeconds.mean * (x.steps - 1));
    });

    await t.step("--format md: a Markdown table on stdout", async () => {
      const r = await runCli([...base, "--backend", "wasm", "--steps", "2", "--format", "md"]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split("\n");
      assert.equal(lines.length, 3);
      assert.match(lines[0], /^\| backend \| model \|/);
      assert.match(lines[2], /^\| wasm \| sasrec \| prefix \| 64 \|/);
    });

    await t.step("usage errors: one line, exit 2, nothing on stdout", async () => {
      for (
        const [args, msg] of [
          [["--steps", "1"], /--steps: expected 0 \(a whole epoch\) or at least 2/],
          [["--backend", "nope"], /unknown backend 'nope'/],
          [["--format", "csv"], /--format: expected one of json, md/],
        ] as const
      ) {
        const r = await runCli([...base, ...args]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, msg);
        assert.equal(r.stdout, "");
      }
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
