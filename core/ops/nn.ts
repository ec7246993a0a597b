/**
 * Differentiable neural-network ops: softmax family, layer norm, dropout, embedding lookup,
 * losses, normalisation and attention.
 */
import { empty, record, type Tensor, zeros } from "../tensor.ts";
import { add, addScalar, div, mul, neg, scale, softplus, sqrt } from "./elementwise.ts";
import { matmul } from "./matmul.ts";
import { mean, sum } from "./reduce.ts";

function rowsCols(x: Tensor): [number, number] {
  const cols = x.shape[x.rank - 1];
  return [x.size / cols, cols];
}

function softmaxImpl(x: Tensor, log: boolean): Tensor {
  const [rows, cols] = rowsCols(x);
  const out = empty(x.shape);
  const b = x.backend;
  b.softmax(x.storage, out.storage, rows, cols, log);
  return record(out, log ? "log_softmax" : "softmax", [x], (g) => {
    const dx = empty(x.shape);
    b.softmaxGrad(out.storage, g.storage, dx.storage, rows, cols, log);
    return [dx];
  });
}

/** Softmax over the last axis. */
export const softmax = (x: Tensor): Tensor => softmaxImpl(x, false);
/** Log-softmax over the last axis. */
export const logSoftmax = (x: Tensor): Tensor => softmaxImpl(x, true);

/** LayerNorm over the last axis with affine gamma/beta ([cols] each). */
export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number): Tensor {
  const [rows, cols] = rowsCols(x);
  const out = empty(x.shape);
  const meanT = empty([rows]);
  const rstd = empty([rows]);
  const b = x.backend;
  b.layerNorm(
    x.storage,
    gamma.storage,
    beta.storage,
    out.storage,
    meanT.storage,
    rstd.storage,
    rows,
    cols,
    eps,
  );
  return record(out, "layer_norm", [x, gamma, beta], (g) => {
    const dx = empty(x.shape);
    const dgamma = zeros([cols]);
    const dbeta = zeros([cols]);
    b.layerNormGrad(
      x.storage,
      gamma.storage,
      meanT.storage,
      rstd.storage,
      g.storage,
      dx.storage,
      dgamma.storage,
      dbeta.storage,
      rows,
      cols,
    );
    return [dx, dgamma, dbeta];
  });
}

/**
 * Inverted dropout with a counter-based mask: the same seed gives the same mask on every
 * backend. The caller derives a fresh seed per call from its Rng.
 */
export function dropout(x: Tensor, p: number, seed: number, training: boolean): Tensor {
  if (!training || p === 0) return x;
  const mask = empty(x.shape);
  x.backend.dropoutMask(mask.storage, x.size, p, seed);
  return mul(x, mask);
}

/** Rows of `table` ([n, dim]) at int32 `idx` (any shape); output idx.shape + [dim]. */
export function embedding(table: Tensor, idx: Tensor): Tensor {
  if (idx.dtype !== "i32") throw new Error("embedding: indices must be int32");
  const dim = table.shape[1];
  const out = empty([...idx.shape, dim]);
  const b = table.backend;
  b.gather(table.storage, idx.storage, out.storage, idx.size, dim);
  return record(out, "embedding", [table], (g) => {
    const dt = zeros(table.shape);
    b.scatterAdd(g.storage, idx.storage, dt.storage, idx.size, dim);
    return [dt];
  });
}

/** out[r] = x[r, idx[r]] for x [rows, cols] and int32 idx [rows]. */
export function pick(x: Tensor, idx: Tensor): Tensor {
  const [rows, cols] = rowsCols(x);
  const out = empty([rows]);
  const b = x.backend;
  b.pick(x.storage, idx.storage, out.storage, rows, cols);
  return record(out, "pick", [x], (g) => {
    const dx = zeros(x.shape);
    b.pickGrad(g.storage, idx.storage, dx.storage, rows, cols);
    return [dx];
  });
}

/** Mean cross-entropy of logits [rows, classes] against int32 targets [rows]. */
export function crossEntropy(logits: Tensor, targets: Tensor): Tensor {
  return neg(mean(pick(logSoftmax(logits), targets)));
}

/**
 * Binary cross-entropy with logits for positive and negative scores (paper Eq. 18):
 * mean over elements of softplus(-pos) + softplus(neg) = -[log σ(pos) + log(1 - σ(neg))].
 */
export function bceWithLogits(pos: Tensor, negScores: Tensor): Tensor {
  return add(mean(softplus(neg(pos))), mean(softplus(negScores)));
}

/** x / sqrt(Σ x² + eps) over the last axis. */
export function l2Normalize(x: Tensor, eps = 1e-12): Tensor {
  const norm = sqrt(addScalar(sum(mul(x, x), -1, true), eps));
  return div(x, norm);
}

/** Cosine similarity matrix between rows of a [n, d] and b [m, d]: [n, m]. */
export function cosineSimilarity(a: Tensor, b: Tensor): Tensor {
  return matmul(l2Normalize(a), l2Normalize(b), false, true);
}

/**
 * Scaled dot-product attention over [batch, heads, len, headDim] tensors with an additive mask
 * broadcastable to [batch, heads, len, len] (0 = attend, large negative = blocked).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null): Tensor {
  const headDim = q.shape[q.rank - 1];
  let scores = scale(matmul(q, k, false, true), 1 / Math.sqrt(headDim));
  if (mask) scores = add(scores, mask);
  return matmul(softmax(scores), v);
}
