/**
 * Baselines: GRU4Rec (with its GRU block golden-tested against torch.nn.GRU), FDSA and
 * MostPopular. Shapes, parameter names, gradient checks on the float64 backend, and a short
 * learning run on a deterministic item cycle.
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { UsageError } from "../core/errors.ts";
import { evaluate } from "../core/eval/evaluate.ts";
import type { SequenceBatch } from "../core/models/batch.ts";
import { Fdsa, type FdsaConfig } from "../core/models/fdsa.ts";
import { Gru4rec, type Gru4recConfig, trimToLongest } from "../core/models/gru4rec.ts";
import type { SequentialModel } from "../core/models/model.ts";
import { MostPopular, trainingTargetCounts } from "../core/models/pop.ts";
import { Gru, gruLayer } from "../core/nn/gru.ts";
import { loadStateDict, stateDict } from "../core/nn/state.ts";
import * as op from "../core/ops/mod.ts";
import { Adam } from "../core/optim/adam.ts";
import { Rng } from "../core/random.ts";
import { backward, type Tensor, tensor, tidy, withBackend } from "../core/tensor.ts";
import { splitExamples } from "../core/models/examples.ts";
import { compareClose, loadGolden } from "./golden.ts";
import { f64, gradCheck } from "./helpers/gradcheck.ts";

function assertClose(name: string, got: ArrayLike<number>, want: ArrayLike<number>, atol = 1e-5) {
  const c = compareClose(got, want, atol, 1e-4);
  assert.ok(
    c.ok,
    `${name}: worst index ${c.worstIndex}: got ${got[c.worstIndex]}, want ${
      want[c.worstIndex]
    } (max |diff| ${c.maxAbsDiff})`,
  );
}

/** Right-padded batch from explicit sequences. */
function makeBatch(seqs: number[][], targets: number[], len: number, negatives?: number[]) {
  const size = seqs.length;
  const items = new Int32Array(size * len);
  seqs.forEach((s, r) => s.forEach((it, j) => (items[r * len + j] = it)));
  const batch: SequenceBatch = {
    size,
    len,
    items,
    lengths: Int32Array.from(seqs.map((s) => s.length)),
    times: new Float32Array(size * len),
    users: Int32Array.from(seqs.map((_, i) => i)),
    targets: Int32Array.from(targets),
    negatives: negatives ? Int32Array.from(negatives) : undefined,
  };
  return batch;
}

const tinyBatch = () => makeBatch([[1, 2, 3], [4], [5, 6, 1, 2]], [4, 5, 3], 4, [6, 2, 5]);

function textFeatures(numItems: number, dim: number, rng: Rng) {
  const data = new Float32Array((numItems + 1) * dim);
  for (let i = dim; i < data.length; i++) data[i] = rng.normal();
  return { dim, data };
}

const tinyGruCfg = (loss: "ce" | "bce"): Gru4recConfig => ({
  numItems: 6,
  embeddingSize: 4,
  hiddenSize: 5,
  numLayers: 2,
  dropout: 0.3,
  loss,
});

const tinyFdsaCfg = (loss: "ce" | "bce"): FdsaConfig => ({
  numItems: 6,
  maxLen: 4,
  layers: 1,
  heads: 2,
  hidden: 4,
  inner: 8,
  hiddenDropout: 0.2,
  attnDropout: 0.2,
  layerNormEps: 1e-12,
  initStd: 0.3,
  loss,
});

// ---------------------------------------------------------------------------------------------
// GRU block

