/**
 * Golden parity of LRURec against a PyTorch reference that runs the recurrence as a plain loop
 * (tools/torch/lrurec_ref.py): block outputs, last-position scores, the window CE loss and every
 * parameter gradient.
 */
import assert from "node:assert/strict";
import { Lrurec } from "../core/models/lrurec.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { loadStateDict } from "../core/nn/state.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { backward, tensor, tidy, withBackend } from "../core/tensor.ts";
import { JsBackend } from "../core/backends/js.ts";
import { loadGolden } from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

const g = loadGolden("lrurec");
const m = g.meta as Record<string, number>;

function goldenBatch(): SequenceBatch {
  const seq = g.tensors.item_seq;
  const [b, l] = seq.shape;
  const lengths = Int32Array.from(g.tensors.item_seq_len.data);
  return {
    size: b,
    len: l,
    items: Int32Array.from(seq.data),
    lengths,
    times: new Float32Array(b * l),
    users: new Int32Array(b),
    targets: new Int32Array(b),
    positionTargets: Int32Array.from(g.tensors.position_targets.data),
  };
}

function goldenModel(): Lrurec {
  const model = new Lrurec({
    numItems: m.n_items - 1,
    hidden: m.hidden_size,
    layers: m.n_blocks,
    dropout: 0,
    attnDropout: 0,
    rMin: 0.8,
    rMax: 0.99,
    loss: "ce",
  }, new Rng(1));
  const names = model.namedParameters().map(([name]) => name);
  const fixtureParams = Object.keys(g.tensors).filter((k) =>
    k.startsWith("embedding.") || k.startsWith("model.")
  );
  assert.deepEqual([...names].sort(), fixtureParams.sort(), "parameter names differ");
  loadStateDict(
    model,
    new Map(names.map((n) => {
      const t = g.tensors[n];
      return [n, { shape: t.shape, data: Float32Array.from(t.data) }];
    })),
  );
  return model;
}

Deno.test("golden: lrurec forward, loss and every parameter gradient match PyTorch", () => {
  const batch = goldenBatch();
  withBackend(new JsBackend(), () => {
    const model = goldenModel();
    const ctx = { training: false, rng: new Rng(0) };
    const d = m.hidden_size;
    tidy(() => {
      let x = model.embedding.norm.forward(
        model.embedding.token.forward(tensor(batch.items, [batch.size, batch.len], "i32")),
      );
      model.model.blocks.items.forEach((block, i) => {
        x = block.forward(x, ctx);
        assertClose(`block${i}.output`, x.toFloat32(), g.tensors[`block${i}.output`].data);
      });
      const users = model.forward(batch, ctx);
      assert.deepEqual(users.shape, [batch.size, d + 1]);
      assertClose("seq_output", op.slice(users, 1, 0, d).toFloat32(), g.tensors.seq_output.data);
      assertClose("scores", model.scoreAll(batch, ctx).toFloat32(), g.tensors.scores.data);
      const { total } = model.loss(batch, ctx);
      assertClose("loss", [total.item()], g.tensors.loss.data);
      backward(total);
    });
    for (const [pname, p] of model.namedParameters()) {
      const want = g.tensors[`grad.${pname}`];
      assert.ok(want, `fixture lacks grad.${pname}`);
      assertClose(`grad.${pname}`, p.grad!.toFloat32(), want.data, 1e-3, 1e-5);
    }
  });
});
