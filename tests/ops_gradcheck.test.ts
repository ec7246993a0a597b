/** Finite-difference gradient checks of every differentiable op (float64 reference backend). */
import * as op from "../core/ops/mod.ts";
import assert from "node:assert/strict";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { Rng } from "../core/random.ts";
import { backward, tensor, tidy, withBackend } from "../core/tensor.ts";
import { gradCheck } from "./helpers/gradcheck.ts";

const positive = (r: { uniform(): number }) => 0.5 + 2 * r.uniform();
const awayFromZero = (r: { uniform(): number }) =>
  (r.uniform() < 0.5 ? -1 : 1) * (0.2 + r.uniform());

Deno.test("gradcheck: broadcasting add/sub/mul/div", () => {
  const shapes: [number[], number[]][] = [[[3, 4], [3, 4]], [[2, 3, 4], [4]], [[2, 1, 4], [3, 1]], [
    [5],
    [1],
  ]];
  for (const [sa, sb] of shapes) {
    gradCheck(`add ${sa}+${sb}`, [{ shape: sa }, { shape: sb }], ([a, b]) => op.add(a, b));
    gradCheck(`sub ${sa}-${sb}`, [{ shape: sa }, { shape: sb }], ([a, b]) => op.sub(a, b));
    gradCheck(`mul ${sa}*${sb}`, [{ shape: sa }, { shape: sb }], ([a, b]) => op.mul(a, b));
    gradCheck(
      `div ${sa}/${sb}`,
      [{ shape: sa }, { shape: sb, init: awayFromZero }],
      ([a, b]) => op.div(a, b),
    );
  }
  gradCheck("same tensor twice", [{ shape: [3, 2] }], ([a]) => op.mul(op.add(a, a), a));
});

Deno.test("gradcheck: unary ops", () => {
  const s = [{ shape: [2, 7] }];
  gradCheck("neg", s, ([x]) => op.neg(x));
  gradCheck("exp", s, ([x]) => op.exp(x));
  gradCheck("log", [{ shape: [2, 7], init: positive }], ([x]) => op.log(x));
  gradCheck("sqrt", [{ shape: [2, 7], init: positive }], ([x]) => op.sqrt(x));
  gradCheck("tanh", s, ([x]) => op.tanh(x));
  gradCheck("sigmoid", s, ([x]) => op.sigmoid(x));
  gradCheck("gelu", s, ([x]) => op.gelu(x));
  gradCheck("relu", [{ shape: [2, 7], init: awayFromZero }], ([x]) => op.relu(x));
  gradCheck("leaky_relu", [{ shape: [2, 7], init: awayFromZero }], ([x]) => op.leakyRelu(x, 0.2));
  gradCheck("softplus", s, ([x]) => op.softplus(x));
  gradCheck("sin", s, ([x]) => op.sin(x));
  gradCheck("cos", s, ([x]) => op.cos(x));
  gradCheck("abs", [{ shape: [2, 7], init: awayFromZero }], ([x]) => op.abs(x));
  gradCheck("square", s, ([x]) => op.square(x));
  gradCheck("scale", s, ([x]) => op.scale(x, -2.5));
  gradCheck("add_scalar", s, ([x]) => op.addScalar(x, 3));
  gradCheck("pow", [{ shape: [2, 7], init: positive }], ([x]) => op.pow(x, 1.7));
});

Deno.test("gradcheck: per-head attention products read in place", () => {
  // Queries and keys of different lengths (cross attention), 3 heads of 2.
  gradCheck(
    "headDots",
    [{ shape: [2, 3, 6] }, { shape: [2, 4, 6] }],
    ([q, k]) => op.headDots(q, k, 3),
  );
  gradCheck(
    "headMix",
    [{ shape: [2, 3, 3, 4] }, { shape: [2, 4, 6] }],
    ([p, v]) => op.headMix(p, v),
  );
});

Deno.test("gradcheck: headAttention (masked, dropped, one query at a step)", () => {
  const blocked = Float32Array.from(
    { length: 2 * 3 * 4 },
    (_, i) => (i % 4 > ((i >> 2) % 3) + 1 ? -1e4 : 0),
  );
  gradCheck(
    "head_attention",
    [{ shape: [2, 3, 6] }, { shape: [2, 4, 6] }, { shape: [2, 4, 6] }],
    ([q, k, v]) =>
      op.headAttention(q, k, v, tensor(blocked, [2, 1, 3, 4]), 3, 0.6, {
        p: 0.3,
        seed: 5,
        training: true,
      }),
  );
  gradCheck(
    "head_attention at steps",
    [{ shape: [2, 1, 6] }, { shape: [2, 4, 6] }, { shape: [2, 4, 6] }],
    ([q, k, v]) =>
      op.headAttention(q, k, v, null, 2, 0.4, {
        p: 0.4,
        seed: 9,
        training: true,
        steps: Int32Array.of(3, 1),
      }),
  );
});

