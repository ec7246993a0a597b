// The peak-memory estimate before the first step: its terms follow the configuration, a run that
// cannot fit stops in one line naming the key to change (exit 2, nothing written), and one that
// fits prints the estimate and trains.
import assert from "node:assert/strict";
import { join } from "node:path";
import { TrainConfigSchema } from "../core/config.ts";
import { ResourceError } from "../core/errors.ts";
import {
  checkMemory,
  dominantTerm,
  estimateTrainingMemory,
  type MemoryInputs,
  sequenceSizes,
} from "../core/train/memory.ts";
import type { Backend } from "../core/backend.ts";
import { listDir, runCli } from "./helpers/run_cli.ts";
import { MAIN_TS } from "./helpers/tiny_run.ts";

const MiB = 2 ** 20;

function inputs(over: Partial<MemoryInputs> = {}): MemoryInputs {
  return {
    numItems: 1_000_000,
    params: 64_000_000,
    features: 0,
    memoryFactor: 1,
    lastStepLoss: false,
    microTokens: 32768,
    trainLen: 50,
    trainTokens: 32768,
    lossPositions: 2048,
    evalTokens: 512 * 50,
    evalLen: 50,
    ...over,
  };
}

const arena = (bytes: number) => ({ memoryLimit: () => ({ bytes, what: "wasm arena" }) });

Deno.test("memory estimate: its terms follow the configuration", () => {
  const cfg = (o: Record<string, unknown>) => TrainConfigSchema.parse(o);
  // Plain CE over a million items: 2048 positions x 1,000,001 floats, about 8.4 GB.
  const ce = estimateTrainingMemory(cfg({ ceChunkItems: 0 }), inputs());
  assert.match(ce.loss.what, /^CE logits \[2,048 x 1,000,001\]/);
  assert.ok(ce.loss.bytes > 2048 * 1_000_001 * 4, String(ce.loss.bytes));
  assert.equal(dominantTerm(ce), ce.loss);
  assert.match(ce.loss.advice, /ceChunkItems=4096.*loss=gbce/);
  // In blocks of 4096 items the loss is a [2048 x 4096] scratch; auto chunks here too.
  const chunked = estimateTrainingMemory(cfg({ ceChunkItems: 4096 }), inputs());
  assert.ok(chunked.loss.bytes <= 2 * 2048 * 4096 * 4);
  assert.ok(estimateTrainingMemory(cfg({}), inputs()).loss.bytes < 100 * MiB);
  // gbce: [positions x (1 + negatives) x d] candidates and their gradient.
  const gbce = estimateTrainingMemory(cfg({ loss: "gbce", negatives: 127 }), inputs());
  assert.ok(Math.abs(gbce.loss.bytes - 4 * 2048 * 128 * (2 * 64 + 8)) < 1);
  // Shared negatives: [positions x (1 + negatives)] logits, no per-position candidate rows.
  const shared = estimateTrainingMemory(
    cfg({ loss: "gbce", negatives: 127, negativeSharing: "batch" }),
    inputs(),
  );
  assert.ok(Math.abs(shared.loss.bytes - 4 * (2048 * 128 * 4 + 2048 * 64 * 2 + 128 * 64 * 2)) < 1);
  assert.match(shared.loss.what, /shared-negative logits \[2,048 x 128\]/);
  // Resident: 4 floats a parameter (the value, its gradient, Adam's two moments).
  assert.equal(ce.resident.bytes, 4 * 4 * 64_000_000);
  // Activations scale with tokens and the model's memoryFactor; the peak adds the larger of the
  // training step and evaluation to the resident part.
  const half = estimateTrainingMemory(cfg({}), inputs({ trainTokens: 16384 }));
  const base = estimateTrainingMemory(cfg({}), inputs());
  assert.ok(Math.abs(half.activations.bytes * 2 - base.activations.bytes) < 1);
  const heavy = estimateTrainingMemory(cfg({}), inputs({ memoryFactor: 2 }));
  assert.ok(Math.abs(heavy.activations.bytes - 2 * base.activations.bytes) < 1);
  // The last layer at the last step: one layer of the two keeps 4d floats a token instead of
  // 13d + 3 inner + 3.2 heads L (d 64, inner 256, 2 heads, L 50: 1,920), the rest unchanged.
  const last = estimateTrainingMemory(cfg({}), inputs({ lastStepLoss: true }));
  assert.ok(
    Math.abs(base.activations.bytes - last.activations.bytes - 4 * 32768 * (1920 - 256)) < 1,
  );
  // What a memoryFactor adds over SASRec stays at full floats a token.
  const lastHeavy = estimateTrainingMemory(
    cfg({}),
    inputs({ lastStepLoss: true, memoryFactor: 2 }),
  );
  assert.ok(
    Math.abs(lastHeavy.activations.bytes - last.activations.bytes - base.activations.bytes) < 1,
  );
  const trainPart = base.activations.bytes + base.loss.bytes;
  assert.equal(base.peak, base.resident.bytes + Math.max(trainPart, base.evaluation.bytes));
  // A bigger evaluation batch scores more users against the item blocks.
  const evalBig = estimateTrainingMemory(
    cfg({ evalBatchSize: 4096 }),
    inputs({ evalTokens: 4096 * 50 }),
  );
  assert.ok(evalBig.evaluation.bytes > 4 * base.evaluation.bytes);
  assert.match(evalBig.evaluation.advice, /evalBatchSize \(now 4096\)/);
});

