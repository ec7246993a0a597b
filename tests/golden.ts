/**
 * Loader for the PyTorch golden-parity fixtures in fixtures/golden/ (written by
 * tools/torch/make_golden.py; formats and formulas in docs/golden.md).
 *
 * Each fixture is {"meta": {...}, "tensors": {name: {shape, dtype, data}}} with row-major data.
 */
import assert from "node:assert/strict";
import type { SequenceBatch } from "../core/models/batch.ts";
import type { ItemFeatures, ItemSide } from "../core/models/item_side.ts";
import type { Module } from "../core/nn/module.ts";
import type { EncoderConfig } from "../core/nn/transformer.ts";
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

/**
 * The fixture's input batch: `item_seq` [B, L], `item_seq_len`, `pos_items` as targets and
 * `neg_items` as negatives where stored; times and users zero.
 */
export function goldenBatch(g: Golden): SequenceBatch {
  const seq = g.tensors.item_seq;
  const [b, l] = seq.shape;
  const batch: SequenceBatch = {
    size: b,
    len: l,
    items: Int32Array.from(seq.data),
    lengths: Int32Array.from(g.tensors.item_seq_len.data),
    times: new Float32Array(b * l),
    users: new Int32Array(b),
    targets: Int32Array.from(g.tensors.pos_items.data),
  };
  if (g.tensors.neg_items) batch.negatives = Int32Array.from(g.tensors.neg_items.data);
  return batch;
}

/**
 * The transformer settings of a fixture's RecBole-style meta (`n_items` counts the padding item),
 * dropout off, CE loss.
 */
export function goldenEncoder(
  g: Golden,
): EncoderConfig & { numItems: number; maxLen: number; loss: "ce" } {
  const m = g.meta as Record<string, number>;
  return {
    numItems: m.n_items - 1,
    maxLen: m.max_seq_length,
    layers: m.n_layers,
    heads: m.n_heads,
    hidden: m.hidden_size,
    inner: m.inner_size,
    hiddenDropout: 0,
    attnDropout: 0,
    layerNormEps: m.layer_norm_eps,
    initStd: 0.02,
    loss: "ce",
  };
}

/**
 * A feature table `<name>_table` [numItems + 1, dim]; its mask is `<name>_present` where the
 * fixture stores one, else every row present.
 */
export function goldenFeatures(g: Golden, name: string): ItemFeatures {
  const t = g.tensors[`${name}_table`];
  const present = g.tensors[`${name}_present`];
  return {
    dim: t.shape[1],
    data: Float32Array.from(t.data),
    mask: present ? Uint8Array.from(present.data) : new Uint8Array(t.shape[0]).fill(1),
  };
}

/** Item side information for `numItems` items: the given parts, one category for all. */
export function goldenItemSide(numItems: number, parts: Partial<ItemSide>): ItemSide {
  return {
    numItems,
    text: null,
    image: null,
    itemCategory: new Int32Array(numItems + 1),
    numCategories: 1,
    ...parts,
  };
}

/**
 * As many parameters in `model` as the fixture stores; `isParam` tells the fixture's parameter
 * tensors from its inputs and outputs (default: dotted names that are not gradients).
 */
export function assertGoldenParamCount(
  model: Module,
  g: Golden,
  isParam = (k: string) => k.includes(".") && !k.startsWith("grad."),
): void {
  const fixtureParams = Object.keys(g.tensors).filter(isParam);
  assert.equal(model.namedParameters().length, fixtureParams.length, "parameter count");
}

/** Sets every parameter of `model` from the fixture tensor `<prefix><name>`. */
export function loadGoldenParams(model: Module, g: Golden, prefix = ""): void {
  const params = new Map(
    model.namedParameters().map(([name]) => {
      const t = g.tensors[prefix + name];
      assert.ok(t, `fixture lacks ${prefix}${name}`);
      return [name, { shape: t.shape, data: Float32Array.from(t.data) }];
    }),
  );
  loadStateDict(model, params);
}

/**
 * Every parameter's gradient against the fixture's `<prefix>grad.<name>` (the gradient
 * tolerances above).
 */
export function assertGoldenGrads(model: Module, g: Golden, prefix = ""): void {
  for (const [name, p] of model.namedParameters()) {
    const want = g.tensors[`${prefix}grad.${name}`];
    assert.ok(want, `fixture lacks ${prefix}grad.${name}`);
    assert.ok(p.grad, `no gradient for ${name}`);
    assertClose(`${prefix}grad.${name}`, p.grad.toFloat32(), want.data, 1e-3, 1e-5);
  }
}
