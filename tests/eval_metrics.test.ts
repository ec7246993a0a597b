/** Full-ranking metrics: ranks with ties and exclusions, and NDCG/MRR/HR/Recall by hand. */
import assert from "node:assert/strict";
import { addRank, finalize, newAccumulator, rankOf } from "../core/eval/metrics.ts";

Deno.test("rankOf counts columns scoring at least the target's, skipping exclusions", () => {
  //                      col: 0    1    2    3    4    5
  const row = Float32Array.from([9, 0.5, 0.7, 0.5, 0.1, 0.9]);
  assert.equal(rankOf(row, 0, 6, 1, [0]), 3); // 2, 3 (tie counts against), 5
  assert.equal(rankOf(row, 0, 6, 5, [0]), 0);
  assert.equal(rankOf(row, 0, 6, 1, [0, 5]), 2); // a seen item no longer competes
  assert.equal(rankOf(row, 0, 6, 1, [0, 1]), 3); // excluding the target itself changes nothing
  assert.equal(rankOf(row, 0, 6, 4, []), 5); // padding competes only when not excluded
  const two = Float32Array.from([0, 1, 2, 0, 3, 2]);
  assert.equal(rankOf(two, 3, 3, 2, [0]), 1); // second row [0, 3, 2], with an offset
  const flat = new Float32Array(5).fill(1);
  assert.equal(rankOf(flat, 0, 5, 2, [0]), 3); // all equal: pessimistic, no free credit
});

Deno.test("metrics: NDCG, MRR, HR and Recall at each K match hand computation", () => {
  const acc = newAccumulator([1, 5]);
  for (const r of [0, 2, 7]) addRank(acc, r);
  const m = finalize(acc);
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  close(m["hit@1"], 1 / 3);
  close(m["hit@5"], 2 / 3);
  close(m["recall@5"], 2 / 3);
  close(m["mrr@5"], (1 + 1 / 3) / 3);
  close(m["ndcg@5"], (1 + 1 / Math.log2(4)) / 3);
  close(m["ndcg@1"], 1 / 3);
  assert.deepEqual(Object.keys(m), [
    "hit@1",
    "hit@5",
    "mrr@1",
    "mrr@5",
    "ndcg@1",
    "ndcg@5",
    "recall@1",
    "recall@5",
  ]);
});