Deno.test("memory estimate: sizes from the sequences (prefix, window, evaluation batches)", () => {
  // Users of 4, 8 and 60 interactions; maxLen 50.
  const seqOffsets = Int32Array.from([0, 4, 12, 72]);
  const src = { numUsers: 3, seqOffsets };
  const base = { maxLen: 50, batchSize: 2, evalBatchSize: 2 } as const;
  const prefix = sequenceSizes(src, { ...base, trainMode: "prefix" }, 0);
  assert.equal(prefix.trainLen, 50);
  assert.equal(prefix.trainTokens, 2 * 50);
  assert.equal(prefix.lossPositions, 2);
  // Evaluation sorts users by history: batches (3, 7) and (50): the heavier pads 2 x 7 = 14.
  assert.equal(prefix.evalTokens, 50);
  assert.equal(prefix.evalLen, 50);
  // Window training with 60-token micro-batches: one row of 50, its 50 targets.
  const window = sequenceSizes(src, { ...base, trainMode: "window" }, 60);
  assert.equal(window.trainTokens, 50);
  assert.equal(window.lossPositions, 50);
  const whole = sequenceSizes(src, { ...base, trainMode: "window" }, 0);
  assert.equal(whole.lossPositions, 50 + 5);
});

Deno.test("memory estimate: past the limit is one ResourceError naming the dominant key", () => {
  // 300M parameters: 4.5 GiB with their gradients and Adam's moments.
  const cfg = TrainConfigSchema.parse({});
  const est = estimateTrainingMemory(cfg, inputs({ params: 300_000_000 }));
  assert.throws(
    () => checkMemory(est, arena(4 * 2 ** 30) as unknown as Backend),
    (e: unknown) =>
      e instanceof ResourceError &&
      /^out of wasm arena memory \(estimated peak [\d.]+ GiB of 4\.0 GiB, before the first step\); the largest part is parameters, gradients and Adam state .*: lower hidden/
        .test(e.message),
  );
  checkMemory(est, arena(64 * 2 ** 30) as unknown as Backend);
  checkMemory(est, {} as Backend); // no known limit: no check
});

async function duaf(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN_TS, ...args],
    env: { DUAF_BLAS_THREADS: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test("train: a catalog whose CE logits cannot fit stops before the first step", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-memory-" });
  try {
    // 2,000 users of 12 items each over 24,000 distinct items: plain CE's logits for a batch of
    // 2048 positions are 2048 x 24,001 floats (188 MiB).
    const lines = ["user,item,time"];
    for (let u = 0; u < 2000; u++) {
      for (let j = 0; j < 12; j++) lines.push(`u${u},i${(u * 12 + j) % 24000},${1e9 + j}`);
    }
    const csv = join(root, "inter.csv");
    await Deno.writeTextFile(csv, lines.join("\n") + "\n");
    const ds = join(root, "ds");
    const pre = await runCli([
      "preprocess",
      "--format",
      "csv",
      "--input",
      csv,
      "--user-col",
      "user",
      "--item-col",
      "item",
      "--time-col",
      "time",
      "--kcore",
      "1",
      "--out",
      ds,
      "--quiet",
    ]);
    assert.equal(pre.code, 0, pre.stderr);
    const run = join(root, "run");
    const sets = ["hidden=16", "inner=32", "layers=1", "epochs=1", "maxSteps=1", "evalBatchSize=64"]
      .flatMap((s) => ["--set", s]);
    const args = ["train", ds, "--out", run, "--backend", "wasm", ...sets];
    const env = { DUAF_WASM_MEMORY: "128MiB" };
    const r = await duaf(args, env);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, "");
    const err = r.stderr.split("\n");
    // The estimate line (progress), then the one-line error.
    assert.match(
      err[err.length - 2],
      /^memory: estimated peak [\d.]+ MiB of 128\.0 MiB \(wasm arena\)/,
    );
    assert.match(
      err[err.length - 1],
      /^duaf train: out of wasm arena memory \(estimated peak [\d.]+ MiB of 128\.0 MiB, before the first step\); the largest part is CE logits \[2,048 x 24,001\], [\d.]+ MiB: set ceChunkItems=4096 \(now auto; CE in item blocks\) or loss=gbce$/,
    );
    assert.deepEqual(listDir(root).sort(), ["ds", "inter.csv"]);
    const quiet = await duaf([...args, "--quiet"], env);
    assert.equal(quiet.code, 2);
    assert.equal(quiet.stderr.split("\n").length, 1, quiet.stderr);
    // CE in item blocks fits, and trains.
    const fits = await duaf([...args, "--set", "ceChunkItems=4096"], env);
    assert.equal(fits.code, 0, fits.stderr);
    assert.match(fits.stderr, /^memory: estimated peak [\d.]+ MiB of 128\.0 MiB \(wasm arena\)/m);
    assert.match(fits.stderr, /^memory: measured peak [\d.]+ MiB$/m);
    assert.equal(JSON.parse(fits.stdout).status, "finished");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
