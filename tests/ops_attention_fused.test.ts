/**
 * op.headAttention on the native backend with its C kernels (one call each way), against the
 * separate ops it replaces on the same backend (headDots, maskedSoftmax, dropout or dropoutRows,
 * headMix), bit for bit: output and the gradients of q, k and v, on one kernel thread and split
 * over two, with and without a tape. The finite-difference check of the op is in
 * ops_gradcheck.test.ts.
 */
import assert from "node:assert/strict";
import { nativeOnOneAndTwoThreads } from "./helpers/native_threads.ts";
import { assertSameBits } from "./helpers/assert_close.ts";
import {
  type Case,
  CASES,
  fusedAttentionCalls,
  OUTPUTS,
  run,
  takesFused,
} from "./helpers/attention_cases.ts";

const { one, two, ignore } = await nativeOnOneAndTwoThreads("fused attention");

Deno.test({
  name: "headAttention fused: the separate ops' bits, forward and backward, one thread and two",
  ignore,
  fn() {
    for (const c of CASES) {
      for (const be of [one!, two!]) {
        for (const taped of [true, false]) {
          const what = `${c.what}, ${be.threads} thread(s)${taped ? "" : ", no tape"}`;
          assertSameBits(run(be, c, true, taped), run(be, c, false, taped), what, OUTPUTS);
        }
      }
    }
  },
});

Deno.test({
  name:
    "headAttention fused: one call each way from the CPU's least keys to a K slice, none past it",
  ignore,
  fn() {
    const calls = (c: Case) => fusedAttentionCalls(two!, () => run(two!, c, true, true));
    // Fewer keys than the kernels' threshold for this CPU (duaf_attention_min_keys) take the
    // separate calls: 32 on AMD EPYC, none elsewhere.
    assert.ok([0, 32].includes(two!.attentionMinKeys), `threshold ${two!.attentionMinKeys}`);
    for (const c of CASES.filter((c) => !c.separate)) {
      assert.equal(calls(c), takesFused(two!, c) ? 2 : 0, c.what);
    }
    assert.equal(calls(CASES.find((c) => c.separate)!), 0);
  },
});

Deno.test({
  name: "headAttention fused: two threads split the sequences",
  ignore,
  fn() {
    const before = two!.threadedCalls;
    run(two!, CASES[0], true, true);
    assert.ok(two!.threadedCalls >= before + 2, "the forward and backward calls were not split");
  },
});
