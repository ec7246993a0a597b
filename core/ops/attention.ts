/**
 * Multi-head attention's core with the heads in place: per sequence and head, softmax(q k^T *
 * scale + mask), dropout, times v, the heads' outputs side by side. It is headDots, maskedSoftmax,
 * dropout and headMix; where the backend fuses them (Backend.attention) it is one call each way
 * with the same bits, and the [B, h, Lq, Lk] scores and dropped probabilities never reach memory.
 */
import { empty, record, type Tensor, tensor } from "../tensor.ts";
import { headDots, headMix } from "./matmul.ts";
import { dropout, dropoutRows, maskedSoftmax, maskGeometry, stepRows } from "./nn.ts";

/** Dropout of the attention probabilities; `seed` is the one drop() drew for them. */
export interface AttentionDropout {
  p: number;
  seed: number;
  training: boolean;
  /**
   * q holds one query per sequence (Lq = 1), the one at step steps[b] of a full pass over the
   * Lk keys, whose dropout mask it takes (dropoutRows).
   */
  steps?: Int32Array;
}

/**
 * q [B, Lq, h * dh], k and v [B, Lk, h * dh], mask additive (broadcastable to [B, h, Lq, Lk])
 * -> [B, Lq, h * dh], head j's softmax(q_j k_j^T * scale + mask) v_j in columns [j dh,
 * (j + 1) dh).
 */
export function headAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: Tensor | null,
  heads: number,
  scale: number,
  drop: AttentionDropout,
): Tensor {
  const [batch, lq, d] = q.shape;
  const lk = k.shape[1];
  const active = drop.training && drop.p > 0;
  if (drop.steps && drop.steps.length !== batch) {
    throw new Error(`headAttention: ${drop.steps.length} steps for ${batch} sequences`);
  }
  const b = q.backend;
  const geometry = maskGeometry([batch, heads, lq, lk], mask?.shape ?? null);
  if (b.attention && geometry && v.shape[1] === lk && sameRows(q, k, v)) {
    const steps = active && drop.steps ? tensor(drop.steps, [batch], "i32") : null;
    const args = {
      q: q.storage,
      k: k.storage,
      v: v.storage,
      batch,
      lq,
      lk,
      d,
      heads,
      scale,
      dropout: active ? { p: drop.p, seed: drop.seed, steps: steps?.storage ?? null } : null,
    };
    const p = empty([batch, heads, lq, lk]);
    const out = empty([batch, lq, d]);
    const maskArgs = { mask: mask?.storage ?? null, maskRows: geometry[2] };
    if (b.attention({ ...args, ...maskArgs, p: p.storage, out: out.storage })) {
      const saved = steps ? [p, steps] : [p];
      const recorded = record(out, "head_attention", [q, k, v], (g) => {
        const [dq, dk, dv] = [empty(q.shape), empty(k.shape), empty(v.shape)];
        const grads = { g: g.storage, dq: dq.storage, dk: dk.storage, dv: dv.storage };
        if (!b.attentionGrad?.({ ...args, ...grads, p: p.storage })) {
          throw new Error("headAttention: the backend fused the forward pass but not its gradient");
        }
        return [dq, dk, dv].map((t, i) => {
          if ([q, k, v][i].requiresGrad) return t;
          t.dispose();
          return null;
        });
      }, saved);
      if (!recorded.requiresGrad) { for (const t of saved) t.dispose(); }
      return recorded;
    }
    p.dispose();
    out.dispose();
    steps?.dispose();
  }
  const probs = maskedSoftmax(headDots(q, k, heads), mask, scale);
  let dropped = probs;
  if (active && drop.steps) {
    // The query of sequence b is a row of a [B, h, Lk, Lk] pass.
    const rows = stepRows(drop.steps, heads, lk);
    dropped = dropoutRows(probs, drop.p, drop.seed, rows.of, rows.index);
  } else if (active) dropped = dropout(probs, drop.p, drop.seed, true);
  return headMix(dropped, v);
}

/** q, k and v as the fused call reads them: [B, L, d] each, the same B and d. */
function sameRows(q: Tensor, k: Tensor, v: Tensor): boolean {
  return [q, k, v].every((t) => t.rank === 3 && t.shape[0] === q.shape[0]) &&
    k.shape[2] === q.shape[2] && v.shape[2] === q.shape[2];
}
