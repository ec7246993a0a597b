/**
 * BERT4Rec: the cloze masking (seeded, never on padding, last-item and capped variants), the
 * training and inference sequences, scoreAll's shape, learning on beauty-mini, and
 * `duaf train --model bert4rec` end to end.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { JsBackend } from "../core/backends/js.ts";
import { loadDataset } from "../core/data/dataset.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import {
  Bert4rec,
  type Bert4recConfig,
  inferenceRows,
  type ItemRows,
  maskRows,
  trainingRows,
} from "../core/models/bert4rec.ts";
import { makeBatch, splitExamples, timestampOrigin } from "../core/models/examples.ts";
import type { LossKind } from "../core/models/sasrec.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { assertSameRun } from "./helpers/same_run.ts";
import {
  assertLossFalls,
  assertTrained,
  TINY_SETS,
  tinyDataset,
  trainModel,
} from "./helpers/tiny_run.ts";

const MASK = 99;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Right-padded rows from explicit sequences. */
function rowsOf(seqs: number[][], len: number): ItemRows {
  const items = new Int32Array(seqs.length * len);
  seqs.forEach((s, r) => s.forEach((it, j) => (items[r * len + j] = it)));
  return { size: seqs.length, len, items, lengths: Int32Array.from(seqs.map((s) => s.length)) };
}

function batchOf(seqs: number[][], targets: number[], len: number): SequenceBatch {
  const rows = rowsOf(seqs, len);
  return {
    ...rows,
    times: new Float32Array(rows.items.length),
    users: Int32Array.from(seqs.map((_, i) => i)),
    targets: Int32Array.from(targets),
  };
}

const tinyCfg = (numItems: number, loss: LossKind = "ce"): Bert4recConfig => ({
  numItems,
  maxLen: 5,
  layers: 1,
  heads: 2,
  hidden: 8,
  inner: 16,
  hiddenDropout: 0.1,
  attnDropout: 0.1,
  layerNormEps: 1e-12,
  initStd: 0.02,
  loss,
  maskRatio: 0.2,
  ftRatio: 0.5,
});

Deno.test("bert4rec masking: seeded, deterministic, and never on padding", () => {
  const seqs = Array.from(
    { length: 40 },
    (_, r) => Array.from({ length: 1 + (r % 12) }, (_, j) => 1 + ((r + j) % 30)),
  );
  const rows = rowsOf(seqs, 12);
  const draw = (seed: number) => maskRows(rows, new Rng(seed), 0.3, 0, 100, MASK);
  const a = draw(5);
  const b = draw(5);
  assert.deepEqual([...a.input.items], [...b.input.items]);
  assert.deepEqual([...a.at.index], [...b.at.index]);
  const c = draw(6);
  assert.notDeepEqual([...a.at.index], [...c.at.index], "another seed masks other positions");
  let masked = 0;
  for (let r = 0; r < rows.size; r++) {
    for (let j = 0; j < rows.len; j++) {
      const i = r * rows.len + j;
      if (j >= rows.lengths[r]) assert.equal(a.input.items[i], 0, `padding at ${r},${j} kept`);
      else if (a.input.items[i] === MASK) masked++;
      else assert.equal(a.input.items[i], rows.items[i]);
    }
  }
  // Every masked position is a loss position (no cap hit), with the original item as target.
  assert.equal(a.at.index.length, masked);
  const total = rows.lengths.reduce((s, n) => s + n, 0);
  assert.ok(masked > 0.15 * total && masked < 0.45 * total, `${masked} of ${total} masked`);
  a.at.index.forEach((i, k) => {
    assert.equal(a.input.items[i], MASK);
    assert.equal(a.at.targets[k], rows.items[i]);
    assert.ok(i % rows.len < rows.lengths[Math.floor(i / rows.len)]);
  });
});

Deno.test("bert4rec masking: last-item batches, the loss cap, and the no-mask fallback", () => {
  const rows = rowsOf([[1, 2, 3, 4], [5, 6], [7]], 4);
  const last = maskRows(rows, new Rng(1), 0.2, 1, 10, MASK);
  assert.deepEqual([...last.input.items], [1, 2, 3, MASK, 5, MASK, 0, 0, MASK, 0, 0, 0]);
  assert.deepEqual([...last.at.index], [3, 5, 8]);
  assert.deepEqual([...last.at.targets], [4, 6, 7]);
  // Every item masked, the loss kept at each row's two most recent masked positions.
  const capped = maskRows(rows, new Rng(1), 1, 0, 2, MASK);
  assert.deepEqual([...capped.input.items], [
    MASK,
    MASK,
    MASK,
    MASK,
    MASK,
    MASK,
    0,
    0,
    MASK,
    0,
    0,
    0,
  ]);
  assert.deepEqual([...capped.at.index], [2, 3, 4, 5, 8]);
  assert.deepEqual([...capped.at.targets], [3, 4, 5, 6, 7]);
  // Nothing drawn: each row's last item is masked instead of an empty loss.
  const none = maskRows(rows, new Rng(1), 0, 0, 2, MASK);
  assert.deepEqual([...none.at.index], [3, 5, 8]);
});

