/**
 * Comparing two run directories: the same checkpoint bytes (model and resumable state) and the
 * same outcome, everything but wall-clock timings.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readRunManifest } from "../../core/train/run_dir.ts";
import type { EpochRecord } from "../../core/train/trainer.ts";

/** What must not differ between two runs: everything but wall-clock timings. */
export async function runOutcome(dir: string) {
  const m = await readRunManifest(dir);
  return {
    status: m.status,
    stopped: m.stopped,
    bestEpoch: m.bestEpoch,
    bestMetric: m.bestMetric,
    test: m.test,
    history: (m.history as EpochRecord[]).map((r) => ({
      epoch: r.epoch,
      steps: r.steps,
      loss: r.loss,
      valid: r.valid,
    })),
  };
}

export async function assertSameRun(expected: string, actual: string, what = ""): Promise<void> {
  for (const f of ["model.safetensors", "state.safetensors"]) {
    const a = await Deno.readFile(join(expected, f));
    const b = await Deno.readFile(join(actual, f));
    assert.ok(a.length === b.length && a.every((v, i) => v === b[i]), `${what} ${f} bytes differ`);
  }
  assert.deepEqual(await runOutcome(actual), await runOutcome(expected), what);
}
