/**
 * Sampled prefix training (prefixPerUser): N prefixes per user and epoch, drawn anew each epoch
 * from the order generator, all of a shorter history's; a fixed number of steps per epoch.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type SequenceSource, splitExamples } from "../core/models/examples.ts";
import { resolveConfig } from "../core/config.ts";
import { loadDataset } from "../core/data/dataset.ts";
import { Rng } from "../core/random.ts";
import { sampledPrefixCount, sampledPrefixes } from "../core/train/order.ts";
import { TINY_SETS, tinyDataset, tinyTrain } from "./helpers/tiny_run.ts";

/** Users with the given history lengths (items numbered in order). */
function source(lengths: number[]): SequenceSource {
  const offsets = [0];
  for (const l of lengths) offsets.push(offsets[offsets.length - 1] + l);
  const n = offsets[offsets.length - 1];
  return {
    numUsers: lengths.length,
    numItems: n,
    seqOffsets: Int32Array.from(offsets),
    seqItems: Int32Array.from({ length: n }, (_, i) => i + 1),
    seqTimes: Float64Array.from({ length: n }, (_, i) => 86400 * i),
  };
}

Deno.test("sampledPrefixes: N distinct prefixes per user, all of shorter histories, seeded", () => {
  // Training prefixes: user 0 has 10 - 2 - 1 = 7, user 1 has 2, user 2 has 27.
  const ex = splitExamples(source([10, 5, 30]), "train");
  const count = (e: { users: Int32Array }, u: number) => e.users.filter((x) => x === u).length;
  assert.deepEqual([0, 1, 2].map((u) => count(ex, u)), [7, 2, 27]);

  const a = sampledPrefixes(ex, 4, new Rng(3));
  assert.deepEqual([0, 1, 2].map((u) => count(a, u)), [4, 2, 4]);
  assert.equal(sampledPrefixCount(ex, 4), 10);
  assert.equal(sampledPrefixCount(ex, 30), ex.users.length);
  const all = new Set(Array.from(ex.users, (u, e) => `${u}:${ex.positions[e]}`));
  const drawn = Array.from(a.users, (u, e) => `${u}:${a.positions[e]}`);
  assert.equal(new Set(drawn).size, drawn.length, "no prefix twice");
  for (const d of drawn) assert.ok(all.has(d), `${d} is a training prefix`);
  // User 1's two prefixes are both kept.
  assert.deepEqual(Array.from(a.positions.filter((_, e) => a.users[e] === 1)), [1, 2]);

  const again = sampledPrefixes(ex, 4, new Rng(3));
  assert.deepEqual(again.positions, a.positions);
  // Another draw (the next epoch's generator state) picks other prefixes for the long history.
  const other = sampledPrefixes(ex, 4, new Rng(4));
  assert.notDeepEqual(other.positions, a.positions);
  // Every prefix is drawn sometime: over epochs, the whole of user 2's history trains.
  const seen = new Set<number>();
  const rng = new Rng(5);
  for (let epoch = 0; epoch < 60; epoch++) {
    const s = sampledPrefixes(ex, 4, rng);
    s.positions.forEach((p, e) => s.users[e] === 2 && seen.add(p));
  }
  assert.equal(seen.size, 27);
});

Deno.test("prefixPerUser: one epoch is N prefixes per user, reproducible, refused with window", async () => {
  const root = await Deno.makeTempDir({ prefix: "duaf-prefix-sample-" });
  try {
    const ds = await tinyDataset(root);
    const data = await loadDataset(ds);
    const ex = splitExamples(data, "train");
    const users = new Set(ex.users).size;
    const sets = [...TINY_SETS, "model=sasrec", "trainMode=prefix", "maxSteps=0", "batchSize=64"];
    const a = await tinyTrain(ds, join(root, "a"), [...sets, "prefixPerUser=1"]);
    const b = await tinyTrain(ds, join(root, "b"), [...sets, "prefixPerUser=1"]);
    const manifest = async (run: string) =>
      JSON.parse(await Deno.readTextFile(join(root, run, "manifest.json")));
    const steps = (m: { history: { steps: number }[] }) => m.history.map((h) => h.steps);
    const want = Math.ceil(users / 64);
    assert.ok(want < Math.ceil(ex.users.length / 64), "fewer steps than every prefix");
    assert.deepEqual(steps(await manifest("a")), [want, want]);
    assert.deepEqual(a.test, b.test);
    const bytes = (run: string) => Deno.readFile(join(root, run, "model.safetensors"));
    assert.deepEqual(await bytes("a"), await bytes("b"));
    assert.throws(
      () => resolveConfig(null, ["trainMode=window", "prefixPerUser=2"]),
      /prefixPerUser: applies to trainMode=prefix only/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