for (const tag of ["gru", "gru_nobias"] as const) {
  Deno.test(`golden: ${tag} output, h_n and every gradient match torch.nn.GRU`, () => {
    const g = loadGolden("ops").tensors;
    withBackend(new JsBackend(), () => {
      const gru = new Gru(
        { inputSize: 5, hiddenSize: 6, numLayers: 1, bias: tag === "gru" },
        new Rng(1),
      );
      const names = gru.namedParameters().map(([n]) => n);
      assert.deepEqual(
        names,
        tag === "gru"
          ? ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
          : ["weight_ih_l0", "weight_hh_l0"],
      );
      loadStateDict(
        gru,
        new Map(names.map((n) => {
          const t = g[`${tag}.${n}`];
          return [n, { shape: t.shape, data: Float32Array.from(t.data) }];
        })),
      );
      const x = tensor(g[`${tag}.x`].data, g[`${tag}.x`].shape);
      x.requiresGrad = true;
      tidy(() => {
        const { output, hidden } = gru.forward(x);
        assert.deepEqual(output.shape, [2, 4, 6]);
        assert.deepEqual(hidden.shape, [1, 2, 6]);
        assertClose("output", output.toFloat32(), g[`${tag}.output`].data);
        assertClose("h_n", hidden.toFloat32(), g[`${tag}.h_n`].data);
        const r = tensor(g[`${tag}.R`].data, g[`${tag}.R`].shape);
        backward(op.sum(op.mul(output, r)));
      });
      assertClose("grad.x", x.grad!.toFloat32(), g[`${tag}.grad.x`].data);
      for (const [n, p] of gru.namedParameters()) {
        assertClose(`grad.${n}`, p.grad!.toFloat32(), g[`${tag}.grad.${n}`].data);
      }
    });
  });
}

Deno.test("gradcheck: GRU layer with and without biases", () => {
  const [b, l, i, h] = [2, 3, 4, 3];
  gradCheck(
    "gru layer",
    [{ shape: [b, l, i] }, { shape: [3 * h, i] }, { shape: [3 * h, h] }, { shape: [3 * h] }, {
      shape: [3 * h],
    }],
    ([x, wi, wh, bi, bh]) => gruLayer(x, wi, wh, bi, bh).output,
  );
  gradCheck(
    "gru layer, no bias",
    [{ shape: [b, l, i] }, { shape: [3 * h, i] }, { shape: [3 * h, h] }],
    ([x, wi, wh]) => gruLayer(x, wi, wh, null, null).output,
  );
});

