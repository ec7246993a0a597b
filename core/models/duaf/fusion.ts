/**
 * DuAF fusion (paper Eq. 7-8): ω_i^m = softmax_m <s_u, tanh(e_i^m + e_time_i)>, h_i = Σ_m ω_i^m e_i^m.
 *
 * Where s_u comes from. The paper defines s_u as the user's sequence representation (Eq. 17),
 * which is the encoder's output on the fused sequence — the very thing being computed. We break
 * the cycle with a causal, per-step user representation: q_i = the mean of the average-fused
 * embeddings of steps 1..i ("prefix"), or of the ID embeddings only ("id"). It is the user's
 * interest so far (user-aware), differs per step (so weights can drift over a sequence), never
 * sees the future, and costs one [L, L] matmul instead of a second encoder pass.
 */
import { LayerNorm, Linear } from "../../nn/layers.ts";
import { Module } from "../../nn/module.ts";
import * as op from "../../ops/mod.ts";
import type { Rng } from "../../random.ts";
import { type Tensor, tensor } from "../../tensor.ts";

/** Stacks M modality tensors [B, L, d] into [B, L, M, d]. */
export function stackModalities(mods: readonly Tensor[]): Tensor {
  const [b, l, d] = mods[0].shape;
  return op.concat(mods.map((m) => op.reshape(m, [b, l, 1, d])), 2);
}

/**
 * Paper Eq. 7-8 with a query [B, L, d] or [B, d]. Returns h [B, L, d] and ω [B, L, M].
 * `scoreScale` multiplies the logits before the softmax (1 = the paper's formula).
 */
export function fuseModalities(
  mods: readonly Tensor[],
  eTime: Tensor,
  query: Tensor,
  scoreScale = 1,
): { h: Tensor; omega: Tensor } {
  const [b, l, d] = mods[0].shape;
  const q = query.rank === 2 ? op.broadcastTo(op.reshape(query, [b, 1, d]), [b, l, d]) : query;
  // ω_i^m = softmax_m <q_i, tanh(e_i^m + e_time_i)>, h_i = Σ_m ω_i^m e_i^m: one engine op.
  return op.modalityFusion(mods, eTime, q, scoreScale);
}

/**
 * DuAF with query/key projections (`duafmat.fusionScore = "projected"`), a deviation from Eq. 7.
 * In Eq. 7 the time embedding is added to every modality inside the tanh, so once e_time is larger
 * than the modality vectors the keys of all modalities coincide and the weights cannot leave
 * 1/M (measured in docs/results.md: |e_time| 4.7 against |e^m| 0.6-0.7, key cosine 0.97 across
 * modalities). Here time joins the user side of the score instead, and each modality has a key
 * projection of its own:
 *   u_i = W_q [LN(q_i); LN(e_time_i)],  k_i^m = W_k^m LN(e_i^m),
 *   ω_i^m = softmax_m <u_i, k_i^m> / sqrt(d),  h_i = Σ_m ω_i^m e_i^m.
 * The LayerNorms make the logits independent of the embeddings' scale, and W ~ N(0, 1/fan_in)
 * gives logits of unit variance at initialisation, so the softmax starts away from its flat,
 * small-gradient regime.
 */
export class ProjectedFusion extends Module {
  readonly queryNorm: LayerNorm;
  readonly timeNorm: LayerNorm;
  readonly keyNorm: LayerNorm;
  readonly query: Linear;
  readonly keys: Linear[];

  constructor(readonly dim: number, modalities: readonly string[], rng: Rng, eps: number) {
    super();
    this.queryNorm = this.child("query_norm", new LayerNorm(dim, eps));
    this.timeNorm = this.child("time_norm", new LayerNorm(dim, eps));
    this.keyNorm = this.child("key_norm", new LayerNorm(dim, eps));
    this.query = this.child(
      "query",
      new Linear(2 * dim, dim, rng, { std: 1 / Math.sqrt(2 * dim) }),
    );
    this.keys = modalities.map((m) =>
      this.child(`key_${m}`, new Linear(dim, dim, rng, { std: 1 / Math.sqrt(dim) }))
    );
  }

  /** mods: M tensors [B, L, d]; eTime and query [B, L, d]. Returns h [B, L, d] and ω [B, L, M]. */
  forward(
    mods: readonly Tensor[],
    eTime: Tensor,
    query: Tensor,
    scoreScale = 1,
  ): { h: Tensor; omega: Tensor } {
    const [b, l, d] = mods[0].shape;
    const u = this.query.forward(
      op.concat([this.queryNorm.forward(query), this.timeNorm.forward(eTime)], -1),
    );
    const keys = stackModalities(mods.map((e, m) => this.keys[m].forward(this.keyNorm.forward(e))));
    const scores = op.sum(op.mul(keys, op.reshape(u, [b, l, 1, d])), -1);
    const omega = op.softmax(op.scale(scores, scoreScale / Math.sqrt(d)));
    const h = op.sum(op.mul(stackModalities(mods), op.reshape(omega, [b, l, mods.length, 1])), 2);
    return { h, omega };
  }
}

/** The -DuAF ablation: equal weights. */
export function averageFusion(mods: readonly Tensor[]): Tensor {
  let sum = mods[0];
  for (let i = 1; i < mods.length; i++) sum = op.add(sum, mods[i]);
  return mods.length === 1 ? sum : op.scale(sum, 1 / mods.length);
}

/** q_i = mean_{j <= i} x_j over a [B, L, d] sequence (causal running mean). */
export function prefixMean(x: Tensor): Tensor {
  const [, l] = x.shape;
  const a = new Float32Array(l * l);
  for (let i = 0; i < l; i++) for (let j = 0; j <= i; j++) a[i * l + j] = 1 / (i + 1);
  // q[b] = A x[b], A shared by the batch: one batched product, no transposes.
  return op.matmul(tensor(a, [l, l]), x);
}
