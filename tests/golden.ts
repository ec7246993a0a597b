/**
 * Loader for the PyTorch golden-parity fixtures in fixtures/golden/ (written by
 * tools/torch/make_golden.py; formats and formulas in docs/golden.md).
 *
 * Each fixture is {"meta": {...}, "tensors": {name: {shape, dtype, data}}} with row-major data.
 */
import assert from "node:assert/strict";
import type { Module } from "../core/nn/module.ts";
import { loadStateDict } from "../core/nn/state.ts";
import { assertClose } from "./helpers/assert_close.ts";

export type GoldenDType = "f32" | "i32";

export interface GoldenTensor {
  shape: number[];
  dtype: GoldenDType;
  data: Float32Array | Int32Array;
}

export interface Golden {
  meta: Record<string, unknown>;
  tensors: Record<string, GoldenTensor>;
}

interface RawTensor {
  shape: number[];
  dtype: string;
  data: number[];
}

const cache = new Map<string, Golden>();

/** Reads fixtures/golden/NAME.json synchronously (cached; callers must not mutate the arrays). */
export function loadGolden(name: string): Golden {
  const hit = cache.get(name);
  if (hit) return hit;
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`bad golden fixture name: ${name}`);
  const url = new URL(`../fixtures/golden/${name}.json`, import.meta.url);
  const raw = JSON.parse(Deno.readTextFileSync(url)) as {
    meta: Record<string, unknown>;
    tensors: Record<string, RawTensor>;
  };
  const tensors: Record<string, GoldenTensor> = {};
  for (const [key, t] of Object.entries(raw.tensors)) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== size) {
      throw new Error(
        `golden ${name}: tensor ${key} has ${t.data.length} values for shape [${t.shape}]`,
      );
    }
    let data: Float32Array | Int32Array;
    if (t.dtype === "f32") data = Float32Array.from(t.data);
    else if (t.dtype === "i32") data = Int32Array.from(t.data);
    else throw new Error(`golden ${name}: tensor ${key} has unknown dtype ${t.dtype}`);
    tensors[key] = { shape: t.shape, dtype: t.dtype, data };
  }
  const out: Golden = { meta: raw.meta, tensors };
  cache.set(name, out);
  return out;
}

/** Returns one tensor of a fixture, throwing a clear error when it is missing. */
export function goldenTensor(name: string, tensor: string): GoldenTensor {
  const t = loadGolden(name).tensors[tensor];
  if (!t) throw new Error(`golden ${name}: no tensor ${tensor}`);
  return t;
}

/**
 * Largest violation of |actual - expected| <= atol + rtol * |expected| (0 when all pass),
 * with the index of the worst element; for tests that want one readable failure message.
 */
export function compareClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol = 1e-5,
  rtol = 1e-4,
): { ok: boolean; worstIndex: number; worstExcess: number; maxAbsDiff: number } {
  if (actual.length !== expected.length) {
    throw new Error(`length mismatch: ${actual.length} vs ${expected.length}`);
  }
  let worstIndex = -1;
  let worstExcess = 0;
  let maxAbsDiff = 0;
  for (let i = 0; i < expected.length; i++) {
    let d = Math.abs(actual[i] - expected[i]);
    if (Number.isNaN(d)) d = Infinity;
    if (d > maxAbsDiff) maxAbsDiff = d;
    const excess = d - (atol + rtol * Math.abs(expected[i]));
    if (excess > worstExcess) {
      worstExcess = excess;
      worstIndex = i;
    }
  }
  return { ok: worstIndex < 0, worstIndex, worstExcess, maxAbsDiff };
}

/** Sets every parameter of `model` from the fixture tensor of the same name. */
export function loadGoldenParams(model: Module, g: Golden): void {
  const params = new Map(
    model.namedParameters().map(([name]) => {
      const t = g.tensors[name];
      assert.ok(t, `fixture lacks ${name}`);
      return [name, { shape: t.shape, data: Float32Array.from(t.data) }];
    }),
  );
  loadStateDict(model, params);
}

/** Every parameter's gradient against the fixture's `grad.<name>` (the gradient tolerances above). */
export function assertGoldenGrads(model: Module, g: Golden): void {
  for (const [name, p] of model.namedParameters()) {
    const want = g.tensors[`grad.${name}`];
    assert.ok(want, `fixture lacks grad.${name}`);
    assertClose(`grad.${name}`, p.grad!.toFloat32(), want.data, 1e-3, 1e-5);
  }
}
