// A hard kill loses nothing: `duaf train` is SIGKILLed as a real child process at a random step
// (after mid-epoch checkpoints, so the kill may land inside a checkpoint write), resumed with
// `train --resume`, and must end with the same model, state and metrics as a run that was never
// interrupted. Once for SASRec and once for DuAF-MAT with images (MAT-MoE and its critic's own
// optimizer, CSCL, VSCL, modality dropout).
import assert from "node:assert/strict";
import { join } from "node:path";
import { Rng } from "../core/random.ts";
import { readRunManifest } from "../core/train/run_dir.ts";
import { assertSameRun } from "./helpers/same_run.ts";
import { runCli } from "./helpers/run_cli.ts";
import {
  MAIN_TS,
  TINY_SETS,
  tinyDataset,
  tinyImageDataset,
  tinyTrain,
  tinyTrainArgs,
} from "./helpers/tiny_run.ts";

const STEPS = 8;
const EPOCHS = 3;
const SETS = [
  ...TINY_SETS.filter((s) => !/^(maxSteps|epochs)=/.test(s)),
  `maxSteps=${STEPS}`,
  `epochs=${EPOCHS}`,
];

/** Steps done according to the run's manifest (its last checkpoint), or -1 before one. */
async function checkpointedSteps(dir: string): Promise<number> {
  try {
    const cp = (await readRunManifest(dir)).checkpoint;
    return cp ? cp.epoch * STEPS + cp.step : -1;
  } catch {
    return -1; // not written yet, or being replaced
  }
}

/** Starts `train`, SIGKILLs it once its checkpoint has passed `target` steps; returns the code. */
async function trainAndKill(args: string[], dir: string, target: number): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN_TS, ...args],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  while (!exited && (await checkpointedSteps(dir)) < target) {
    await new Promise((r) => setTimeout(r, 5));
  }
  if (!exited) child.kill("SIGKILL");
  const s = await status;
  return s.signal === "SIGKILL" ? 137 : s.code;
}

Deno.test("train: SIGKILL at a random step, then --resume, ends with the same bytes", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "duaf-kill-" });
  // A fresh seed each run covers other steps over time; it is in every failure message.
  const seed = Date.now() % 100_000;
  const rng = new Rng(seed);
  try {
    const plain = await tinyDataset(root);
    const images = await tinyImageDataset(root);
    for (const [model, ds] of [["sasrec", plain], ["duafmat", images]]) {
      await t.step(model, async () => {
        const sets = [...SETS, `model=${model}`];
        const reference = join(root, `${model}-reference`);
        await tinyTrain(ds, reference, sets);
        // The poll that sends the kill can come too late on a loaded machine (the tiny run's last
        // steps take milliseconds): then the same test again with the kill half as far in.
        let target = 1 + rng.int(EPOCHS * STEPS - 2);
        let dir = "", code = 0, what = "";
        for (let attempt = 0; attempt < 4 && code !== 137; attempt++) {
          if (attempt > 0) target = Math.max(1, target >> 1);
          dir = join(root, `${model}-killed-${attempt}`);
          const args = [...tinyTrainArgs(ds, dir, sets), "--checkpoint-every", "0.001"];
          code = await trainAndKill(args, dir, target);
          what = `${model}, kill after step ${target} (test seed ${seed}, attempt ${attempt + 1})`;
        }
        assert.equal(code, 137, `${what}: the run ended before the kill`);
        const m = await readRunManifest(dir);
        assert.notEqual(m.status, "finished", what);
        const resumed = await runCli(["train", "--resume", dir, "--backend", "wasm", "--quiet"]);
        assert.equal(resumed.code, 0, `${what}: ${resumed.stderr}`);
        await assertSameRun(reference, dir, what);
      });
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