Deno.test("gradcheck: matmul in every transpose, batched and with a shared weight", () => {
  for (const ta of [false, true]) {
    for (const tb of [false, true]) {
      const a = ta ? [4, 3] : [3, 4];
      const b = tb ? [5, 4] : [4, 5];
      gradCheck(
        `matmul ${ta}${tb}`,
        [{ shape: a }, { shape: b }],
        ([x, y]) => op.matmul(x, y, ta, tb),
      );
      gradCheck(
        `batched ${ta}${tb}`,
        [{ shape: [2, ...a] }, { shape: [2, ...b] }],
        ([x, y]) => op.matmul(x, y, ta, tb),
      );
    }
  }
  gradCheck(
    "shared weight",
    [{ shape: [2, 3, 4] }, { shape: [4, 5] }],
    ([x, w]) => op.matmul(x, w),
  );
  gradCheck(
    "shared weight^T",
    [{ shape: [2, 3, 4] }, { shape: [5, 4] }],
    ([x, w]) => op.matmul(x, w, false, true),
  );
  // A 2-D left factor shared by every batch element, in every transpose.
  for (const ta of [false, true]) {
    for (const tb of [false, true]) {
      gradCheck(
        `shared left ${ta}${tb}`,
        [{ shape: ta ? [4, 3] : [3, 4] }, { shape: tb ? [2, 5, 4] : [2, 4, 5] }],
        ([w, x]) => op.matmul(w, x, ta, tb),
      );
    }
  }
});

Deno.test("gradcheck: reductions and shape ops", () => {
  const s = [{ shape: [2, 3, 4] }];
  gradCheck("sum all", s, ([x]) => op.sum(x));
  gradCheck("sum axis 1", s, ([x]) => op.sum(x, 1));
  gradCheck("sum axes 0,2 keep", s, ([x]) => op.sum(x, [0, 2], true));
  gradCheck("mean -1", s, ([x]) => op.mean(x, -1));
  gradCheck("reshape", s, ([x]) => op.mul(op.reshape(x, [6, 4]), op.reshape(x, [6, -1])));
  gradCheck("transpose", s, ([x]) => op.transpose(x, [2, 0, 1]));
  gradCheck("transpose 4d", [{ shape: [2, 3, 2, 2] }], ([x]) => op.transpose(x, [0, 2, 1, 3]));
  gradCheck("slice", s, ([x]) => op.slice(x, 1, 1, 2));
  gradCheck("slice last", s, ([x]) => op.slice(x, -1, 3, 1));
  gradCheck(
    "concat",
    [{ shape: [2, 3] }, { shape: [2, 1] }, { shape: [2, 2] }],
    ([a, b, c]) => op.concat([a, b, c], 1),
  );
  gradCheck(
    "concat axis 0",
    [{ shape: [1, 3] }, { shape: [2, 3] }],
    ([a, b]) => op.concat([a, b], 0),
  );
  gradCheck("broadcastTo", [{ shape: [3, 1] }], ([x]) => op.broadcastTo(x, [2, 3, 4]));
});

Deno.test("modality fusion: a releasing backward through h and ω gives the same gradients", async () => {
  const wasm = await WasmBackend.create({ threads: 1 });
  const r = new Rng(3);
  const data = Array.from({ length: 5 }, () => Float32Array.from({ length: 30 }, () => r.normal()));
  const grads = (release: boolean) =>
    withBackend(wasm, () =>
      tidy(() => {
        const xs = data.map((d) => tensor(d, [2, 3, 5]));
        for (const x of xs) x.requiresGrad = true;
        const { h, omega } = op.modalityFusion(xs.slice(0, 3), xs[3], xs[4]);
        // h first in the sum, so ω's backward step runs (and frees ω) before h's.
        backward(op.add(op.sum(op.square(h)), op.sum(op.square(omega))), undefined, { release });
        return xs.map((x) => x.grad!.toFloat32());
      }));
  try {
    assert.deepEqual(grads(true), grads(false));
  } finally {
    wasm.dispose();
  }
});

Deno.test("gradcheck: dropoutRows (rows of a larger tensor's dropout mask)", () => {
  gradCheck(
    "dropout_rows",
    [{ shape: [3, 4] }],
    ([x]) => op.dropoutRows(x, 0.4, 7, 10, Int32Array.of(2, 5, 9)),
  );
});

