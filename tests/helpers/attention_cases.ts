/**
 * Cases of op.headAttention for the fused-call tests of each backend (ops_attention_fused.test.ts
 * on native, cuda_fused.test.ts on cuda): masks of every shape the models pass, dropout over the
 * whole pass or at one step, and run(), which gives the output and q, k and v's gradients either
 * through the op (fused where the backend takes it) or through the separate ops it replaces.
 */
import * as op from "../../core/ops/mod.ts";
import assert from "node:assert/strict";
import type { Backend } from "../../core/backend.ts";
import { Rng } from "../../core/random.ts";
import { backward, liveTensorCount, noGrad, tensor, tidy, withBackend } from "../../core/tensor.ts";

/** What run() returns, in order. */
export const OUTPUTS = ["y", "dq", "dk", "dv"];

export interface Case {
  what: string;
  batch: number;
  lq: number;
  lk: number;
  d: number;
  heads: number;
  /** "causal": [B, 1, lq, lk] with the last lq keys causal; "holes": random blocked keys. */
  /** "padding": [B, 1, 1, lk], each sequence's first keys blocked for every query (BERT4Rec's). */
  mask: "none" | "causal" | "holes" | "padding";
  p: number;
  steps?: boolean;
  /**
   * The native backend declines the fused call (keys past one K slice of 256; also, on CPUs where
   * the kernels say so, keys below a threshold: takesFused): the op makes the separate calls.
   */
  separate?: boolean;
}

export const CASES: Case[] = [
  { what: "causal, dropout", batch: 16, lq: 33, lk: 33, d: 64, heads: 2, mask: "causal", p: 0.3 },
  { what: "no mask, no dropout", batch: 3, lq: 40, lk: 40, d: 64, heads: 2, mask: "none", p: 0 },
  {
    what: "padding for every query",
    batch: 9,
    lq: 34,
    lk: 34,
    d: 64,
    heads: 2,
    mask: "padding",
    p: 0.2,
  },
  {
    what: "blocked keys anywhere",
    batch: 7,
    lq: 35,
    lk: 35,
    d: 48,
    heads: 4,
    mask: "holes",
    p: 0.2,
  },
  { what: "cross, odd widths", batch: 5, lq: 9, lk: 37, d: 30, heads: 3, mask: "holes", p: 0.5 },
  {
    what: "one query at a step (dropoutRows)",
    batch: 21,
    lq: 1,
    lk: 50,
    d: 64,
    heads: 2,
    mask: "causal",
    p: 0.3,
    steps: true,
  },
  { what: "short", batch: 4, lq: 12, lk: 12, d: 64, heads: 2, mask: "causal", p: 0.3 },
  {
    what: "three keys, odd widths",
    batch: 6,
    lq: 3,
    lk: 3,
    d: 30,
    heads: 3,
    mask: "holes",
    p: 0.4,
  },
  {
    what: "keys past one K slice: the separate calls",
    batch: 2,
    lq: 3,
    lk: 300,
    d: 64,
    heads: 2,
    mask: "holes",
    p: 0.3,
    separate: true,
  },
];

export function inputs(c: Case) {
  const r = new Rng(c.batch * 131 + c.lk);
  const fill = (n: number) => Float32Array.from({ length: n }, () => r.normal());
  const mask = new Float32Array(c.batch * c.lq * c.lk);
  for (let b = 0; b < c.batch; b++) {
    for (let i = 0; i < c.lq; i++) {
      for (let j = 0; j < c.lk; j++) {
        const blocked = c.mask === "causal" ? j > i + c.lk - c.lq : r.uniform() < 0.3 && j !== i;
        mask[(b * c.lq + i) * c.lk + j] = blocked ? -10000 : 0;
      }
    }
  }
  const steps = Int32Array.from({ length: c.batch }, () => Math.floor(r.uniform() * c.lk));
  return {
    q: fill(c.batch * c.lq * c.d),
    k: fill(c.batch * c.lk * c.d),
    v: fill(c.batch * c.lk * c.d),
    g: fill(c.batch * c.lq * c.d),
    mask,
    steps,
  };
}

/** Whether `be` takes the fused call for this case (native: keys past its CPU's threshold). */
export function takesFused(be: Backend, c: Case): boolean {
  return !c.separate && c.lk >= ((be as { attentionMinKeys?: number }).attentionMinKeys ?? 0);
}

/** The output and the gradients of q, k, v: fused (op.headAttention) or the separate ops. */
export function run(be: Backend, c: Case, fused: boolean, taped: boolean): Float32Array[] {
  const x = inputs(c);
  const scale = 1 / Math.sqrt(c.d / c.heads);
  const seed = 99;
  return withBackend(be, () =>
    tidy(() => {
      const q = tensor(x.q, [c.batch, c.lq, c.d]);
      const k = tensor(x.k, [c.batch, c.lk, c.d]);
      const v = tensor(x.v, [c.batch, c.lk, c.d]);
      const mask = c.mask === "none" ? null : c.mask === "padding"
        ? tensor(
          Float32Array.from(
            { length: c.batch * c.lk },
            (_, e) => e % c.lk < Math.floor(e / c.lk) % 5 ? -10000 : 0,
          ),
          [c.batch, 1, 1, c.lk],
        )
        : tensor(x.mask, [c.batch, 1, c.lq, c.lk]);
      const steps = c.steps ? x.steps : undefined;
      const forward = () => {
        if (fused) {
          return op.headAttention(q, k, v, mask, c.heads, scale, {
            p: c.p,
            seed,
            training: true,
            steps,
          });
        }
        const probs = op.maskedSoftmax(op.headDots(q, k, c.heads), mask, scale);
        let dropped = probs;
        if (c.p > 0 && steps) {
          const index = new Int32Array(c.batch * c.heads);
          for (let b = 0; b < c.batch; b++) {
            for (let j = 0; j < c.heads; j++) {
              index[b * c.heads + j] = (b * c.heads + j) * c.lk + steps[b];
            }
          }
          dropped = op.dropoutRows(probs, c.p, seed, index.length * c.lk, index);
        } else if (c.p > 0) dropped = op.dropout(probs, c.p, seed, true);
        return op.headMix(dropped, v);
      };
      if (!taped) {
        const before = liveTensorCount();
        const y = noGrad(forward);
        // Without a tape the fused op keeps nothing but its output (the probabilities go at once).
        if (fused && takesFused(be, c)) {
          assert.equal(liveTensorCount(), before + 1, `${c.what}: tensors left, no tape`);
        }
        return [y.toFloat32()];
      }
      for (const t of [q, k, v]) {
        t.requiresGrad = true;
      }
      const y = forward();
      const out = y.toFloat32();
      backward(y, tensor(x.g, [c.batch, c.lq, c.d]), { release: true });
      return [out, ...[q, k, v].map((t) => t.grad!.toFloat32())];
    }));
}

/** Calls of be.attention and be.attentionGrad that took their shapes while f ran. */
export function fusedAttentionCalls(be: Backend, f: () => void): number {
  let n = 0;
  const [fwd, grad] = [be.attention!.bind(be), be.attentionGrad!.bind(be)];
  be.attention = (a) => {
    const took = fwd(a);
    n += took ? 1 : 0;
    return took;
  };
  be.attentionGrad = (a) => {
    const took = grad(a);
    n += took ? 1 : 0;
    return took;
  };
  try {
    f();
  } finally {
    // The methods are the class's: the instance's wrappers go.
    delete (be as { attention?: unknown }).attention;
    delete (be as { attentionGrad?: unknown }).attentionGrad;
  }
  return n;
}
