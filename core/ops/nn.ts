/**
 * Differentiable neural-network ops: softmax family, layer norm, dropout, embedding lookup,
 * losses, normalisation and attention.
 */
import { argmaxRowsOf, gemmArgs, type Storage } from "../backend.ts";
import {
  empty,
  full,
  isGradEnabled,
  record,
  sameShape,
  type Tensor,
  tensor,
  zeros,
} from "../tensor.ts";
import { broadcastStrides, contiguousStrides } from "./broadcast.ts";
import { add, addScalar, div, gelu, mul, neg, softplus, sqrt } from "./elementwise.ts";
import { gemmInto, matmul } from "./matmul.ts";
import { mean, sum } from "./reduce.ts";
import { reshape } from "./shape.ts";

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
  return record(
    out,
    "layer_norm",
    [x, gamma, beta],
    (g) => layerNormGrad(x, gamma, meanT, rstd, g, rows, cols),
  );
}

/** The layer norm of x's gradients dx, dgamma, dbeta from the forward's row statistics. */
function layerNormGrad(
  x: Tensor,
  gamma: Tensor,
  meanT: Tensor,
  rstd: Tensor,
  g: Tensor,
  rows: number,
  cols: number,
): [Tensor, Tensor, Tensor] {
  const dx = empty(x.shape);
  const dgamma = zeros([cols]);
  const dbeta = zeros([cols]);
  x.backend.layerNormGrad(
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
}

/**
 * layerNorm(a + b) over the last axis (a post-norm residual block), or with `drop`
 * layerNorm(dropout(a, p, seed) + b) in training, as one op where the backend fuses the dropout
 * and the add into the layer norm (Backend.addLayerNorm): each row's sum is formed just before it
 * is normalized, and kept only where a backward needs it. The same bits as the separate ops;
 * elsewhere, or for operands of different shapes, it is those ops.
 */
export function addLayerNorm(
  a: Tensor,
  b: Tensor,
  gamma: Tensor,
  beta: Tensor,
  eps: number,
  drop?: { p: number; seed: number },
): Tensor {
  const be = a.backend;
  const separate = () =>
    layerNorm(add(drop ? dropout(a, drop.p, drop.seed, true) : a, b), gamma, beta, eps);
  if (!be.addLayerNorm || !sameShape(a.shape, b.shape)) return separate();
  const [rows, cols] = rowsCols(a);
  const inputs = [a, b, gamma, beta];
  const taped = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  const sum = taped ? empty(a.shape) : null;
  const out = empty(a.shape);
  const meanT = empty([rows]);
  const rstd = empty([rows]);
  const took = be.addLayerNorm(
    a.storage,
    b.storage,
    sum?.storage ?? null,
    gamma.storage,
    beta.storage,
    out.storage,
    meanT.storage,
    rstd.storage,
    rows,
    cols,
    eps,
    drop,
  );
  if (!took) {
    for (const t of [sum, out, meanT, rstd]) t?.dispose();
    return separate();
  }
  if (!sum) {
    meanT.dispose();
    rstd.dispose();
    return out;
  }
  return record(out, "add_layer_norm", inputs, (g) => {
    const [dx, dgamma, dbeta] = layerNormGrad(sum, gamma, meanT, rstd, g, rows, cols);
    // The add hands the sum's gradient to both operands, a's through its dropout mask.
    let da = dx;
    if (drop && a.requiresGrad) {
      da = empty(a.shape);
      be.dropout(dx.storage, da.storage, dx.size, drop.p, drop.seed);
    }
    return [da, dx, dgamma, dbeta];
  }, [sum]);
}

/**
 * Inverted dropout with a counter-based mask: the same seed gives the same mask on every
 * backend. The mask is never stored: the backend draws it inside the one kernel that applies it,
 * forward to x and backward to the gradient, which saves a mask buffer, its writes and reads, and
 * a launch each way. The caller derives a fresh seed per call.
 */
export function dropout(x: Tensor, p: number, seed: number, training: boolean): Tensor {
  if (!training || p === 0) return x;
  const b = x.backend;
  const applyMask = (src: Tensor): Tensor => {
    const out = empty(x.shape);
    b.dropout(src.storage, out.storage, x.size, p, seed);
    return out;
  };
  const out = applyMask(x);
  return record(out, "dropout", [x], (g) => [applyMask(g)]);
}

/**
 * Where one-query-per-sequence rows sit in a full pass: a full [B, groups, len, cols] activation
 * (groups: attention heads, or 1) has the query of sequence b at step steps[b] of each group.
 * dropoutRows's rows and their count.
 */
export function stepRows(steps: Int32Array, groups: number, len: number) {
  const index = new Int32Array(steps.length * groups);
  for (let b = 0; b < steps.length; b++) {
    for (let g = 0; g < groups; g++) index[b * groups + g] = (b * groups + g) * len + steps[b];
  }
  return { index, of: index.length * len };
}

/**
 * Dropout of x, seen as rows of its last axis, with the mask `dropout(·, p, seed)` draws for a
 * [of, cols] tensor at rows `rows` (one per row of x): a pass over some rows of an activation
 * keeps the full pass's mask, and its bits (x * mask is what dropout computes).
 */
export function dropoutRows(
  x: Tensor,
  p: number,
  seed: number,
  of: number,
  rows: Int32Array,
): Tensor {
  const cols = x.shape[x.rank - 1];
  if (rows.length * cols !== x.size) throw new Error("dropoutRows: one row index per row of x");
  const index = tensor(rows, [rows.length], "i32");
  const b = x.backend;
  if (b.dropoutRows && p > 0) {
    // Those rows' masks drawn where they are used, without the [of, cols] mask in memory.
    const bad = rows.findIndex((r) => !(r >= 0 && r < of));
    if (bad >= 0) throw new RangeError(`dropoutRows: row ${rows[bad]} outside [0, ${of})`);
    const apply = (src: Tensor): Tensor | null => {
      const out = empty(x.shape);
      if (b.dropoutRows!(src.storage, out.storage, index.storage, rows.length, cols, p, seed)) {
        return out;
      }
      out.dispose();
      return null;
    };
    const out = apply(x);
    if (out) return record(out, "dropout_rows", [x], (g) => [apply(g)], [index]);
  }
  const mask = dropout(full([of, cols], 1), p, seed, true);
  return mul(x, reshape(embedding(mask, index), x.shape));
}

/**
 * y = x W^T + b with the bias written into the output before an accumulating GEMM (or, where the
 * backend fuses it, added in the GEMM's store), so a Linear keeps one activation instead of two.
 * x: [..., in], w: [out, in], b: [out].
 */
export function linear(x: Tensor, w: Tensor, bias: Tensor | null): Tensor {
  if (!bias) return matmul(x, w, false, true);
  const [outF, inF] = w.shape;
  const rows = x.size / inF;
  const out = empty([...x.shape.slice(0, -1), outF]);
  const b = x.backend;
  if (b.fusesGemmBias) {
    // The bias enters in the product's store: the same bits as the copy below, one pass fewer.
    b.gemm(
      gemmArgs(x.storage, w.storage, out.storage, rows, outF, inF, {
        transB: true,
        bias: bias.storage,
      }),
    );
  } else {
    b.copy2d(bias.storage, 0, 0, out.storage, 0, outF, rows, outF, false);
    gemmInto(x, w, out, rows, outF, inF, false, true, true);
  }
  return record(out, "linear", [x, w, bias], (g, into) => {
    const dx = x.requiresGrad ? inputGrad(g, w, x, rows, inF, outF, into?.[0]) : null;
    return [dx, ...paramGrads(g, x, w, bias, rows)];
  });
}

/** A linear's weight and bias gradients (null where not wanted) from g [rows, out] and x. */
function paramGrads(
  g: Tensor,
  x: Tensor,
  w: Tensor,
  bias: Tensor,
  rows: number,
): [Tensor | null, Tensor | null] {
  const [outF, inF] = w.shape;
  const dw = w.requiresGrad ? gemmInto(g, x, empty(w.shape), outF, inF, rows, true, false) : null;
  let db: Tensor | null = null;
  if (bias.requiresGrad) {
    db = empty([outF]);
    g.backend.reduceSum(g.storage, [rows, outF], db.storage, [0, 1], outF, false);
  }
  return [dw, db];
}

/**
 * x's gradient g w for y = x w^T ([rows, inF] from g [rows, outF]): added to `sum`, the gradient
 * x has so far, in the product's store where that gives the bits of adding it afterwards
 * (Backend.gemmSliceK), else a new buffer.
 */
function inputGrad(
  g: Tensor,
  w: Tensor,
  x: Tensor,
  rows: number,
  inF: number,
  outF: number,
  sum?: Tensor,
): Tensor {
  const into = sum && outF <= (x.backend.gemmSliceK ?? 0) ? sum : undefined;
  return gemmInto(g, w, into ?? empty(x.shape), rows, inF, outF, false, false, into !== undefined);
}

/**
 * A transformer's position-wise feed-forward, linear(gelu(linear(x, w1, b1)), w2, b2), as one op
 * where the backend fuses GELU into its GEMM (Backend.fusesGemmGelu): the first product writes
 * gelu of its output while the rows are in cache, and in the backward the gradient of gelu's
 * input is formed in the store of the product that yields gelu's output gradient. The same bits
 * as the three ops; elsewhere it is those three ops. x: [..., in], w1: [hidden, in], w2:
 * [out, hidden], biases [hidden] and [out].
 */
export function feedForward(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor): Tensor {
  const be = x.backend;
  if (!be.fusesGemmGelu || !be.fusesGemmBias) return linear(gelu(linear(x, w1, b1)), w2, b2);
  const [hidden, inF] = w1.shape;
  const outF = w2.shape[0];
  const rows = x.size / inF;
  const params = [x, w1, b1, w2, b2];
  // Without a tape GELU overwrites its input; with one both are kept for the backward.
  const taped = isGradEnabled() && params.some((t) => t.requiresGrad);
  const pre = empty([rows, hidden]);
  const act = taped ? empty([rows, hidden]) : pre;
  be.gemm(
    gemmArgs(x.storage, w1.storage, pre.storage, rows, hidden, inF, {
      transB: true,
      bias: b1.storage,
      epilogue: { op: "gelu", out: act.storage },
    }),
  );
  const out = empty([...x.shape.slice(0, -1), outF]);
  be.gemm(
    gemmArgs(act.storage, w2.storage, out.storage, rows, outF, hidden, {
      transB: true,
      bias: b2.storage,
    }),
  );
  if (!taped) {
    pre.dispose();
    return out;
  }
  return record(out, "feed_forward", params, (g, into) => {
    const [dw2, db2] = paramGrads(g, act, w2, b2, rows);
    if (!x.requiresGrad && !w1.requiresGrad && !b1.requiresGrad) {
      return [null, null, null, dw2, db2];
    }
    // gelu's input gradient, formed in the store of the product giving its output gradient.
    const dpre = empty([rows, hidden]);
    be.gemm(
      gemmArgs(g.storage, w2.storage, dpre.storage, rows, hidden, outF, {
        epilogue: { op: "gelu_grad", x: pre.storage, y: act.storage },
      }),
    );
    const dx = x.requiresGrad ? inputGrad(dpre, w1, x, rows, inF, hidden, into?.[0]) : null;
    const [dw1, db1] = paramGrads(dpre, x, w1, b1, rows);
    dpre.dispose();
    return [dx, dw1, db1, dw2, db2];
  }, [pre, act]);
}

/**
 * softmax(scores * scale + mask) over the last axis as one op: the scaled and masked scores are a
 * temporary, not an activation. mask is additive and broadcastable to scores (e.g. [B, 1, L, L]).
 */
export function maskedSoftmax(scores: Tensor, mask: Tensor | null, scale: number): Tensor {
  const [rows, cols] = rowsCols(scores);
  const b = scores.backend;
  const geometry = maskGeometry(scores.shape, mask?.shape ?? null);
  if (geometry) {
    // One backend call: the scaled and masked logits never exist as a tensor.
    const out = empty(scores.shape);
    const [heads, q, maskRows] = geometry;
    b.maskedSoftmax(
      scores.storage,
      mask?.storage ?? null,
      out.storage,
      rows,
      cols,
      scale,
      heads,
      q,
      maskRows,
    );
    return maskedSoftmaxRecord(out, scores, scale, rows, cols);
  }
  const z = empty(scores.shape);
  b.unary("scale", scores.storage, z.storage, z.size, scale);
  let logits = z;
  if (mask) {
    logits = empty(scores.shape);
    const strides = contiguousStrides(scores.shape);
    const maskStrides = broadcastStrides(mask.shape, scores.shape);
    b.binary("add", z.storage, strides, mask.storage, maskStrides, logits.storage, scores.shape);
    z.dispose();
  }
  const out = empty(scores.shape);
  b.softmax(logits.storage, out.storage, rows, cols, false);
  logits.dispose();
  return maskedSoftmaxRecord(out, scores, scale, rows, cols);
}

/**
 * Scores [.., a, heads, q, cols] (rank 2 to 4) as Backend.maskedSoftmax's rows, and the mask's
 * row strides over them; null where the mask does not fit that form (a broadcast last axis,
 * rank over 4), which then takes the separate passes.
 */
export function maskGeometry(
  shape: readonly number[],
  maskShape: readonly number[] | null,
): [number, number, [number, number, number]] | null {
  const rank = shape.length;
  if (rank < 2 || rank > 4) return null;
  const lead = [1, 1, 1, ...shape.slice(0, -1)].slice(-3);
  const cols = shape[rank - 1];
  if (!maskShape) return [lead[1], lead[2], [0, 0, 0]];
  if (maskShape.length > rank || maskShape[maskShape.length - 1] !== cols) return null;
  const es = broadcastStrides(maskShape, shape).slice(0, -1);
  const rowStrides = [0, 0, 0, ...es.map((e) => e / cols)].slice(-3);
  return [lead[1], lead[2], rowStrides as [number, number, number]];
}

function maskedSoftmaxRecord(
  out: Tensor,
  scores: Tensor,
  scale: number,
  rows: number,
  cols: number,
): Tensor {
  const b = scores.backend;
  return record(out, "masked_softmax", [scores], (g) => {
    // The scale is applied inside the gradient kernel, rounded as a pass of its own would be.
    const ds = empty(scores.shape);
    b.softmaxGrad(out.storage, g.storage, ds.storage, rows, cols, false, scale);
    return [ds];
  });
}

/** Rows of `table` ([n, dim]) at int32 `idx` (any shape); output idx.shape + [dim]. */
export function embedding(table: Tensor, idx: Tensor): Tensor {
  const out = empty(lookupShape(table, idx));
  table.backend.gather(table.storage, idx.storage, out.storage, idx.size, table.shape[1]);
  return record(out, "embedding", [table], (g, into) => [lookupGrad(table, idx, g, into?.[0])]);
}

/** A lookup's output shape [...idx, dim]; the indices must be int32. */
function lookupShape(table: Tensor, idx: Tensor): number[] {
  if (idx.dtype !== "i32") throw new Error("embedding: indices must be int32");
  return [...idx.shape, table.shape[1]];
}

/**
 * The table's gradient of a lookup: g's rows added into zeros at their indices. With `into`, the
 * table's gradient summed so far (a buffer the backward may add into), a lookup of few rows
 * against a large table adds its rows there instead of handing back a table-sized buffer to add:
 * each touched row's contributions summed from zero in index order into a compact buffer, then
 * that sum added to the row once, which is what the dense gradient and its add give, bit for bit
 * (an untouched row gets nothing instead of + 0).
 */
function lookupGrad(table: Tensor, idx: Tensor, g: Tensor, into?: Tensor): Tensor {
  const dim = table.shape[1];
  return lookupGradFrom(
    table,
    idx,
    (ix, out) => table.backend.scatterAdd(g.storage, ix, out.storage, idx.size, dim),
    into,
  );
}

/**
 * lookupGrad with the rows of g added by `scatter(ix, out)` (out[ix[i], :] += row i, in order):
 * for a lookup whose gradient rows the backend can form as it adds them.
 */
function lookupGradFrom(
  table: Tensor,
  idx: Tensor,
  scatter: (ix: Storage, out: Tensor) => void,
  into?: Tensor,
): Tensor {
  const [rows, dim] = table.shape;
  const be = table.backend;
  const compact = into && be.hostMemory && 2 * idx.size <= rows
    ? compactRows(idx.toArray() as Int32Array, rows)
    : null;
  if (into && compact) {
    const { local, touched } = compact;
    const sums = zeros([touched.length, dim]);
    const at = (ix: Int32Array) => tensor(ix, [ix.length], "i32").storage;
    scatter(at(local), sums);
    be.scatterAdd(sums.storage, at(touched), into.storage, touched.length, dim);
    return into;
  }
  const dt = zeros(table.shape);
  scatter(idx.storage, dt);
  return dt;
}

/**
 * The distinct rows of `ix` in order of first use (`touched`) and each index's place among them
 * (`local`); null where an index lies outside [0, rows) (the dense scatter then reports it).
 */
function compactRows(ix: Int32Array, rows: number) {
  const slot = new Int32Array(rows).fill(-1);
  const local = new Int32Array(ix.length);
  const touched: number[] = [];
  for (let i = 0; i < ix.length; i++) {
    const r = ix[i];
    if (!(r >= 0 && r < rows)) return null;
    if (slot[r] < 0) {
      slot[r] = touched.length;
      touched.push(r);
    }
    local[i] = slot[r];
  }
  return { local, touched: Int32Array.from(touched) };
}

/**
 * embedding(table, idx) + b (b of the lookup's shape, e.g. position embeddings), in one pass where
 * the backend fuses it (Backend.gatherAdd): the same bits as the two ops, whose gradients it
 * gives (the lookup's to the table, g itself to b).
 */
export function embeddingAdd(table: Tensor, idx: Tensor, b: Tensor): Tensor {
  const shape = lookupShape(table, idx);
  const be = table.backend;
  if (!be.gatherAdd || !sameShape(b.shape, shape)) return add(embedding(table, idx), b);
  const out = empty(shape);
  if (!be.gatherAdd(table.storage, idx.storage, b.storage, out.storage, idx.size, shape.at(-1)!)) {
    out.dispose();
    return add(embedding(table, idx), b);
  }
  return record(out, "embedding_add", [table, b], (g, into) => [
    table.requiresGrad ? lookupGrad(table, idx, g, into?.[0]) : null,
    g,
  ]);
}

/**
 * Scores of candidates drawn for each row: out[r, j] = table[idx[r, j]] . h[r], for table [rows,
 * d], int32 idx [n, m] and h [n, d]: a sampled loss's target and negatives scored against its
 * sequence outputs. The same bits as gathering the rows and a batched [m x d] @ [d x 1] product
 * (what runs where the backend does not fuse them, Backend.gatherDots), whose gradients it gives
 * without keeping the [n, m, d] rows: h's from the table's rows again, the table's as the
 * lookup's gradient of g[r, j] h[r].
 */
export function gatherDots(table: Tensor, idx: Tensor, h: Tensor): Tensor {
  const [n, m] = idx.shape;
  const d = table.shape[1];
  if (idx.dtype !== "i32" || idx.rank !== 2) {
    throw new Error("gatherDots: idx must be int32 [n, m]");
  }
  if (h.rank !== 2 || h.shape[0] !== n || h.shape[1] !== d) {
    throw new Error(`gatherDots: h must be [${n}, ${d}], got [${h.shape}]`);
  }
  const be = table.backend;
  const out = be.gatherDots ? empty([n, m]) : null;
  if (!out || !be.gatherDots!(table.storage, idx.storage, h.storage, out.storage, n, m, d)) {
    out?.dispose();
    return reshape(matmul(embedding(table, idx), reshape(h, [n, d, 1])), [n, m]);
  }
  return record(out, "gather_dots", [table, h], (g, into) => {
    let dh: Tensor | null = null;
    if (h.requiresGrad) {
      dh = empty([n, d]);
      if (!be.gatherDotsGradH?.(table.storage, idx.storage, g.storage, dh.storage, n, m, d)) {
        dh.dispose();
        dh = reshape(matmul(embedding(table, idx), reshape(g, [n, m, 1]), true), [n, d]);
      }
    }
    // The candidates' gradient rows g[r, j] h[r] (each element one product), into the table's:
    // formed as they are added where the backend can, else as the product's [n, m, d] rows.
    let dt: Tensor | null = null;
    if (table.requiresGrad && be.scatterOuter) {
      dt = lookupGradFrom(table, idx, (ix, out) => {
        if (!be.scatterOuter!(g.storage, h.storage, ix, out.storage, n, m, d)) {
          throw new Error("gatherDots: the backend declined scatterOuter after offering it");
        }
      }, into?.[0]);
    } else if (table.requiresGrad) {
      dt = lookupGrad(
        table,
        idx,
        matmul(reshape(g, [n, m, 1]), reshape(h, [n, d, 1]), false, true),
        into?.[0],
      );
    }
    return [dt, dh];
  }, [idx]);
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

/**
 * Each row's first column holding its largest value, for x [rows, cols]: int32 [rows], no
 * gradient. On the backend where it has the kernel, else on the downloaded rows.
 */
export function argmaxRows(x: Tensor): Int32Array {
  const [rows, cols] = rowsCols(x);
  if (cols < 1) throw new RangeError("argmaxRows: a row needs at least one column");
  const b = x.backend;
  if (!b.argmaxRows) {
    const out = new Int32Array(rows);
    argmaxRowsOf(x.toFloat32(), out, rows, cols);
    return out;
  }
  const out = empty([rows], "i32");
  b.argmaxRows(x.storage, out.storage, rows, cols);
  const values = out.toArray() as Int32Array;
  out.dispose();
  return values;
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
  return matmul(maskedSoftmax(matmul(q, k, false, true), mask, 1 / Math.sqrt(headDim)), v);
}

/**
 * DuAF's modality fusion (paper Eq. 7-8) as one op: for M (1..4) modality tensors e^m, a time
 * embedding t and a query q, all of one shape [..., d],
 *   ω^m = softmax_m(scale <q, tanh(e^m + t)>),  h = Σ_m ω^m e^m.
 * Returns h [..., d] and ω [..., M]. The composition (stack, add, tanh, mul, sum, softmax, mul,
 * sum) passes over [..., M, d] about twenty times forward and backward; this op once each way.
 */
export function modalityFusion(
  mods: readonly Tensor[],
  t: Tensor,
  q: Tensor,
  scale = 1,
): { h: Tensor; omega: Tensor } {
  const m = mods.length;
  if (m < 1 || m > 4) throw new RangeError(`modalityFusion: 1 to 4 modalities, got ${m}`);
  const shape = mods[0].shape;
  for (const x of [...mods, t, q]) {
    if (x.shape.length !== shape.length || x.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`modalityFusion: shapes differ ([${x.shape}] vs [${shape}])`);
    }
  }
  const [rows, dim] = rowsCols(mods[0]);
  const b = t.backend;
  const h = empty(shape);
  // The backward reads its own copy of ω: a releasing backward frees ω itself after ω's step.
  const weights = empty([rows, m]);
  const keys = empty([rows, m, dim]);
  b.modalityFusion({
    e: mods.map((x) => x.storage),
    t: t.storage,
    q: q.storage,
    h: h.storage,
    omega: weights.storage,
    keys: keys.storage,
    rows,
    dim,
    scale,
  });
  const omega = empty([...shape.slice(0, -1), m]);
  b.copy2d(weights.storage, 0, 0, omega.storage, 0, 0, 1, omega.size, false);
  // h and ω are two tape entries over the same kernel: each passes its own gradient (the other
  // as zero), and the inputs' gradients add up.
  const grad = (gh: Tensor, gomega: Tensor | null) => {
    const ge = mods.map(() => empty(shape));
    const gt = empty(shape);
    const gq = empty(shape);
    b.modalityFusionGrad({
      e: mods.map((x) => x.storage),
      q: q.storage,
      omega: weights.storage,
      keys: keys.storage,
      gh: gh.storage,
      gomega: gomega?.storage ?? null,
      ge: ge.map((x) => x.storage),
      gt: gt.storage,
      gq: gq.storage,
      rows,
      dim,
      scale,
    });
    return [...ge, gt, gq];
  };
  record(h, "modality_fusion", [...mods, t, q], (g) => grad(g, null));
  record(omega, "modality_fusion_weights", [...mods, t, q], (g) => grad(zeros(shape), g));
  return { h, omega };
}
