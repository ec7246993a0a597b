// Popularity-sampled negatives: the alias sampler draws from the distribution it was built for,
// reproducibly; counts come from the training split only; sampled softmax takes the logQ
// correction and gBCE a per-target β, both checked against hand computations.
import assert from "node:assert/strict";
import { join } from "node:path";
import { lossPositions, type SequenceBatch } from "../core/models/batch.ts";
import {
  NegativeDistribution,
  negativeDistribution,
  trainingItemCounts,
} from "../core/models/negatives.ts";
import { nextItemLoss } from "../core/models/sasrec.ts";
import type { SamplingDistribution } from "../core/nn/context.ts";
import { Rng } from "../core/random.ts";
import { tensor, tidy, withBackend } from "../core/tensor.ts";
import { f64, gradCheck } from "./helpers/gradcheck.ts";
import { TINY_SETS, tinyDataset, tinyTrain } from "./helpers/tiny_run.ts";

const COUNTS = [0, 400, 90, 30, 7, 0, 150, 1];

/** Pearson's χ² of `draws` draws of d against probabilities `p` (items 1..n). */
function chiSquare(d: NegativeDistribution, p: ArrayLike<number>, draws: number, seed: number) {
  const seen = new Float64Array(p.length);
  const rng = new Rng(seed);
  for (let i = 0; i < draws; i++) seen[d.draw(rng)]++;
  let chi = 0;
  for (let i = 1; i < p.length; i++) chi += (seen[i] - draws * p[i]) ** 2 / (draws * p[i]);
  return { chi, padding: seen[0] };
}

Deno.test("popularity negatives: alias draws match q ∝ (count + 1)^power (χ²)", () => {
  for (const power of [0.75, 1]) {
    const d = NegativeDistribution.popularity(COUNTS, power);
    const w = COUNTS.map((c, i) => (i === 0 ? 0 : (c + 1) ** power));
    const total = w.reduce((a, v) => a + v, 0);
    const p = w.map((v) => v / total);
    for (let i = 1; i < p.length; i++) assert.ok(Math.abs(d.prob[i] - p[i]) < 1e-12);
    // 7 degrees of freedom: P(χ² > 30) ≈ 1e-4 for a correct sampler; at 200k draws an error of
    // 2% on the most probable items already adds more than that.
    const { chi, padding } = chiSquare(d, p, 200_000, 11);
    assert.ok(chi < 30, `power ${power}: χ² ${chi.toFixed(1)}`);
    assert.equal(padding, 0, "the padding item is never drawn");
    // The same draws against the other exponent's distribution are far off: the bound can fail.
    const other = NegativeDistribution.popularity(COUNTS, power === 1 ? 0.75 : 1);
    assert.ok(chiSquare(d, other.prob, 200_000, 11).chi > 1000);
  }
});

Deno.test("popularity negatives: the same seed draws the same items, another seed others", () => {
  const d = NegativeDistribution.popularity(COUNTS, 0.75);
  const draw = (seed: number) => {
    const rng = new Rng(seed);
    return Array.from({ length: 64 }, () => d.draw(rng)).join(",");
  };
  assert.equal(draw(3), draw(3));
  assert.notEqual(draw(3), draw(4));
});

Deno.test("popularity negatives: counts come from the training split only", () => {
  // User 0: 1 2 3 | valid 4 | test 5. User 1: 1 6 | valid 7 | test 2. User 2: 3 | test 8 (too short to train on).
  const seqs = [[1, 2, 3, 4, 5], [1, 6, 7, 2], [3, 8]];
  const src = {
    numUsers: 3,
    numItems: 8,
    seqOffsets: Int32Array.from([0, 5, 9, 11]),
    seqItems: Int32Array.from(seqs.flat()),
  };
  const counts = Array.from(trainingItemCounts(src));
  assert.deepEqual(counts, [0, 2, 1, 1, 0, 0, 1, 0, 0]);
  const cfg = { loss: "sampled", negativeSampling: "popularity", popularityPower: 1 } as const;
  const d = negativeDistribution(cfg, src)!;
  // Held-out targets only (4, 5, 7, 8) keep the +1 floor, the least mass.
  const total = counts.reduce((a, c) => a + c + 1, 0) - 1;
  assert.ok(Math.abs(d.prob[4] - 1 / total) < 1e-12);
  assert.ok(Math.abs(d.prob[1] - 3 / total) < 1e-12);
  assert.equal(negativeDistribution({ ...cfg, negativeSampling: "uniform" }, src), null);
  assert.equal(negativeDistribution({ ...cfg, loss: "ce" }, src), null);
});

/** A distribution whose draws are a fixed list, for hand computations. */
function scripted(prob: number[], draws: number[]): SamplingDistribution {
  let next = 0;
  return {
    prob: Float64Array.from(prob),
    logProb: Float32Array.from(prob, Math.log),
    draw: () => draws[next++ % draws.length],
  };
}

function positions(targets: number[]): ReturnType<typeof lossPositions> {
  const n = targets.length;
  const batch = {
    size: n,
    len: 1,
    items: new Int32Array(n),
    times: new Float32Array(n),
    lengths: new Int32Array(n).fill(1),
    users: new Int32Array(n),
    targets: Int32Array.from(targets),
  } satisfies SequenceBatch;
  return lossPositions(batch);
}

