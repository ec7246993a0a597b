/**
 * Whole-model parity of every fast backend with the reference JsBackend: one training step of
 * SASRec, LRURec, TedRec, M3SRec, IISAN and DuAF-MAT (fusion, MAT-MoE generators, CSCL, VSCL, dropout
 * on) gives the same loss parts and parameter gradients, and DuAF-MAT's critic update (gradient
 * penalty included) leaves the same critic weights, within float32 tolerance. Kernel-level parity lives in
 * wasm_parity, native_backend and cuda_parity; this catches what only shows when kernels are
 * chained (layouts, offsets, in-place accumulation, scratch reuse).
 *
 * wasm always runs; native where a CBLAS loads; cuda where a GPU, its driver and the shim exist
 * (elsewhere those cases are ignored and the reason is printed once). DUAF_TEST_BACKENDS=cuda (a
 * comma list) runs only the named ones: the GPU check runs this file bundled, without the wasm
 * files beside it.
 */
import assert from "node:assert/strict";
import type { Backend } from "../core/backend.ts";
import { CudaBackend, loadCudaShim } from "../core/backends/cuda.ts";
import { JsBackend } from "../core/backends/js.ts";
import { nativeBackendFactory } from "../core/backends/native.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import type { SequentialModel } from "../core/models/model.ts";
import type { Module } from "../core/nn/module.ts";
import { Lrurec } from "../core/models/lrurec.ts";
import { Iisan } from "../core/models/iisan.ts";
import { M3srec } from "../core/models/m3srec.ts";
import { Sasrec } from "../core/models/sasrec.ts";
import { Tedrec } from "../core/models/tedrec.ts";
import { Rng } from "../core/random.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { batch, ITEMS, itemSide, model as duafModel } from "./helpers/tiny_duaf.ts";

interface StepResult {
  parts: Record<string, number>;
  grads: Map<string, Float32Array>;
  /** Parameters after DuAF-MAT's critic update (empty for other models). */
  after: Map<string, Float32Array>;
  extra: Record<string, number>;
}

type Build = () => SequentialModel & Module;

/** The transformer every encoder model below is built with (dropout on). */
const ENCODER = {
  numItems: ITEMS,
  maxLen: 8,
  layers: 2,
  heads: 2,
  hidden: 16,
  inner: 32,
  hiddenDropout: 0.1,
  attnDropout: 0.1,
  layerNormEps: 1e-12,
  initStd: 0.02,
  loss: "ce" as const,
};

const KINDS: Record<string, Build> = {
  sasrec: () => new Sasrec(ENCODER, new Rng(4)),
  // The same model with its CE over the item table in blocks of 7 items (op.linearCrossEntropy).
  "sasrec, CE in item blocks": () => new Sasrec({ ...ENCODER, ceChunkItems: 7 }, new Rng(4)),
  lrurec: () =>
    new Lrurec({
      numItems: ITEMS,
      hidden: 16,
      layers: 2,
      dropout: 0.1,
      attnDropout: 0.1,
      rMin: 0.8,
      rMax: 0.99,
      loss: "ce",
    }, new Rng(4)),
  // The DFT matmuls over the padded maxLen, the noisy MoE gates and adaptor dropout.
  tedrec: () =>
    new Tedrec(
      {
        ...ENCODER,
        maxLen: 10,
        temperature: 0.07,
        experts: 3,
        adaptorDropout: 0.2,
        noisyGating: true,
      },
      itemSide(new Rng(11), false),
      new Rng(4),
    ),
  duafmat: () => duafModel({ criticSteps: 1, modalityDropout: 0.3 }, itemSide(new Rng(11), true)),
  m3srec: () =>
    new M3srec(
      {
        ...ENCODER,
        modalities: ["text", "image"],
        experts: 3,
        adaptorDropout: 0.2,
        auxWeight: 0.1,
        temperature: 0.07,
      },
      itemSide(new Rng(11), true),
      new Rng(4),
    ),
  // Three cached image layers of different widths (slices of one table), text as one layer.
  iisan: () => {
    const widths = [4, 7, 5];
    const rng = new Rng(12);
    const data = Float32Array.from(
      { length: (ITEMS + 1) * 16 },
      (_, i) => i < 16 ? 0 : rng.normal(),
    );
    return new Iisan(
      {
        ...ENCODER,
        sideDim: 12,
        adapterDown: 6,
        adapterActivation: "relu",
        gateTemperature: 0.1,
      },
      { ...itemSide(new Rng(11), true), imageLayers: { widths, data } },
      new Rng(4),
    );
  },
};

