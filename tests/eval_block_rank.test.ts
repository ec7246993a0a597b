// Ranking in item blocks with a running top-K gives the ranks a full scan gives wherever the
// metrics count them (below the largest K), and the same metrics on trained models.
import assert from "node:assert/strict";
import { join } from "node:path";
import { blockRanks } from "../core/eval/block_rank.ts";
import { BLOCK_ABOVE_BYTES, evaluate } from "../core/eval/evaluate.ts";
import { resolveConfig } from "../core/config.ts";
import { createModel } from "../core/models/registry.ts";
import { rankOf } from "../core/eval/metrics.ts";
import { Rng } from "../core/random.ts";
import { noGrad, tensor, tidy } from "../core/tensor.ts";
import { activateBackend, openRun } from "../core/train/run.ts";
import { TINY_SETS, tinyDataset, tinyImageDataset, tinyTrain } from "./helpers/tiny_run.ts";

Deno.test("blockRanks: the full scan's rank below M, M otherwise, for any block size", async () => {
  await activateBackend("js");
  const rng = new Rng(3);
  const rows = 60, cols = 97, d = 2, m = 10;
  // Scores on a coarse grid have many ties, which both must count the same way.
  const q = (n: number) => Float32Array.from({ length: n }, () => rng.int(5) - 2);
  const users = q(rows * d);
  const items = q(cols * d);
  const targets = Int32Array.from({ length: rows }, () => 1 + rng.int(cols - 1));
  const excluded = Array.from({ length: rows }, (_, r) => new Set([0, (r * 7) % cols]));
  const full = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += users[r * d + k] * items[c * d + k];
      full[r * cols + c] = s;
    }
  }
  const expected = Array.from(
    { length: rows },
    (_, r) => Math.min(m, rankOf(full, r * cols, cols, targets[r], excluded[r])),
  );
  assert.ok(expected.some((x) => x < m) && expected.some((x) => x === m));
  for (const block of [1, 7, 32, 97, 200]) {
    const got = noGrad(() =>
      tidy(() =>
        blockRanks(
          tensor(users, [rows, d]),
          tensor(items, [cols, d]),
          targets,
          (r) => excluded[r],
          m,
          block,
        )
      )
    );
    assert.deepEqual([...got], expected, `block ${block}`);
  }
});

Deno.test("evaluate: item blocks give the same metrics as whole score rows", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-block-eval-" });
  try {
    const plain = await tinyDataset(root);
    const images = await tinyImageDataset(root);
    await activateBackend("wasm");
    for (const [model, ds] of [["sasrec", plain], ["gru4rec", plain], ["duafmat", images]]) {
      const dir = join(root, model);
      await tinyTrain(ds, dir, [...TINY_SETS, `model=${model}`]);
      const run = await openRun(dir);
      for (const maskSeen of [false, true]) {
        const opts = {
          split: "test" as const,
          ks: [1, 5, 10, 20],
          maskSeen,
          batchSize: 64,
          maxLen: run.manifest.config.maxLen,
          origin: run.origin,
        };
        const whole = evaluate(run.model, run.dataset, opts).metrics;
        assert.ok(whole["ndcg@20"] > 0);
        for (const blockItems of [100, 1000]) {
          const blocked = evaluate(run.model, run.dataset, { ...opts, blockItems }).metrics;
          assert.deepEqual(blocked, whole, `${model} maskSeen=${maskSeen} blocks of ${blockItems}`);
        }
      }
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("evaluate: past BLOCK_ABOVE_BYTES a backend that fuses scoring and ranking ranks there", async () => {
  const { backend } = await activateBackend("native");
  if (!backend.rankScores || !(backend as { fusesGemmGelu?: boolean }).fusesGemmGelu) {
    console.log("ignored: no C kernels here");
    return;
  }
  const { model, src, opts } = pastBlockThreshold(11);
  let fused = 0;
  const rankScores = backend.rankScores.bind(backend);
  backend.rankScores = (a) => {
    const took = rankScores(a);
    fused += took ? 1 : 0;
    return took;
  };
  try {
    const auto = evaluate(model, src, opts).metrics;
    assert.equal(fused, 1, "the batch was not ranked by the fused call");
    const blocked = evaluate(model, src, { ...opts, blockItems: 8192 }).metrics;
    assert.equal(fused, 1, "blocks asked for, yet the fused call ranked");
    assert.deepEqual(auto, blocked);
  } finally {
    delete (backend as { rankScores?: unknown }).rankScores;
  }
});

Deno.test("evaluate: a backend that holds larger scores (wholeScoresBytes) ranks them whole", async () => {
  const { backend } = await activateBackend("js");
  const { model, src, opts } = pastBlockThreshold(12);
  let ranked = 0;
  const rankRows = backend.rankRows!.bind(backend);
  backend.rankRows = (...args) => {
    ranked++;
    rankRows(...args);
  };
  const b = backend as { wholeScoresBytes?: number };
  try {
    const blocked = evaluate(model, src, opts).metrics;
    assert.equal(ranked, 0, "past BLOCK_ABOVE_BYTES the js backend ranks in item blocks");
    b.wholeScoresBytes = 1 << 30;
    const whole = evaluate(model, src, opts).metrics;
    assert.equal(ranked, 1, "the whole batch was not ranked on the backend");
    assert.deepEqual(whole, blocked);
  } finally {
    delete (backend as { rankRows?: unknown }).rankRows;
    delete b.wholeScoresBytes;
  }
});

/**
 * A fresh SASRec over a random catalog of 33,000 items, 300 users: 512 users' score rows pass
 * BLOCK_ABOVE_BYTES, so evaluation ranks in item blocks unless the backend ranks otherwise.
 */
function pastBlockThreshold(seed: number) {
  const numItems = 33_000, numUsers = 300, len = 6;
  assert.ok(512 * (numItems + 1) * 4 > BLOCK_ABOVE_BYTES);
  const rng = new Rng(seed);
  const src = {
    numUsers,
    numItems,
    seqOffsets: Int32Array.from({ length: numUsers + 1 }, (_, u) => u * len),
    seqItems: Int32Array.from({ length: numUsers * len }, () => 1 + rng.int(numItems)),
    seqTimes: Float64Array.from({ length: numUsers * len }, (_, i) => i),
  };
  const config = resolveConfig(null, ["model=sasrec", "hidden=16", "heads=1", "inner=32"]);
  const items = {
    numItems,
    text: null,
    image: null,
    itemCategory: new Int32Array(numItems + 1),
    numCategories: 1,
  };
  const model = createModel(config, items, new Rng(config.seed), () => {});
  const opts = {
    split: "test" as const,
    ks: [5, 10, 20],
    maskSeen: true,
    batchSize: 512,
    maxLen: 50,
    origin: 0,
  };
  return { model, src, opts };
}
