// `duaf train` end to end: the same seed, data, config and backend give byte-identical
// checkpoints, and a run interrupted mid-epoch (through the library's shouldStop hook, or a real
// SIGINT to the CLI process) then resumed with `train --resume` ends exactly where an
// uninterrupted run does.
import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveConfig } from "../core/config.ts";
import { activateBackend, runTraining } from "../core/train/run.ts";
import { readRunManifest } from "../core/train/run_dir.ts";
import { listDir, runCli } from "./helpers/run_cli.ts";
import { assertSameRun } from "./helpers/same_run.ts";
import { MAIN_TS, TINY_SETS, tinyDataset, tinyTrain, tinyTrainArgs } from "./helpers/tiny_run.ts";

Deno.test("train: reproducible bytes, and --resume after an interruption matches", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-cli-train-" });
  try {
    const ds = await tinyDataset(root);
    const reference = join(root, "reference");
    const first = await tinyTrain(ds, reference);
    assert.equal(first.status, "finished");
    assert.deepEqual(listDir(reference), [
      "manifest.json",
      "model.safetensors",
      "state.safetensors",
    ]);

    await t.step("a second run with the same seed is byte-identical", async () => {
      const again = join(root, "again");
      const second = await tinyTrain(ds, again);
      await assertSameRun(reference, again);
      assert.deepEqual(second.test, first.test);
    });

    await t.step("another seed gives other parameters", async () => {
      const other = join(root, "other-seed");
      await tinyTrain(ds, other, [...TINY_SETS, "seed=7"]);
      const a = await Deno.readFile(join(reference, "model.safetensors"));
      const b = await Deno.readFile(join(other, "model.safetensors"));
      assert.ok(a.some((v, i) => v !== b[i]), "a different seed should change the model");
    });

    await t.step("--profile reports phases on stderr and changes no byte of the run", async () => {
      const dir = join(root, "profiled");
      const r = await runCli([...tinyTrainArgs(ds, dir), "--profile"]);
      assert.equal(r.code, 0, r.stderr);
      await assertSameRun(reference, dir);
      for (const phase of ["setup", "train", "eval"]) {
        assert.match(r.stderr, new RegExp(`^${phase} +calls +ms +share$`, "m"));
      }
      assert.match(r.stderr, /^ {2}gemm +\d+ +[\d.]+ +[\d.]+%$/m);
      assert.match(r.stderr, /^ {2}host \(outside backend calls\) +[\d.]+ +[\d.]+%$/m);
      assert.equal(JSON.parse(r.stdout).status, "finished");
    });

    // shouldStop is polled before every step: with 3 steps per epoch, poll 2 is epoch 1's second
    // step and poll 5 is epoch 2's second step.
    for (const [stopAt, epoch, step] of [[2, 0, 1], [5, 1, 1]]) {
      await t.step(`stopped at epoch ${epoch + 1} step ${step + 1}, then --resume`, async () => {
        const dir = join(root, `stopped-${stopAt}`);
        await activateBackend("wasm");
        let polls = 0;
        const r = await runTraining({
          dataset: ds,
          out: dir,
          config: resolveConfig(null, TINY_SETS),
          backendName: "wasm",
          shouldStop: () => ++polls >= stopAt,
        });
        assert.equal(r.outcome.stopped, "interrupted");
        assert.equal(r.manifest.status, "interrupted");
        assert.equal(r.outcome.state.epoch, epoch);
        assert.equal(r.outcome.state.step, step);
        const resumed = await runCli(["train", "--resume", dir, "--backend", "wasm", "--quiet"]);
        assert.equal(resumed.code, 0, resumed.stderr);
        assert.equal(JSON.parse(resumed.stdout).status, "finished");
        await assertSameRun(reference, dir);
      });
    }

    // Full epochs of the fixture (about 200 steps of 64), far longer than the tiny config's,
    // so a signal lands while epoch 2 trains even on a fast, idle machine.
    const sets = [...TINY_SETS.filter((s) => !s.startsWith("maxSteps")), "maxSteps=200"];
    const expected = join(root, "signal-reference");
    await tinyTrain(ds, expected, sets);
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      await t.step(`${signal} to a running \`duaf train\`, then --resume`, async () => {
        const dir = join(root, signal);
        const args = tinyTrainArgs(ds, dir, sets).filter((a) => a !== "--quiet");
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", MAIN_TS, ...args],
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const stdout = new Response(child.stdout).text();
        let log = "";
        let signalled: Promise<void> | null = null;
        for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
          log += chunk;
          // The per-epoch summary line: epoch 2 starts right after it (and its checkpoint writes).
          // Landing on the epoch boundary instead of mid-epoch must resume just as exactly.
          if (!signalled && /^epoch 1: .*valid/m.test(log)) {
            signalled = new Promise((done) =>
              setTimeout(() => {
                try {
                  child.kill(signal);
                } catch { /* already exited: the exit code check below reports it */ }
                done();
              }, 20)
            );
          }
        }
        const status = await child.status;
        assert.ok(signalled, `no epoch line seen:\n${log}`);
        await signalled;
        assert.equal(status.code, code, log);
        const out = JSON.parse(await stdout);
        assert.equal(out.status, "interrupted");
        assert.equal(out.stoppedBy, signal);
        const m = await readRunManifest(dir);
        assert.equal(m.status, "interrupted");
        assert.equal(m.history.length, 1);
        const resumed = await runCli(["train", "--resume", dir, "--backend", "wasm", "--quiet"]);
        assert.equal(resumed.code, 0, resumed.stderr);
        await assertSameRun(expected, dir);
      });
    }

    await t.step(
      "--time-limit: a checkpoint, exit 75, and --resume ends where an uninterrupted run does",
      async () => {
        // A limit of 0 s is reached at the first step, so the stop is deterministic: the run
        // saves its state before training anything and resumes from there.
        const dir = join(root, "time-limit");
        const r = await runCli([...tinyTrainArgs(ds, dir), "--time-limit", "0"]);
        assert.equal(r.code, 75, r.stderr);
        const out = JSON.parse(r.stdout);
        assert.equal(out.status, "interrupted");
        assert.equal(out.stoppedBy, "time-limit");
        const resumed = await runCli(["train", "--resume", dir, "--backend", "wasm", "--quiet"]);
        assert.equal(resumed.code, 0, resumed.stderr);
        await assertSameRun(reference, dir);
      },
    );

    await t.step(
      "--time-limit takes seconds or h/m/s durations; anything else is a usage error",
      async () => {
        const r = await runCli([
          ...tinyTrainArgs(ds, join(root, "bad-limit")),
          "--time-limit",
          "10 min",
        ]);
        assert.equal(r.code, 2);
        assert.match(r.stderr, /--time-limit: expected seconds or a duration like 90m/);
        assert.equal(r.stdout, "");
      },
    );

    await t.step("--resume of a finished run is refused with one line", async () => {
      const r = await runCli(["train", "--resume", reference, "--quiet"]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^duaf train: .*run already finished$/);
      assert.equal(r.stdout, "");
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("train in window mode: reproducible bytes, and --resume after an interruption matches", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-cli-window-" });
  try {
    const ds = await tinyDataset(root);
    // The original SASRec's window; then a random window end per epoch, BCE with a negative per
    // position (drawn from the step generator) and micro-batches of a few rows.
    const configs = {
      window: [...TINY_SETS, "trainMode=window"],
      "random-bce-micro": [
        ...TINY_SETS,
        "trainMode=window",
        "windowEnd=random",
        "loss=bce",
        "tokenBudget=256",
      ],
    };
    for (const [name, sets] of Object.entries(configs)) {
      const reference = join(root, `${name}-reference`);
      await tinyTrain(ds, reference, sets);
      await t.step(`${name}: a second run with the same seed is byte-identical`, async () => {
        const again = join(root, `${name}-again`);
        await tinyTrain(ds, again, sets);
        await assertSameRun(reference, again);
      });
      await t.step(`${name}: stopped at epoch 2 step 2, then --resume`, async () => {
        const dir = join(root, `${name}-stopped`);
        await activateBackend("wasm");
        let polls = 0;
        const r = await runTraining({
          dataset: ds,
          out: dir,
          config: resolveConfig(null, sets),
          backendName: "wasm",
          shouldStop: () => ++polls >= 5,
        });
        assert.equal(r.outcome.stopped, "interrupted");
        assert.deepEqual([r.outcome.state.epoch, r.outcome.state.step], [1, 1]);
        const resumed = await runCli(["train", "--resume", dir, "--backend", "wasm", "--quiet"]);
        assert.equal(resumed.code, 0, resumed.stderr);
        await assertSameRun(reference, dir);
      });
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