Deno.test("GRU: stacked layers feed each other and h_n holds every layer's final state", () => {
  withBackend(f64, () => {
    const gru = new Gru({ inputSize: 3, hiddenSize: 4, numLayers: 2, bias: true }, new Rng(3));
    const rng = new Rng(4);
    const x = tensor(Array.from({ length: 2 * 5 * 3 }, () => rng.normal()), [2, 5, 3]);
    tidy(() => {
      const { output, hidden } = gru.forward(x);
      const [l0, l1] = gru.layers;
      const first = gruLayer(x, l0.wIh, l0.wHh, l0.bIh, l0.bHh);
      const second = gruLayer(first.output, l1.wIh, l1.wHh, l1.bIh, l1.bHh);
      assert.deepEqual(hidden.shape, [2, 2, 4]);
      assert.deepEqual([...output.toArray()], [...second.output.toArray()]);
      const hn = hidden.toArray();
      assert.deepEqual([...hn.slice(0, 8)], [...first.last.toArray()]);
      assert.deepEqual([...hn.slice(8)], [...second.last.toArray()]);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Model shapes and names

function checkShapes(model: SequentialModel, numItems: number) {
  const batch = tinyBatch();
  tidy(() => {
    const ctx = { training: true, rng: new Rng(0) };
    const { total, parts } = model.loss(batch, ctx);
    assert.equal(total.size, 1);
    assert.ok(Number.isFinite(total.item()));
    assert.ok(parts.main);
    const scores = model.scoreAll(batch, { training: false, rng: new Rng(0) });
    assert.deepEqual(scores.shape, [batch.size, numItems + 1]);
  });
}

Deno.test("GRU4Rec: RecBole parameter names, shapes, and BCE needs negatives", () => {
  const ce = new Gru4rec(tinyGruCfg("ce"), new Rng(1));
  assert.deepEqual(ce.namedParameters().map(([n, t]) => `${n} [${t.shape}]`), [
    "item_embedding.weight [7,4]",
    "gru_layers.weight_ih_l0 [15,4]",
    "gru_layers.weight_hh_l0 [15,5]",
    "gru_layers.weight_ih_l1 [15,5]",
    "gru_layers.weight_hh_l1 [15,5]",
    "dense.weight [4,5]",
    "dense.bias [4]",
  ]);
  assert.equal(ce.needsNegatives, false);
  checkShapes(ce, 6);
  const bce = new Gru4rec(tinyGruCfg("bce"), new Rng(1));
  assert.equal(bce.needsNegatives, true);
  checkShapes(bce, 6);
});

Deno.test("GRU4Rec: extra right padding does not change scores (the time loop stops early)", () => {
  const model = new Gru4rec(tinyGruCfg("ce"), new Rng(1));
  const seqs = [[1, 2, 3], [4], [5, 6, 1]];
  const ctx = { training: false, rng: new Rng(0) };
  const scores = (len: number) =>
    tidy(() => model.scoreAll(makeBatch(seqs, [4, 5, 3], len), ctx).toFloat32());
  const tight = scores(3);
  assert.deepEqual([...scores(9)], [...tight]);
  const trimmed = trimToLongest(makeBatch(seqs, [4, 5, 3], 9));
  assert.equal(trimmed.len, 3);
  assert.deepEqual([...trimmed.items], [1, 2, 3, 4, 0, 0, 5, 6, 1]);
});

Deno.test("FDSA: parameter names, shapes, and a clear error without text", () => {
  const text = textFeatures(6, 3, new Rng(2));
  const m = new Fdsa(tinyFdsaCfg("ce"), new Rng(1), text);
  const names = m.namedParameters().map(([n]) => n);
  for (
    const n of [
      "item_embedding.weight",
      "position_embedding.weight",
      "feature_projection.weight",
      "item_trm_encoder.layer.0.multi_head_attention.query.weight",
      "feature_trm_encoder.layer.0.feed_forward.dense_2.bias",
      "LayerNorm.weight",
      "concat_layer.weight",
    ]
  ) assert.ok(names.includes(n), `missing ${n}`);
  // The text table is frozen data, not a parameter.
  assert.ok(!m.namedParameters().some(([, t]) => t === m.textTable));
  checkShapes(m, 6);
  checkShapes(new Fdsa(tinyFdsaCfg("bce"), new Rng(1), text), 6);
  assert.throws(() => new Fdsa(tinyFdsaCfg("ce"), new Rng(1), null), (e: unknown) => {
    return e instanceof UsageError && /fdsa needs a text modality/.test(e.message);
  });
  assert.throws(
    () => new Fdsa(tinyFdsaCfg("ce"), new Rng(1), { dim: 3, data: new Float32Array(5) }),
    UsageError,
  );
});

Deno.test("FDSA: the text stream matters (changing one item's text changes its sequences' scores)", () => {
  const text = textFeatures(6, 3, new Rng(2));
  const batch = tinyBatch();
  const ctx = { training: false, rng: new Rng(0) };
  const scoresWith = (t: typeof text) =>
    tidy(() => new Fdsa(tinyFdsaCfg("ce"), new Rng(1), t).scoreAll(batch, ctx).toFloat32());
  const base = scoresWith(text);
  const changed = { dim: 3, data: text.data.slice() };
  changed.data.fill(0, 4 * 3, 5 * 3); // item 4 appears only in row 1
  const after = scoresWith(changed);
  const row = (s: Float32Array, r: number) => [...s.slice(r * 7, r * 7 + 7)];
  assert.deepEqual(row(after, 0), row(base, 0));
  assert.notDeepEqual(row(after, 1), row(base, 1));
});

// ---------------------------------------------------------------------------------------------
// Gradient checks of whole-model losses on the float64 backend

function data64(t: Tensor): Float64Array {
  return (t.storage as unknown as { data: Float64Array }).data;
}

/** Central differences of the model loss against the tape's gradient, per named parameter. */
function modelGradCheck(
  name: string,
  build: () => SequentialModel,
  batch: SequenceBatch,
  params: string[],
  perParam = 12,
) {
  withBackend(f64, () => {
    const model = build();
    const ctx = () => ({ training: false, rng: new Rng(0) });
    const lossOf = () => tidy(() => data64(model.loss(batch, ctx()).total)[0]);
    tidy(() => backward(model.loss(batch, ctx()).total));
    const named = new Map(model.namedParameters());
    const eps = 1e-6;
    for (const pn of params) {
      const p = named.get(pn);
      assert.ok(p, `${name}: no parameter ${pn}`);
      assert.ok(p.grad, `${name}: ${pn} got no gradient`);
      const values = data64(p);
      const analytic = data64(p.grad);
      const stride = Math.max(1, Math.floor(p.size / perParam));
      for (let i = 0; i < p.size; i += stride) {
        const orig = values[i];
        values[i] = orig + eps;
        const up = lossOf();
        values[i] = orig - eps;
        const down = lossOf();
        values[i] = orig;
        const numeric = (up - down) / (2 * eps);
        const err = Math.abs(numeric - analytic[i]) / Math.max(1, Math.abs(numeric));
        assert.ok(err < 1e-5, `${name}: d/d ${pn}[${i}] ${analytic[i]} vs numeric ${numeric}`);
      }
    }
  });
}

Deno.test("gradcheck: GRU4Rec CE and BCE losses", () => {
  for (const loss of ["ce", "bce"] as const) {
    modelGradCheck(
      `gru4rec ${loss}`,
      () => new Gru4rec(tinyGruCfg(loss), new Rng(5)),
      tinyBatch(),
      [
        "item_embedding.weight",
        "gru_layers.weight_ih_l0",
        "gru_layers.weight_hh_l0",
        "gru_layers.weight_hh_l1",
        "dense.weight",
        "dense.bias",
      ],
    );
  }
});

Deno.test("gradcheck: FDSA CE and BCE losses", () => {
  const text = textFeatures(6, 3, new Rng(2));
  for (const loss of ["ce", "bce"] as const) {
    modelGradCheck(
      `fdsa ${loss}`,
      () => new Fdsa(tinyFdsaCfg(loss), new Rng(5), text),
      tinyBatch(),
      [
        "item_embedding.weight",
        "position_embedding.weight",
        "feature_projection.weight",
        "feature_projection.bias",
        "feature_trm_encoder.layer.0.multi_head_attention.value.weight",
        "item_trm_encoder.layer.0.feed_forward.dense_1.weight",
        "LayerNorm.weight",
        "concat_layer.weight",
      ],
      8,
    );
  }
});

// ---------------------------------------------------------------------------------------------
// Learning: items follow the cycle 1 -> 2 -> ... -> 10 -> 1

function cycleBatch(rng: Rng, size: number, len: number, numItems: number) {
  const seqs: number[][] = [];
  const targets: number[] = [];
  for (let r = 0; r < size; r++) {
    const start = rng.int(numItems);
    const l = 1 + rng.int(len);
    seqs.push(Array.from({ length: l }, (_, j) => ((start + j) % numItems) + 1));
    targets.push(((start + l) % numItems) + 1);
  }
  return makeBatch(seqs, targets, len);
}

function learn(model: SequentialModel, steps: number, lr: number): [number, number] {
  const rng = new Rng(11);
  const opt = new Adam(model.parameters(), { lr });
  const losses: number[] = [];
  model.train();
  for (let s = 0; s < steps; s++) {
    const batch = cycleBatch(rng, 32, 6, 10);
    losses.push(tidy(() => {
      const { total } = model.loss(batch, { training: true, rng });
      backward(total);
      opt.step();
      opt.zeroGrad();
      return total.item();
    }));
  }
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return [avg(losses.slice(0, 5)), avg(losses.slice(-5))];
}

Deno.test("learning: GRU4Rec and FDSA learn a deterministic item cycle in 40 Adam steps", () => {
  withBackend(new JsBackend(), () => {
    const gru = new Gru4rec({
      ...tinyGruCfg("ce"),
      numItems: 10,
      embeddingSize: 16,
      hiddenSize: 16,
      numLayers: 1,
      dropout: 0.1,
    }, new Rng(1));
    const [g0, g1] = learn(gru, 40, 0.02);
    assert.ok(g1 < 0.2 * g0, `gru4rec: loss ${g0.toFixed(3)} -> ${g1.toFixed(3)}`);
    const fdsa = new Fdsa(
      {
        ...tinyFdsaCfg("ce"),
        numItems: 10,
        maxLen: 6,
        hidden: 16,
        inner: 32,
        initStd: 0.02,
        hiddenDropout: 0.1,
        attnDropout: 0.1,
      },
      new Rng(1),
      textFeatures(10, 8, new Rng(3)),
    );
    const [f0, f1] = learn(fdsa, 40, 0.02);
    assert.ok(f1 < 0.2 * f0, `fdsa: loss ${f0.toFixed(3)} -> ${f1.toFixed(3)}`);
  });
});

// ---------------------------------------------------------------------------------------------
// MostPopular

/** Four users over 5 items; the training targets are positions 1 .. n-3. */
function popSource() {
  const seqs = [[1, 2, 2, 3, 4, 5], [3, 2, 2, 4, 5], [2, 5], [4, 2, 3]];
  const offsets = [0];
  for (const s of seqs) offsets.push(offsets[offsets.length - 1] + s.length);
  const flat = seqs.flat();
  return {
    numUsers: seqs.length,
    numItems: 5,
    seqOffsets: Int32Array.from(offsets),
    seqItems: Int32Array.from(flat),
    seqTimes: Float64Array.from(flat.map((_, i) => 86400 * i)),
  };
}

Deno.test("MostPopular counts exactly the training-example targets", () => {
  const src = popSource();
  const counts = trainingTargetCounts(src);
  const ex = splitExamples(src, "train");
  const want = new Float32Array(6);
  for (let e = 0; e < ex.users.length; e++) {
    want[src.seqItems[src.seqOffsets[ex.users[e]] + ex.positions[e]]]++;
  }
  assert.deepEqual([...counts], [...want]);
  // User 0 contributes items 2, 2, 3 and user 1 items 2, 2; users 2 and 3 are too short to have
  // training targets. Valid and test items (4, 5, ...) are never counted.
  assert.deepEqual([...counts], [0, 0, 4, 1, 0, 0]);
});

Deno.test("MostPopular: untrainable, ranks by count, survives a state-dict round trip", () => {
  const src = popSource();
  const pop = new MostPopular({ numItems: 5 }, new Rng(0));
  assert.equal(pop.trainable, false);
  assert.equal(pop.needsNegatives, false);
  assert.ok(pop.parameters().every((p) => !p.requiresGrad));
  pop.fit(src);
  const batch = makeBatch([[1], [4, 5]], [2, 3], 2);
  const ctx = { training: false, rng: new Rng(0) };
  tidy(() => {
    const s = pop.scoreAll(batch, ctx);
    assert.deepEqual(s.shape, [2, 6]);
    assert.deepEqual([...s.toFloat32()], [0, 0, 4, 1, 0, 0, 0, 0, 4, 1, 0, 0]);
    // Add-one smoothed NLL over 5 counted targets and 5 items: p(2) = 5/10, p(3) = 2/10.
    const loss = pop.loss(batch, ctx).total.item();
    assert.ok(Math.abs(loss - -(Math.log(5 / 10) + Math.log(2 / 10)) / 2) < 1e-6);
  });
  const copy = new MostPopular({ numItems: 5 });
  loadStateDict(copy, stateDict(pop));
  tidy(() =>
    assert.deepEqual([...copy.scoreAll(batch, ctx).toFloat32()].slice(0, 6), [0, 0, 4, 1, 0, 0])
  );
  assert.throws(() => pop.fit({ ...src, numItems: 4 }));
});

Deno.test("MostPopular plugs into the full-ranking evaluator", () => {
  const src = popSource();
  const pop = new MostPopular({ numItems: 5 });
  pop.fit(src);
  // Test targets: 5, 5, 5, 3. Scores rank item 2, then 3, then 1, 4, 5 tied at 0 (ties count
  // against the target), so only the target 3 is in the top 2.
  const { metrics } = evaluate(pop, src, {
    split: "test",
    ks: [2],
    maskSeen: false,
    batchSize: 8,
    maxLen: 4,
    origin: 0,
  });
  assert.equal(metrics["hit@2"], 1 / 4);
});