Deno.test("bert4rec sequences: training appends the target, inference the mask token", () => {
  const batch = batchOf([[1, 2, 3, 4, 5], [6, 7], [8]], [9, 10, 11], 5);
  const train = trainingRows(batch, 5);
  assert.equal(train.len, 5);
  assert.deepEqual([...train.items], [2, 3, 4, 5, 9, 6, 7, 10, 0, 0, 8, 11, 0, 0, 0]);
  assert.deepEqual([...train.lengths], [5, 3, 2]);
  const inf = inferenceRows(batch, 5, MASK);
  assert.deepEqual([...inf.items], [2, 3, 4, 5, MASK, 6, 7, MASK, 0, 0, 8, MASK, 0, 0, 0]);
  // Shorter than maxLen: one more column, nothing dropped.
  const short = inferenceRows(batchOf([[1, 2], [3]], [0, 0], 2), 5, MASK);
  assert.equal(short.len, 3);
  assert.deepEqual([...short.items], [1, 2, MASK, 3, MASK, 0]);
});

Deno.test("bert4rec scores: [size, numItems + 1], the dot products of scoreParts", () => {
  withBackend(new JsBackend(), () => {
    const model = new Bert4rec(tinyCfg(12), new Rng(3));
    assert.equal(model.maskToken, 13);
    assert.equal(model.itemEmbedding.weight.shape[0], 14);
    model.eval();
    const batch = batchOf([[1, 2, 3, 4, 5], [6, 7], [8]], [0, 0, 0], 5);
    const ctx = { training: false, rng: new Rng(0) };
    tidy(() => {
      const scores = model.scoreAll(batch, ctx);
      assert.deepEqual(scores.shape, [3, 13]);
      const { users, items } = model.scoreParts(batch, ctx);
      const again = op.matmul(users, items, false, true).toFloat32();
      assert.deepEqual([...scores.toFloat32()], [...again]);
      // The history matters: another last item gives other scores.
      const other = model.scoreAll(batchOf([[1, 2, 3, 4, 6], [6, 7], [8]], [0, 0, 0], 5), ctx);
      assert.notDeepEqual([...other.toFloat32().slice(0, 13)], [
        ...scores.toFloat32().slice(0, 13),
      ]);
    });
  });
});

Deno.test("bert4rec losses: every kind gives a finite loss with gradients", () => {
  withBackend(new JsBackend(), () => {
    for (const kind of ["ce", "bce", "gbce", "sampled"] as const) {
      const model = new Bert4rec({ ...tinyCfg(12, kind), negatives: 4 }, new Rng(3));
      const batch = batchOf([[1, 2, 3, 4, 5], [6, 7], [8]], [9, 10, 11], 5);
      tidy(() => {
        const { total } = model.loss(batch, { training: true, rng: new Rng(2) });
        const v = total.item();
        assert.ok(Number.isFinite(v) && v > 0, `${kind}: ${v}`);
        backward(total);
      });
      const g = model.outputBias.grad!.toFloat32();
      assert.ok(g.some((x) => x !== 0), `${kind}: output_bias gets a gradient`);
    }
  });
});

Deno.test("bert4rec learns: Adam steps on beauty-mini reduce the cloze loss", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-bert4rec-" });
  try {
    const ds = await loadDataset(await tinyDataset(root));
    const ex = splitExamples(ds, "train");
    const origin = timestampOrigin(ds);
    withBackend(new JsBackend(), () => {
      const model = new Bert4rec(
        { ...tinyCfg(ds.numItems), hidden: 16, inner: 32, maxLen: 20 },
        new Rng(1),
      );
      // The same masks every time, dropout off: only the parameters change between measures.
      assertLossFalls(model, {
        lr: 5e-3,
        steps: 20,
        fixed: makeBatch(ds, ex, null, 0, 128, 20, origin, null),
        batchAt: (s) => {
          const start = (s * 96) % (ex.users.length - 96);
          return makeBatch(ds, ex, null, start, start + 96, 20, origin, null);
        },
        minDrop: 0.3,
        measureSeed: 9,
        trainSeed: 4,
      });
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("duaf train --model bert4rec runs end to end in both training modes, reproducibly", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-bert4rec-cli-" });
  try {
    const ds = await tinyDataset(root);
    for (const mode of ["prefix", "window", "window"]) {
      const out = join(root, mode);
      const again = await exists(out);
      if (again) await Deno.rename(out, `${out}-first`);
      const sets = [...TINY_SETS, `trainMode=${mode}`, "bert4recMaskRatio=0.3"];
      assertTrained(await trainModel(ds, "bert4rec", out, sets), "bert4rec");
      const manifest = JSON.parse(await Deno.readTextFile(join(out, "manifest.json")));
      assert.equal(manifest.config.bert4recMaskRatio, 0.3);
      assert.equal(manifest.config.bert4recFtRatio, 0.5);
      // The masks come from the run's seeded generator: a second run is byte-identical.
      if (again) await assertSameRun(`${out}-first`, out);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
