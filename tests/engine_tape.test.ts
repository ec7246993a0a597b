/** The tape and memory scopes: released backward equals the plain one and frees the graph. */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { Sasrec } from "../core/models/sasrec.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { Rng } from "../core/random.ts";
import * as op from "../core/ops/mod.ts";
import { backward, liveTensorCount, tensor, tidy, withBackend } from "../core/tensor.ts";

function batch(): SequenceBatch {
  return {
    size: 3,
    len: 4,
    items: Int32Array.from([1, 2, 3, 4, 5, 6, 0, 0, 7, 0, 0, 0]),
    lengths: Int32Array.from([4, 2, 1]),
    times: new Float32Array(12),
    users: Int32Array.from([0, 1, 2]),
    targets: Int32Array.from([5, 7, 1]),
  };
}

function grads(release: boolean): { grads: Float32Array[]; extraLive: number; params: number } {
  return withBackend(new JsBackend(), () => {
    const m = new Sasrec({
      numItems: 8,
      maxLen: 4,
      layers: 2,
      heads: 2,
      hidden: 8,
      inner: 16,
      hiddenDropout: 0.2,
      attnDropout: 0.2,
      layerNormEps: 1e-12,
      initStd: 0.1,
      loss: "ce",
    }, new Rng(1));
    let live = 0;
    // Counted from here, not from zero: tensors of an earlier call (its model) may still live.
    const before = liveTensorCount();
    tidy(() => {
      const loss = m.loss(batch(), { training: true, rng: new Rng(2) }).total;
      backward(loss, undefined, { release });
      live = liveTensorCount();
    });
    // Beyond the parameters, what the step still holds at the end: their gradients (buffers
    // backward made and handed over), the step's constants and, unreleased, the graph.
    const params = m.parameters().length;
    return {
      grads: m.parameters().map((p) => p.grad!.toFloat32()),
      extraLive: live - before,
      params,
    };
  });
}

Deno.test("tape: backward with release gives identical gradients and frees the graph", () => {
  const plain = grads(false);
  const released = grads(true);
  assert.deepEqual(released.grads, plain.grads);
  assert.ok(
    released.extraLive < plain.extraLive * 0.75,
    `intermediates alive after backward: ${released.extraLive} released vs ${plain.extraLive}`,
  );
});

Deno.test("tape: tidy frees everything but its result", () => {
  withBackend(new JsBackend(), () => {
    const before = liveTensorCount();
    let params = 0;
    const kept = tidy(() => {
      params = grads(false).params;
      return 1;
    });
    assert.equal(kept, 1);
    // Only the model's kept parameters and their gradients survive the scope.
    assert.equal(liveTensorCount() - before, 2 * params);
  });
});

Deno.test("tape: a shared, accumulated gradient is not added into in place", () => {
  // u = x + p is used twice, so its gradient is an accumulated buffer, which add's backward then
  // hands to both x and p. p and x each receive more (from v = p + z and from x * 1000); neither
  // addition may land in the buffer the other still holds, whatever order the terms come in.
  withBackend(new JsBackend(), () => {
    const leaf = (v: number) => {
      const t = tensor(Float32Array.from([v, v + 1]), [2]);
      t.requiresGrad = true;
      return t;
    };
    const c = (v: number) => tensor(Float32Array.from([v, v]), [2]);
    const orders = [[0, 1, 2, 3], [2, 3, 0, 1], [3, 2, 1, 0], [1, 3, 2, 0], [3, 0, 2, 1]];
    for (const order of orders) {
      for (const release of [false, true]) {
        const [xl, p, z] = [leaf(1), leaf(3), leaf(5)];
        const x = op.scale(xl, 1);
        const u = op.add(x, p);
        const v = op.add(p, z);
        const terms = [
          op.sum(op.mul(u, c(1))),
          op.sum(op.mul(u, c(10))),
          op.sum(op.mul(v, c(100))),
          op.sum(op.mul(x, c(1000))),
        ];
        const loss = order.slice(1).reduce((acc, i) => op.add(acc, terms[i]), terms[order[0]]);
        backward(loss, undefined, { release });
        const got = [xl, p, z].map((t) => [...t.grad!.toFloat32()]);
        assert.deepEqual(got, [[1011, 1011], [111, 111], [100, 100]], `order ${order} ${release}`);
      }
    }
  });
});