/** One forward/backward (and the critic update) on `be`, everything read back to the host. */
function trainingStep(be: Backend, build: Build): StepResult {
  return withBackend(be, () => {
    const m = build();
    const b = batch(new Rng(21), 6, 8);
    const parts: Record<string, number> = {};
    tidy(() => {
      const out = m.loss(b, { training: true, rng: new Rng(5) });
      for (const [k, v] of Object.entries(out.parts)) parts[k] = v.item();
      backward(out.total);
    });
    const grads = new Map<string, Float32Array>();
    for (const [name, p] of m.namedParameters()) if (p.grad) grads.set(name, p.grad.toFloat32());
    const extra: Record<string, number> = {};
    const logged = m.afterStep?.(b, { training: true, rng: new Rng(6) }) ?? {};
    for (const [k, t] of Object.entries(logged)) {
      extra[k] = t.item();
      t.dispose();
    }
    const after = new Map<string, Float32Array>();
    if (Object.keys(extra).length) {
      for (const [name, p] of m.namedParameters()) after.set(name, p.toFloat32());
    }
    return { parts, grads, after, extra };
  });
}

/** |a - b| within 2e-3 of the tensor's largest reference magnitude (float32 sum orders differ). */
function assertTensorClose(what: string, got: Float32Array, want: Float32Array): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let scale = 1e-6;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let worst = 0, at = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= worst)) [worst, at] = [d, i];
  }
  assert.ok(
    worst <= 2e-3 * scale,
    `${what}: element ${at}: ${got[at]} vs ${want[at]} (scale ${scale.toExponential(2)})`,
  );
}

function assertSameStep(got: StepResult, want: StepResult): void {
  assert.deepEqual(Object.keys(got.parts).sort(), Object.keys(want.parts).sort());
  for (const [k, v] of Object.entries(want.parts)) {
    assert.ok(
      Math.abs(got.parts[k] - v) <= 1e-4 * Math.max(1, Math.abs(v)),
      `loss ${k}: ${got.parts[k]} vs ${v}`,
    );
  }
  assert.deepEqual([...got.grads.keys()], [...want.grads.keys()]);
  assert.ok(want.grads.size > 0);
  for (const [name, g] of want.grads) assertTensorClose(`grad ${name}`, got.grads.get(name)!, g);
  for (const [name, p] of want.after) {
    assertTensorClose(`after critic step ${name}`, got.after.get(name)!, p);
  }
  for (const [k, v] of Object.entries(want.extra)) {
    assert.ok(
      Math.abs(got.extra[k] - v) <= 1e-3 * Math.max(1, Math.abs(v)),
      `${k}: ${got.extra[k]} vs ${v}`,
    );
  }
}

const reference = new JsBackend();
const expected = new Map<string, StepResult>(
  Object.entries(KINDS).map(([k, build]) => [k, trainingStep(reference, build)]),
);

// The DuAF-MAT step must exercise every part this file claims to compare.
assert.deepEqual(Object.keys(expected.get("duafmat")!.parts).sort(), [
  "adv",
  "cscl",
  "main",
  "vscl",
]);
assert.ok(expected.get("duafmat")!.after.size > 0 && "critic" in expected.get("duafmat")!.extra);

type Made = Backend | { unavailable: string };

async function candidates(): Promise<[string, Made][]> {
  const makers: Record<string, () => Promise<Made>> = {
    wasm: () => WasmBackend.create({ threads: 2 }),
    native: () => nativeBackendFactory.create(),
    cuda: async () => {
      const shim = await loadCudaShim();
      return "unavailable" in shim ? shim : new CudaBackend(shim);
    },
  };
  const only = Deno.env.get("DUAF_TEST_BACKENDS")?.split(",");
  const names = Object.keys(makers).filter((n) => !only || only.includes(n));
  return await Promise.all(names.map(async (n) => [n, await makers[n]()] as [string, Made]));
}

for (const [name, made] of await candidates()) {
  const be = "unavailable" in made ? null : made;
  if (!be) {
    console.log(`${name} model parity ignored: ${(made as { unavailable: string }).unavailable}`);
  }
  Deno.test({
    name: `${name} vs js: one training step of each model (loss parts, gradients, critic update)`,
    ignore: be === null,
    async fn(t) {
      try {
        for (const kind of Object.keys(KINDS)) {
          await t.step(
            kind,
            () => assertSameStep(trainingStep(be!, KINDS[kind]), expected.get(kind)!),
          );
        }
      } finally {
        be!.dispose?.();
      }
    },
  });
}
