/**
 * op.headDots / op.headMix against the permute-and-matmul composition they replace: the same
 * bits forward and backward on every CPU backend, since the GEMMs only read and write the heads
 * in place (row stride h * dh) instead of from permuted copies.
 */
import assert from "node:assert/strict";
import type { Backend } from "../core/backend.ts";
import { JsBackend } from "../core/backends/js.ts";
import { NativeBackend } from "../core/backends/native.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { backward, type Tensor, tensor, tidy, withBackend } from "../core/tensor.ts";

const split = (t: Tensor, h: number) => {
  const [b, l, d] = t.shape;
  return op.transpose(op.reshape(t, [b, l, h, d / h]), [0, 2, 1, 3]);
};
const merge = (t: Tensor) => {
  const [b, h, l, dh] = t.shape;
  return op.reshape(op.transpose(t, [0, 2, 1, 3]), [b, l, h * dh]);
};

/** Scores, mixed values and every input's gradient, through the fused ops or the composition. */
function attentionPass(
  inPlace: boolean,
  b: number,
  lq: number,
  lk: number,
  d: number,
  heads: number,
): Float32Array[] {
  const r = new Rng(3);
  const make = (shape: number[]) => {
    const t = tensor(
      Float32Array.from({ length: shape.reduce((p, x) => p * x) }, () => r.normal()),
      shape,
    );
    t.requiresGrad = true;
    return t;
  };
  return tidy(() => {
    const q = make([b, lq, d]), k = make([b, lk, d]), v = make([b, lk, d]);
    const gOut = tensor(Float32Array.from({ length: b * lq * d }, () => r.normal()), [b, lq, d]);
    const scores = inPlace
      ? op.headDots(q, k, heads)
      : op.matmul(split(q, heads), split(k, heads), false, true);
    const p = op.softmax(scores);
    const out = inPlace ? op.headMix(p, v) : merge(op.matmul(p, split(v, heads)));
    const loss = op.sum(op.mul(out, gOut));
    const result = [scores.toFloat32(), out.toFloat32()];
    backward(loss);
    for (const t of [q, k, v]) result.push(t.grad!.toFloat32());
    return result;
  });
}

function assertSameBits(be: Backend, name: string) {
  // Self-attention at SASRec's head width (large enough for two wasm threads), cross
  // attention with one query, and odd sizes.
  for (const [b, lq, lk, d, h] of [[16, 50, 50, 64, 2], [4, 1, 50, 64, 2], [2, 7, 9, 15, 3]]) {
    withBackend(be, () => {
      const a = attentionPass(false, b, lq, lk, d, h);
      const c = attentionPass(true, b, lq, lk, d, h);
      const what = ["scores", "output", "dq", "dk", "dv"];
      for (let i = 0; i < a.length; i++) {
        const same = new Uint32Array(a[i].buffer).every((x, j) =>
          x === new Uint32Array(c[i].buffer)[j]
        );
        assert.ok(same, `${name} [${b},${lq},${lk},${d}] h=${h}: ${what[i]} differs`);
      }
    });
  }
}

Deno.test("headDots / headMix: the composition's bits on js", () => {
  assertSameBits(new JsBackend(), "js");
});

Deno.test("headDots / headMix: the composition's bits on wasm (one and two threads)", async () => {
  for (const threads of [1, 2] as const) {
    const be = await WasmBackend.create({ threads });
    assertSameBits(be, `wasm ${threads}T`);
    be.dispose?.();
  }
});

const native = await NativeBackend.open({ threads: 1 }).catch(() => null);
Deno.test({
  name: "headDots / headMix: the composition's bits on native",
  ignore: !native || "unavailable" in native,
  fn() {
    assertSameBits(native as NativeBackend, "native");
  },
});

Deno.test("headDots / headMix: mismatched shapes are refused", () => {
  withBackend(new JsBackend(), () => {
    const q = tensor(new Float32Array(2 * 3 * 6), [2, 3, 6]);
    assert.throws(() => op.headDots(q, tensor(new Float32Array(2 * 3 * 4), [2, 3, 4]), 3));
    assert.throws(() => op.headDots(q, q, 4));
    const p = tensor(new Float32Array(2 * 3 * 3 * 5), [2, 3, 3, 5]);
    assert.throws(() => op.headMix(p, tensor(new Float32Array(2 * 4 * 6), [2, 4, 6])));
  });
});

/** maskedSoftmax's output and gradient, or those of scale, add and softmax as separate ops. */
function softmaxPass(fused: boolean, shape: number[], maskShape: number[] | null): Float32Array[] {
  const r = new Rng(5);
  const rand = (s: number[], k = 1) =>
    Float32Array.from({ length: s.reduce((p, x) => p * x) }, () => k * r.normal());
  return tidy(() => {
    const scores = tensor(rand(shape, 3), shape);
    scores.requiresGrad = true;
    // Masked entries at -10000, as causalPaddingMask makes them.
    const mask = maskShape
      ? tensor(rand(maskShape).map((v) => (v < -0.5 ? -10000 : 0)), maskShape)
      : null;
    const scale = 1 / Math.sqrt(32);
    const p = fused
      ? op.maskedSoftmax(scores, mask, scale)
      : op.softmax(mask ? op.add(op.scale(scores, scale), mask) : op.scale(scores, scale));
    backward(op.sum(op.mul(p, tensor(rand(shape), shape))));
    const out = [p.toFloat32(), scores.grad!.toFloat32()];
    scores.grad!.dispose();
    return out;
  });
}

function assertSoftmaxBits(be: Backend, name: string) {
  const cases: [number[], number[] | null][] = [
    [[16, 2, 50, 50], [16, 1, 50, 50]],
    [[4, 2, 1, 50], [4, 1, 1, 50]],
    [[3, 7, 9], [1, 7, 9]],
    [[2, 3, 5, 6], null],
  ];
  for (const [shape, maskShape] of cases) {
    withBackend(be, () => {
      const a = softmaxPass(false, shape, maskShape);
      const c = softmaxPass(true, shape, maskShape);
      for (const [i, what] of ["probabilities", "gradient"].entries()) {
        const x = new Uint32Array(a[i].buffer), y = new Uint32Array(c[i].buffer);
        assert.ok(x.every((v, j) => v === y[j]), `${name} [${shape}] mask [${maskShape}]: ${what}`);
      }
    });
  }
}

Deno.test("maskedSoftmax: the bits of scale, add and softmax, on js, wasm and native", async () => {
  assertSoftmaxBits(new JsBackend(), "js");
  for (const threads of [1, 2] as const) {
    const be = await WasmBackend.create({ threads });
    assertSoftmaxBits(be, `wasm ${threads}T`);
    be.dispose?.();
  }
  if (native && !("unavailable" in native)) assertSoftmaxBits(native, "native");
});
