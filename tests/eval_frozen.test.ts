/**
 * FrozenValues: an evaluation builds a model's parameter-only item tables once and reuses them for
 * every batch. The cache keeps what it made alive across tidy scopes, frees only that, and the
 * scores it gives are the same bits as tables built afresh for each batch.
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { type ForwardContext, frozenOr, FrozenValues } from "../core/nn/context.ts";
import { Rng } from "../core/random.ts";
import { noGrad, type Tensor, tensor, tidy, withBackend } from "../core/tensor.ts";
import { batch, itemSide, model } from "./helpers/tiny_duaf.ts";

Deno.test("FrozenValues: made once, kept across scopes, only its own tensors freed", () => {
  withBackend(new JsBackend(), () => {
    const param = tensor(new Float32Array([1, 2, 3]), [3]);
    const frozen = new FrozenValues();
    let made = 0;
    let scratch: Tensor | null = null;
    const make = () => {
      made++;
      scratch = tensor(new Float32Array([10, 10, 10]), [3]);
      const t = tensor(new Float32Array([4, 5, 6]), [3]);
      return { param, t };
    };
    const first = tidy(() => {
      const v = frozen.get("k", make);
      return v.t.toFloat32();
    });
    assert.deepEqual([...first], [4, 5, 6]);
    assert.equal(made, 1);
    assert.ok(scratch!.disposed, "an intermediate of make() outlived it");
    const again = tidy(() => frozen.get("k", make));
    assert.equal(made, 1, "the value was made twice");
    assert.ok(!again.t.disposed, "the cached tensor was freed by a tidy scope");
    assert.equal(again.param, param);
    // Training never reads the cache; without one every call makes the value.
    const train: ForwardContext = { training: true, rng: new Rng(0), frozen };
    frozenOr(train, "k", make);
    frozenOr({ training: false, rng: new Rng(0) }, "k", make);
    assert.equal(made, 3);
    frozen.dispose();
    assert.ok(again.t.disposed);
    assert.ok(!param.disposed, "a parameter held by a cached value was freed");
  });
});

Deno.test("DuAF-MAT scores over cached item tables: the same bits, tables built once", () => {
  withBackend(new JsBackend(), () => {
    // Text and images with MAT-MoE: the tables run the generators over every item.
    const m = model({}, itemSide(new Rng(1), true));
    m.eval();
    const batches = [batch(new Rng(5)), batch(new Rng(6)), batch(new Rng(7))];
    const fresh = batches.map((b) =>
      noGrad(() => tidy(() => m.scoreAll(b, { training: false, rng: new Rng(0) }).toFloat32()))
    );
    const frozen = new FrozenValues();
    const ctx: ForwardContext = { training: false, rng: new Rng(0), frozen };
    let made = 0;
    const get = frozen.get.bind(frozen);
    frozen.get = <T>(key: string, make: () => T): T =>
      get(key, () => {
        made++;
        return make();
      });
    const cached = batches.map((b) => noGrad(() => tidy(() => m.scoreAll(b, ctx).toFloat32())));
    frozen.dispose();
    assert.equal(made, 2, "item tables and the score table, once each");
    cached.forEach((c, i) => assert.deepEqual(c, fresh[i], `batch ${i}`));
  });
});

Deno.test("tidy: a parameter in a nested scope's result is not disposed by the enclosing one", () => {
  withBackend(new JsBackend(), () => {
    const param = tensor(new Float32Array([1, 2]), [2]);
    tidy(() => {
      const inner = tidy(() => ({ param, made: tensor(new Float32Array([3]), [1]) }));
      assert.equal(inner.param, param);
      return null;
    });
    assert.ok(!param.disposed, "the enclosing scope disposed a tensor it did not make");
  });
});