Deno.test("logQ correction: sampled softmax over s - log q, gBCE with β = 1 - t + t·K·q", () => {
  // Two items and one row: h = [1, 0], item 1 scores 2, item 2 scores 0; target 1, K = 2
  // negatives drawn as items 2 and 1; q = (0.8, 0.2).
  const h = [1, 0];
  const table = [0, 0, 2, 0, 0, 0];
  const q = [0, 0.8, 0.2];
  const run = (kind: "sampled" | "gbce", dist: SamplingDistribution | null, t = 0.5) =>
    withBackend(
      f64,
      () =>
        tidy(() =>
          nextItemLoss(tensor(h, [1, 2]), tensor(table, [3, 2]), positions([1]), kind, "auto", {
            rng: new Rng(1),
            count: 2,
            t,
            distribution: dist,
          }).item()
        ),
    );
  const lse = (xs: number[]) => Math.log(xs.reduce((a, x) => a + Math.exp(x), 0));
  // Columns: target (item 1, s 2), item 2 (s 0), item 1 (s 2).
  const corrected = [2 - Math.log(0.8), 0 - Math.log(0.2), 2 - Math.log(0.8)];
  const want = lse(corrected) - corrected[0];
  const got = run("sampled", scripted(q, [2, 1]));
  assert.ok(Math.abs(got - want) < 1e-6, `${got} vs ${want}`);
  // Without the correction the same draws give lse(2, 0, 2) - 2: the correction moved it.
  const plain = lse([2, 0, 2]) - 2;
  assert.ok(Math.abs(got - plain) > 0.1);
  // gBCE: β = 1 - t + t·K·q(target) = 0.5 + 0.5·2·0.8 = 1.3; negatives' logits uncorrected.
  const sp = (x: number) => Math.log1p(Math.exp(x));
  const gb = run("gbce", scripted(q, [2, 1]));
  const wantGb = 1.3 * sp(-2) + sp(0) + sp(2);
  assert.ok(Math.abs(gb - wantGb) < 1e-6, `${gb} vs ${wantGb}`);
  // Shared negatives (one draw for the row's K columns) give the same columns here: one row.
  const shared = (kind: "sampled" | "gbce") =>
    withBackend(
      f64,
      () =>
        tidy(() =>
          nextItemLoss(tensor(h, [1, 2]), tensor(table, [3, 2]), positions([1]), kind, "auto", {
            rng: new Rng(1),
            count: 2,
            t: 0.5,
            distribution: scripted(q, [2, 1]),
            shared: true,
          }).item()
        ),
    );
  assert.ok(Math.abs(shared("sampled") - want) < 1e-6, `${shared("sampled")} vs ${want}`);
  assert.ok(Math.abs(shared("gbce") - wantGb) < 1e-6, `${shared("gbce")} vs ${wantGb}`);
  // Uniform q over both items is a constant shift: the same loss as plain sampled softmax.
  const flat = run("sampled", scripted([0, 0.5, 0.5], [2, 1]));
  assert.ok(Math.abs(flat - plain) < 1e-6);
});

Deno.test("popularity-sampled losses: finite-difference gradients", () => {
  const d = NegativeDistribution.popularity([0, 5, 1, 0, 9, 2, 3, 0, 1, 4], 0.75);
  for (const kind of ["gbce", "sampled"] as const) {
    gradCheck(
      `${kind} popularity loss`,
      [{ shape: [3, 4] }, { shape: [10, 4] }],
      ([h, table]) =>
        nextItemLoss(h, table, positions([2, 7, 9]), kind, "auto", {
          rng: new Rng(5),
          count: 5,
          t: 0.75,
          distribution: d,
        }),
    );
    gradCheck(
      `${kind} popularity loss, shared negatives`,
      [{ shape: [3, 4] }, { shape: [10, 4] }],
      ([h, table]) =>
        nextItemLoss(h, table, positions([2, 7, 9]), kind, "auto", {
          rng: new Rng(5),
          count: 5,
          t: 0.75,
          distribution: d,
          shared: true,
        }),
    );
  }
});

Deno.test("train with negativeSampling=popularity: reproducible runs that rank", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-popneg-" });
  try {
    const ds = await tinyDataset(root);
    const sets = [...TINY_SETS, "loss=sampled", "negatives=32", "negativeSampling=popularity"];
    const a = await tinyTrain(ds, join(root, "a"), sets);
    await tinyTrain(ds, join(root, "b"), sets);
    await tinyTrain(ds, join(root, "u"), sets.slice(0, -1));
    const bytes = (d: string) => Deno.readFile(join(root, d, "model.safetensors"));
    const same = (x: Uint8Array, y: Uint8Array) =>
      x.length === y.length && x.every((v, i) => v === y[i]);
    assert.ok(same(await bytes("a"), await bytes("b")), "bytes differ between seeded runs");
    assert.ok(!same(await bytes("a"), await bytes("u")), "popularity sampling changed nothing");
    assert.equal(a.status, "finished");
    assert.ok((a.test as Record<string, number>)["hit@20"] > 0, JSON.stringify(a.test));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