Deno.test("gradcheck: DuAF modality fusion, through h and through the weights", () => {
  for (const m of [1, 3, 4]) {
    const shapes = Array.from({ length: m + 2 }, () => ({ shape: [2, 3, 5] }));
    gradCheck(`modality_fusion h, ${m} modalities`, shapes, (xs) => {
      return op.modalityFusion(xs.slice(0, m), xs[m], xs[m + 1], 1.5).h;
    });
    gradCheck(`modality_fusion h and omega, ${m} modalities`, shapes, (xs) => {
      const { h, omega } = op.modalityFusion(xs.slice(0, m), xs[m], xs[m + 1]);
      return op.add(op.sum(op.square(h)), op.sum(op.mul(omega, omega)));
    });
  }
});

Deno.test("gradcheck: softmax, layer norm, embedding, pick, losses, normalisation", () => {
  gradCheck("softmax", [{ shape: [3, 5] }], ([x]) => op.softmax(x));
  gradCheck("log_softmax", [{ shape: [3, 5] }], ([x]) => op.logSoftmax(x));
  gradCheck(
    "layer_norm",
    [{ shape: [4, 6] }, { shape: [6] }, { shape: [6] }],
    ([x, g, b]) => op.layerNorm(x, g, b, 1e-5),
  );
  gradCheck(
    "embedding (repeated rows)",
    [{ shape: [5, 3] }],
    ([t]) => op.embedding(t, tensor([1, 4, 1, 0, 2, 1], [2, 3], "i32")),
  );
  gradCheck(
    "embedding_add (repeated rows)",
    [{ shape: [5, 3] }, { shape: [2, 3, 3] }],
    ([t, b]) => op.embeddingAdd(t, tensor([1, 4, 1, 0, 2, 1], [2, 3], "i32"), b),
  );
  gradCheck(
    "gather_dots (candidates per row, a repeated row)",
    [{ shape: [5, 3] }, { shape: [2, 3] }],
    ([t, h]) => op.gatherDots(t, tensor([1, 4, 1, 0, 2, 3], [2, 3], "i32"), h),
  );
  gradCheck("pick", [{ shape: [3, 4] }], ([x]) => op.pick(x, tensor([3, 0, 3], [3], "i32")));
  gradCheck(
    "cross_entropy",
    [{ shape: [3, 6] }],
    ([x]) => op.crossEntropy(x, tensor([5, 0, 2], [3], "i32")),
  );
  gradCheck(
    "bce_with_logits",
    [{ shape: [4] }, { shape: [4, 2] }],
    ([p, n]) => op.bceWithLogits(p, n),
  );
  gradCheck("l2_normalize", [{ shape: [3, 4] }], ([x]) => op.l2Normalize(x));
  gradCheck(
    "cosine_similarity",
    [{ shape: [3, 4] }, { shape: [2, 4] }],
    ([a, b]) => op.cosineSimilarity(a, b),
  );
  gradCheck(
    "attention with mask",
    [{ shape: [2, 2, 3, 4] }, { shape: [2, 2, 3, 4] }, { shape: [2, 2, 3, 4] }],
    ([q, k, v]) => {
      const mask = tensor([0, -1e4, -1e4, 0, 0, -1e4, 0, 0, 0], [1, 1, 3, 3]);
      return op.attention(q, k, v, mask);
    },
  );
  gradCheck(
    "linear (fused bias)",
    [{ shape: [2, 3, 4] }, { shape: [5, 4] }, { shape: [5] }],
    ([x, w, b]) => op.linear(x, w, b),
  );
  gradCheck(
    "add_layer_norm",
    [{ shape: [4, 6] }, { shape: [4, 6] }, { shape: [6] }, { shape: [6] }],
    ([a, b, g, bt]) => op.addLayerNorm(a, b, g, bt, 1e-5),
  );
  gradCheck(
    "add_layer_norm with the branch's dropout (fixed mask)",
    [{ shape: [4, 6] }, { shape: [4, 6] }, { shape: [6] }, { shape: [6] }],
    ([a, b, g, bt]) => op.addLayerNorm(a, b, g, bt, 1e-5, { p: 0.3, seed: 5 }),
  );
  gradCheck(
    "feed_forward",
    [{ shape: [2, 3, 4] }, { shape: [5, 4] }, { shape: [5] }, { shape: [4, 5] }, { shape: [4] }],
    ([x, w1, b1, w2, b2]) => op.feedForward(x, w1, b1, w2, b2),
  );
  gradCheck(
    "masked_softmax",
    [{ shape: [2, 2, 3, 3] }],
    ([s]) => op.maskedSoftmax(s, tensor([0, -1e4, -1e4, 0, 0, -1e4, 0, 0, 0], [1, 1, 3, 3]), 0.7),
  );
  gradCheck(
    "masked_softmax without mask",
    [{ shape: [3, 4] }],
    ([s]) => op.maskedSoftmax(s, null, 2),
  );
  gradCheck("dropout (fixed mask)", [{ shape: [4, 5] }], ([x]) => op.dropout(x, 0.3, 11, true));
});
