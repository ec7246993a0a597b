// The FLOP floors of tools/bench_train.ts on shapes small enough to count by hand.
import assert from "node:assert/strict";
import { duafEpochFlops, evalFlops, lengthStats, sasrecEpochFlops } from "../core/bench/flops.ts";

const shape = { hidden: 2, inner: 4, layers: 1, items: 5 };

Deno.test("evalFlops: one forward pass and the scores against every item", () => {
  // Two users with histories of 1 and 3 items.
  const l = lengthStats([1, 3]);
  // The last layer, read at the last step: K and V 2*2*sum*d*d = 4*4*4 = 64; Q and the output
  // dense at the last step 2*2*count*d*d = 4*2*4 = 32; one query's attention 2*2*sum*d = 4*4*2 =
  // 32; feed-forward at the last step 2*2*count*d*inner = 4*2*2*4 = 64. Scores: 2*count*d*items =
  // 2*2*2*5 = 40.
  assert.equal(evalFlops(l, shape), 64 + 32 + 32 + 64 + 40);
  assert.equal(sasrecEpochFlops(l, shape), 3 * evalFlops(l, shape), "training is 3x forward");
  // A layer below the last runs at every step: projections 4*2*sum*d*d = 4*2*4*4 = 128;
  // attention 2*2*sumSq*d = 4*10*2 = 80; feed-forward 2*2*sum*d*inner = 4*4*2*4 = 128.
  assert.equal(evalFlops(l, { ...shape, layers: 2 }), 128 + 80 + 128 + 64 + 32 + 32 + 64 + 40);
  // Window training reads every step: the last layer runs everywhere too (336), and the logits
  // are every step's: 2*sum*d*items = 2*4*2*5 = 80.
  assert.equal(sasrecEpochFlops(l, shape, true), 3 * (128 + 80 + 128 + 80));

  const duaf = {
    ...shape,
    steps: 7,
    batch: 2,
    textDim: 3,
    imageDim: 0,
    timeDim: 2,
    modalities: 2,
    vsclPasses: 1,
    vsclRows: 2,
    experts: 0,
    noiseDim: 1,
    expertHidden: 1,
  };
  const e = evalFlops(l, duaf);
  // No VSCL pass and the item tables once, however many steps an epoch has.
  assert.equal(e, evalFlops(l, { ...duaf, vsclPasses: 0, steps: 1 }));
  assert.equal(e, duafEpochFlops(l, { ...duaf, vsclPasses: 0, steps: 1 }) / 3);
  assert.ok(e < duafEpochFlops(l, duaf) / 3, "VSCL and per-step tables are training work");
  assert.equal(e - evalFlops(l, { ...duaf, textDim: 0 }), 2 * 5 * 3 * 2, "the text table once");
});
