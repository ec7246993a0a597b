/**
 * The one fixed op interface every compute backend implements (js, wasm, native, cuda).
 *
 * Backends know nothing about shapes beyond what a kernel call states, nothing about autograd and
 * nothing about models: the tape in core/autograd.ts composes these kernels into forward and
 * backward passes. All float tensors are float32 at the interface (a backend may compute in
 * float64, as the js reference does for gradient checks); index tensors are int32.
 *
 * Every size and offset below is in ELEMENTS, not bytes. Storage is opaque: only the backend that
 * allocated it may read it. Kernels write their whole output unless documented as accumulating.
 */

export type DType = "f32" | "i32";

/** Opaque handle to backend memory. */
export interface Storage {
  readonly size: number;
  readonly dtype: DType;
}

export type UnaryOp =
  | "neg"
  | "exp"
  | "log"
  | "sqrt"
  | "tanh"
  | "sigmoid"
  | "gelu" // exact erf form, as torch.nn.functional.gelu and RecBole use
  | "relu"
  | "leaky_relu" // alpha = negative slope
  | "softplus"
  | "sin"
  | "cos"
  | "abs"
  | "square"
  | "scale" // y = alpha * x
  | "add_scalar" // y = x + alpha
  | "pow_scalar"; // y = x ** alpha (x > 0 or integer alpha)

export type BinaryOp = "add" | "sub" | "mul" | "div";

/**
 * The compiled kernels' op codes: one numbering for the CUDA shim (the DUAF_NEG... enum in
 * ffi/cuda/duaf_cuda.h) and the WASM kernels (OP_NEG... in wasm/assembly/unary.ts, binary.ts).
 */
export const UNARY_CODES: Readonly<Record<UnaryOp, number>> = {
  neg: 0,
  exp: 1,
  log: 2,
  sqrt: 3,
  tanh: 4,
  sigmoid: 5,
  gelu: 6,
  relu: 7,
  leaky_relu: 8,
  softplus: 9,
  sin: 10,
  cos: 11,
  abs: 12,
  square: 13,
  scale: 14,
  add_scalar: 15,
  pow_scalar: 16,
};
export const BINARY_CODES: Readonly<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3 };

/**
 * Batched strided GEMM, row-major:
 *   C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b]   for b in [0, batch)
 * op(A) is M x K; A[b] starts at aOffset + b * strideA and is stored M x K (lda = K) when
 * transA is false, K x M (lda = M) when true. Likewise B is K x N (ldb = N) or N x K (ldb = K).
 * C[b] starts at cOffset + b * strideC, stored M x N (ldc = N). strideA or strideB may be 0 to
 * reuse one matrix across the batch. beta is 0 (overwrite) or 1 (accumulate).
 * lda, ldb, ldc override those row strides (at least the row's length): a product then reads or
 * writes a block of a wider matrix in place, e.g. one attention head's columns of [B, L, h * dh].
 * batch2 (default 1) adds an inner batch: item (b, j), b < batch, j < batch2, starts at
 * offset + b * stride + j * stride2 for each operand, and runs right after item (b, j - 1), so
 * the heads of one sequence are computed together while its rows are in cache.
 */
export interface GemmArgs {
  a: Storage;
  b: Storage;
  c: Storage;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  batch: number;
  strideA: number;
  strideB: number;
  strideC: number;
  aOffset: number;
  bOffset: number;
  cOffset: number;
  alpha: number;
  beta: 0 | 1;
  lda?: number;
  ldb?: number;
  ldc?: number;
  batch2?: number;
  strideA2?: number;
  strideB2?: number;
  strideC2?: number;
  /**
   * A row of n floats that C starts from in every row instead of its own contents (with beta 0):
   * C = bias + alpha op(A) op(B), rounded as a copy of the bias into C followed by the product
   * with beta 1. Only for backends with `fusesGemmBias`.
   */
  bias?: Storage;
  /**
   * Elementwise work done on C's rows while they are in cache, after the whole product (bias
   * included), with the bits of the GEMM followed by the backend's unary or unaryGrad call.
   * Only for backends with `fusesGemmGelu`; the buffers are laid out as C.
   */
  epilogue?: GemmEpilogue;
}

/**
 * A GEMM's epilogue (GemmArgs.epilogue): `gelu` writes gelu(C) to `out` (C itself, or another
 * buffer so that C keeps the pre-activation); `gelu_grad` replaces C, the gradient with respect
 * to y = gelu(x), with the gradient with respect to x (unaryGrad("gelu", x, y, C)).
 */
export type GemmEpilogue =
  | { op: "gelu"; out: Storage }
  | { op: "gelu_grad"; x: Storage; y: Storage };

/**
 * Eq. 7-8 of DuAF over `rows` rows of width `dim` (Backend.modalityFusion): the 1-4 modality
 * rows `e`, the time rows `t` and the query rows `q` in; `h`, `omega` [rows, M] and `keys`
 * [rows, M, dim] out.
 */
export interface FusionArgs {
  e: readonly Storage[];
  t: Storage;
  q: Storage;
  h: Storage;
  omega: Storage;
  keys: Storage;
  rows: number;
  dim: number;
  scale: number;
}

/** The fusion's backward (Backend.modalityFusionGrad): gh and gomega in; ge, gt, gq out. */
export interface FusionGradArgs {
  e: readonly Storage[];
  q: Storage;
  omega: Storage;
  keys: Storage;
  gh: Storage;
  gomega: Storage | null;
  ge: readonly Storage[];
  gt: Storage;
  gq: Storage;
  rows: number;
  dim: number;
  scale: number;
}

/** The inner batch of a GEMM: its count and each operand's stride (1 and zeros when absent). */
export function gemmBatch2(g: GemmArgs): { n: number; a: number; b: number; c: number } {
  return { n: g.batch2 ?? 1, a: g.strideA2 ?? 0, b: g.strideB2 ?? 0, c: g.strideC2 ?? 0 };
}

/** The row strides of a GEMM's operands: the given lda / ldb / ldc, or the packed ones. */
export function gemmLd(g: GemmArgs): { lda: number; ldb: number; ldc: number } {
  return {
    lda: g.lda ?? (g.transA ? g.m : g.k),
    ldb: g.ldb ?? (g.transB ? g.k : g.n),
    ldc: g.ldc ?? g.n,
  };
}

/**
 * The arguments of one plain product c = a @ b (m x k times k x n, no transposes, one batch item,
 * no offsets, alpha 1, beta 0), with any of them overridden.
 */
export function gemmArgs(
  a: Storage,
  b: Storage,
  c: Storage,
  m: number,
  n: number,
  k: number,
  over: Partial<GemmArgs> = {},
): GemmArgs {
  return {
    a,
    b,
    c,
    m,
    n,
    k,
    transA: false,
    transB: false,
    batch: 1,
    strideA: 0,
    strideB: 0,
    strideC: 0,
    aOffset: 0,
    bOffset: 0,
    cOffset: 0,
    alpha: 1,
    beta: 0,
    ...over,
  };
}

/**
 * Elements each GEMM operand spans from its offset, over the whole batch:
 * (batch - 1) * stride + (batch2 - 1) * stride2 + one matrix (strides are not negative).
 * Backends check these against the storages once per call.
 */
export function gemmSpans(g: GemmArgs): { a: number; b: number; c: number } {
  const last = g.batch - 1;
  const inner = gemmBatch2(g);
  const last2 = inner.n - 1;
  const { lda, ldb, ldc } = gemmLd(g);
  // A stored matrix of r rows of c elements, r - 1 row strides apart.
  const span = (r: number, c: number, ld: number) => {
    if (ld < c) throw new RangeError(`gemm: row stride ${ld} under the row length ${c}`);
    return r === 0 || c === 0 ? 0 : (r - 1) * ld + c;
  };
  return {
    a: last * g.strideA + last2 * inner.a + (g.transA ? span(g.k, g.m, lda) : span(g.m, g.k, lda)),
    b: last * g.strideB + last2 * inner.b + (g.transB ? span(g.n, g.k, ldb) : span(g.k, g.n, ldb)),
    c: last * g.strideC + last2 * inner.c + span(g.m, g.n, ldc),
  };
}

/** Adam / AdamW update of one parameter, in place on p, m, v. */
/** Backend.linearCrossEntropyKept: h [rows, d], table [items, d], z [rows, items]. */
export interface LinearCeArgs {
  h: Storage;
  table: Storage;
  /** int32 [rows] */
  targets: Storage;
  z: Storage;
  /** [rows] each: the log-sum-exp, the target's logit and the row maximum. */
  lse: Storage;
  picked: Storage;
  shift: Storage;
  rows: number;
  items: number;
  d: number;
  /**
   * The three products (z = h table^T, dh = G table, dtable = G^T h) on operands rounded to
   * bfloat16, summed in float32 (Backend.productsBf16; ceProducts "bf16"). The same on both calls.
   */
  bf16?: boolean;
}

/** Backend.linearCrossEntropyKeptGrad: `w` [rows] the row losses' gradient; null: not wanted. */
export interface LinearCeGradArgs extends Omit<LinearCeArgs, "picked"> {
  w: Storage;
  dh: Storage | null;
  dtable: Storage | null;
}

/**
 * Backend.linearCrossEntropyBlocks: core/ops/linear_ce.ts's chunked path over blocks of `block`
 * items, h [rows, d] against table [items, d]; lse and picked [rows] as crossEntropyBlock's.
 */
export interface LinearCeBlocksArgs {
  h: Storage;
  table: Storage;
  /** int32 [rows] */
  targets: Storage;
  lse: Storage;
  picked: Storage;
  rows: number;
  items: number;
  d: number;
  block: number;
  /** The products on bfloat16 operands (LinearCeArgs.bf16). The same on both calls. */
  bf16?: boolean;
}

/** Backend.linearCrossEntropyBlocksGrad: `w` [rows] the row losses' gradient; null: not wanted. */
export interface LinearCeBlocksGradArgs extends Omit<LinearCeBlocksArgs, "picked"> {
  w: Storage;
  dh: Storage | null;
  dtable: Storage | null;
}

/**
 * Backend.attention: per sequence and head, softmax(q k^T * scale + mask), dropout, times v.
 * q [batch, lq, d], k and v [batch, lk, d], out [batch, lq, d], head j in columns [j dh,
 * (j + 1) dh) of each; p [batch, heads, lq, lk] receives the softmax before dropout.
 */
export interface AttentionArgs {
  q: Storage;
  k: Storage;
  v: Storage;
  /** Additive, with maskedSoftmax's row strides over [batch, heads, lq] (0 broadcasts). */
  mask: Storage | null;
  maskRows: readonly [number, number, number];
  p: Storage;
  out: Storage;
  batch: number;
  lq: number;
  lk: number;
  d: number;
  heads: number;
  scale: number;
  /**
   * Dropout of the softmax at rate p with dropout(·, p, seed)'s mask for [batch, heads, lq, lk];
   * with `steps` (int32 [batch], lq = 1), each query row takes the mask of row steps[b] of a
   * [batch, heads, lk, lk] pass instead. Null: none.
   */
  dropout: { p: number; seed: number; steps: Storage | null } | null;
}

/** Backend.attentionGrad: g = the output's gradient; dq, dk, dv are written whole. */
export interface AttentionGradArgs extends Omit<AttentionArgs, "mask" | "maskRows" | "out"> {
  g: Storage;
  dq: Storage;
  dk: Storage;
  dv: Storage;
}

/**
 * Backend.rankScores: rankRows over the scores users items^T (users [rows, d], items [cols, d])
 * as gemm computes them, without the [rows, cols] scores.
 */
export interface RankScoresArgs {
  users: Storage;
  items: Storage;
  /** int32 [rows], [rows + 1] and [exOffsets[rows]], as rankRows takes them. */
  targets: Storage;
  exOffsets: Storage;
  exCols: Storage;
  /** int32 [rows] */
  out: Storage;
  rows: number;
  cols: number;
  d: number;
  /**
   * The caller's buffer for the item table's packed form (Backend.rankPackFloats(cols, d)
   * floats), kept across the calls of an evaluation whose table does not change: `ready` says
   * that it already holds this table's (from an earlier call), which is then not packed again.
   */
  pack?: { buffer: Storage; ready: boolean };
}

export interface AdamArgs {
  p: Storage;
  g: Storage;
  m: Storage;
  v: Storage;
  n: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** true: AdamW (decoupled decay p -= lr*wd*p); false: L2 added to the gradient (torch Adam). */
  decoupled: boolean;
  /** 1 - beta1^t and 1 - beta2^t, computed by the optimizer. */
  biasCorrection1: number;
  biasCorrection2: number;
}

/** Elements a maskedSoftmax mask spans: its last row's end (rows of cols elements). */
export function maskSpan(
  rows: number,
  cols: number,
  heads: number,
  q: number,
  m: readonly [number, number, number],
): number {
  if (rows === 0) return 0;
  const a = Math.ceil(rows / (heads * q));
  return ((a - 1) * m[0] + (heads - 1) * m[1] + (q - 1) * m[2] + 1) * cols;
}

/** Micro-batch size (padded tokens) that keeps a CPU training step within about 1.5 GB. */
export const CPU_TOKEN_BUDGET = 32768;

/** A backend's name and, when it has one, its description: the "backend:" line of the logs. */
export function backendSummary(be: Backend): string {
  return be.description ? `${be.name} (${be.description})` : be.name;
}

export interface Backend {
  readonly name: string;
  /** One line on what runs where (BLAS library and threads, native kernels, GPU), for logs. */
  readonly description?: string;
  /**
   * Releases what the backend holds beside tensor memory (kernel threads). Tensors it made stay
   * usable; the backend may run slower afterwards.
   */
  dispose?(): void;
  /** Micro-batch size in padded tokens for tokenBudget "auto" (absent: CPU_TOKEN_BUDGET). */
  readonly microBatchTokens?: number;
  /**
   * Tensors live in the process's own memory (js, wasm, native): reading one back is a copy, not
   * a wait for a device, so an op may read small index tensors back to plan its work.
   */
  readonly hostMemory?: boolean;
  /**
   * Bytes of one batch's [users x items] scores that evaluation holds whole before it ranks in
   * item blocks instead (absent: core/eval/evaluate.ts BLOCK_ABOVE_BYTES, sized for host memory).
   */
  readonly wholeScoresBytes?: number;

  /**
   * The memory every tensor of a run must fit in, when the backend knows it (the wasm arena's
   * limit, the host's available RAM); training checks its estimated peak against it.
   */
  memoryLimit?(): { bytes: number; what: string } | null;
  /** Bytes in use now and at most since the last resetPeak(), where the backend tracks them. */
  memoryStats?(): { inUse: number; peak: number };
  /** Starts a new peak measurement of memoryStats(). */
  resetPeak?(): void;

  // ---- memory -------------------------------------------------------------------------------
  alloc(size: number, dtype: DType): Storage;
  /** Copies host data into new storage. */
  upload(data: Float32Array | Int32Array, dtype: DType): Storage;
  /**
   * Copies storage [offset, offset+size) to the host (float32 for f32, int32 for i32): into a new
   * array, or into the start of `into` (of the storage's type, at least `size` long), returning
   * that prefix, so a loop over blocks reuses one host buffer.
   */
  download(
    s: Storage,
    offset?: number,
    size?: number,
    into?: Float32Array | Int32Array,
  ): Float32Array | Int32Array;
  free(s: Storage): void;
  fill(s: Storage, value: number, offset?: number, size?: number): void;
  /**
   * 2-D strided copy: for r in [0,rows): dst[dstOffset + r*dstStride + c] = src[srcOffset +
   * r*srcStride + c] for c in [0,cols). With accumulate, += instead of =. Serves slice, concat and
   * their gradients.
   */
  copy2d(
    src: Storage,
    srcOffset: number,
    srcStride: number,
    dst: Storage,
    dstOffset: number,
    dstStride: number,
    rows: number,
    cols: number,
    accumulate: boolean,
  ): void;

  // ---- dense math ---------------------------------------------------------------------------
  gemm(args: GemmArgs): void;

  // ---- elementwise --------------------------------------------------------------------------
  /** out[i] = f(x[i]) for i < n. */
  unary(op: UnaryOp, x: Storage, out: Storage, n: number, alpha: number): void;
  /** out[i] = g[i] * f'(x[i]) (y = f(x) is given too, for ops whose derivative is cheaper in y). */
  unaryGrad(
    op: UnaryOp,
    x: Storage,
    y: Storage,
    g: Storage,
    out: Storage,
    n: number,
    alpha: number,
  ): void;
  /**
   * Broadcasting binary op over an output of `shape` (rank <= 6). aStrides/bStrides are element
   * strides of the inputs laid over the output shape (0 on broadcast dims). out is contiguous.
   */
  binary(
    op: BinaryOp,
    a: Storage,
    aStrides: readonly number[],
    b: Storage,
    bStrides: readonly number[],
    out: Storage,
    shape: readonly number[],
  ): void;
  /**
   * Sum reduction: x is contiguous with `shape` (rank <= 6); out[Σ idx_d * outStrides[d]] +=
   * x[idx]. outStrides is 0 on reduced dims. out is zeroed by the kernel first unless accumulate.
   */
  reduceSum(
    x: Storage,
    shape: readonly number[],
    out: Storage,
    outStrides: readonly number[],
    outSize: number,
    accumulate: boolean,
  ): void;
  /** out[i] += alpha * x[i] for i < n (gradient accumulation, SGD-like updates). */
  axpy(x: Storage, out: Storage, n: number, alpha: number): void;
  /** Σ x[i]^2 over i < n, returned to the host (gradient-norm clipping). */
  sumSquares(x: Storage, n: number): number;
  /** out[i] = x[i] * perm[...] : general transpose of a contiguous tensor (rank <= 6). */
  permute(x: Storage, shape: readonly number[], perm: readonly number[], out: Storage): void;

  // ---- row-wise (last axis) -----------------------------------------------------------------
  /** Softmax (or log-softmax) over each row of cols elements. */
  softmax(x: Storage, out: Storage, rows: number, cols: number, log: boolean): void;
  /**
   * Gradient of softmax / log-softmax given the forward output y and upstream g; with `scale`
   * (default 1) each element is then multiplied by it, rounded as a separate scale pass would.
   */
  softmaxGrad(
    y: Storage,
    g: Storage,
    out: Storage,
    rows: number,
    cols: number,
    log: boolean,
    scale?: number,
  ): void;
  /**
   * Attention's softmax(x * scale + mask) over each row of cols elements, in one call: element
   * (r, c) is f32(f32(x * scale) + mask) as the separate passes round it, then the softmax
   * kernel's. The rows are [a, heads, q] (r = (i * heads + j) * q + k); the mask row added to row
   * r starts at (i * maskRows[0] + j * maskRows[1] + k * maskRows[2]) * cols (0 broadcasts);
   * a null mask adds nothing.
   */
  maskedSoftmax(
    x: Storage,
    mask: Storage | null,
    out: Storage,
    rows: number,
    cols: number,
    scale: number,
    heads: number,
    q: number,
    maskRows: readonly [number, number, number],
  ): void;
  /** LayerNorm over rows; writes out, and mean/rstd (rows each) for the backward pass. */
  layerNorm(
    x: Storage,
    gamma: Storage,
    beta: Storage,
    out: Storage,
    mean: Storage,
    rstd: Storage,
    rows: number,
    cols: number,
    eps: number,
  ): void;
  /**
   * layerNorm of x = a + b (the same shape), where the backend fuses it: the bits of binary add
   * then layerNorm, each row's sum formed just before it is normalized; with `dropout`, of
   * dropout(a, p, seed) + b (the dropout call's mask and bits). x is written to `sum` (kept for
   * the backward) unless it is null. False, having done nothing, when it does not take the call
   * (the caller then makes the separate calls).
   */
  addLayerNorm?(
    a: Storage,
    b: Storage,
    sum: Storage | null,
    gamma: Storage,
    beta: Storage,
    out: Storage,
    mean: Storage,
    rstd: Storage,
    rows: number,
    cols: number,
    eps: number,
    dropout?: { p: number; seed: number },
  ): boolean;
  /** dx (overwritten); dgamma, dbeta accumulated (+=). */
  layerNormGrad(
    x: Storage,
    gamma: Storage,
    mean: Storage,
    rstd: Storage,
    g: Storage,
    dx: Storage,
    dgamma: Storage,
    dbeta: Storage,
    rows: number,
    cols: number,
  ): void;

  // ---- chunked cross-entropy (core/ops/linear_ce.ts) ----------------------------------------
  /**
   * One item block of a chunked cross-entropy's forward pass. x [rows, cols] holds the logits of
   * columns [colOffset, colOffset + cols) of each full row. lse[r] becomes the log-sum-exp of the
   * block's row (first) or that merged with the running value: lse = log(e^lse + e^block).
   * picked[r] = x[r, targets[r] - colOffset] when the target falls in the block; the first block
   * writes 0 for the others, later blocks leave them.
   *
   * With `shift` (only where `keepsCrossEntropyExp`), the exponentials are kept: x becomes
   * e^(x - m_r) in place and shift[r] = m_r, the row's maximum in the block.
   */
  crossEntropyBlock(
    x: Storage,
    targets: Storage,
    lse: Storage,
    picked: Storage,
    rows: number,
    cols: number,
    colOffset: number,
    first: boolean,
    shift?: Storage,
  ): void;
  /**
   * Gradient of a block's logits, in place: x[r, c] = w[r] * (e^(x[r, c] - lse[r]) - [targets[r]
   * == colOffset + c]), where lse is the full row's log-sum-exp and w the row loss's gradient.
   * With `shift`, x holds crossEntropyBlock's kept e^(x - shift[r]) and one exponential per row
   * rescales it: x = w[r] * e^(shift[r] - lse[r]) * x - w[r] * onehot.
   */
  crossEntropyBlockGrad(
    x: Storage,
    targets: Storage,
    lse: Storage,
    w: Storage,
    rows: number,
    cols: number,
    colOffset: number,
    shift?: Storage,
  ): void;
  /**
   * Whether the two calls above take `shift`: the gradient then costs a multiply per logit
   * instead of an exponential (core/ops/linear_ce.ts uses it when it keeps the logits).
   */
  readonly keepsCrossEntropyExp?: boolean;
  /** Whether gemm takes GemmArgs.bias (a Linear's bias added in the product's store). */
  readonly fusesGemmBias?: boolean;
  /** Whether gemm takes GemmArgs.epilogue (GELU and its gradient in the product's store). */
  readonly fusesGemmGelu?: boolean;
  /**
   * The K slice of gemm's accumulation, where it has one: a product with k up to it, taken into C
   * with beta 1, has the bits of the product stored then added to C (each element's accumulator
   * starts from 0 and is added to C once), so a gradient can be summed in the product's store.
   */
  readonly gemmSliceK?: number;
  /**
   * core/ops/linear_ce.ts's one-block path with kept exponentials in one call, where the backend
   * fuses it: the bits of gemm (z = h table^T) then crossEntropyBlock (first block, all items,
   * e^(z - shift) kept in z), with the logits turned into exponentials while still in cache
   * instead of in a second pass over z. False, having done nothing, when it does not take the
   * call (the caller then makes the separate calls).
   */
  linearCrossEntropyKept?(a: LinearCeArgs): boolean;
  /**
   * Its backward: the bits of crossEntropyBlockGrad (with shift) then dh = G table and
   * dtable = G^T h, reading z once and leaving it unchanged. False as above.
   */
  linearCrossEntropyKeptGrad?(a: LinearCeGradArgs): boolean;
  /**
   * core/ops/linear_ce.ts's chunked path (logits not kept) in one call, where the backend fuses
   * it: the bits of gemm (a block's logits) then crossEntropyBlock (no shift), block by block,
   * with each band of rows' logits scored while in cache instead of a [rows x block] buffer.
   * False, having done nothing, when it does not take the call.
   */
  linearCrossEntropyBlocks?(a: LinearCeBlocksArgs): boolean;
  /**
   * Its backward: the bits of the separate calls (the logits again, crossEntropyBlockGrad,
   * dh (+)= G table_block, dtable_block = G^T h), a slice of items at a time. False as above.
   */
  linearCrossEntropyBlocksGrad?(a: LinearCeBlocksGradArgs): boolean;
  /**
   * Whether the two calls above take LinearCeArgs.bf16 (TrainConfig.ceProducts "bf16"): the C
   * kernels on a CPU with AVX-512 BF16.
   */
  readonly productsBf16?: boolean;

  /**
   * core/ops/attention.ts in one call each way, where the backend fuses it: the bits of headDots,
   * maskedSoftmax, dropout (or dropoutRows) and headMix, and of their gradients, without the
   * [batch, heads, lq, lk] scores and dropped probabilities in memory. False, having done
   * nothing, when it does not take the call (the caller then makes the separate calls).
   */
  attention?(a: AttentionArgs): boolean;
  attentionGrad?(a: AttentionGradArgs): boolean;

  // ---- DuAF fusion (core/ops/nn.ts modalityFusion) ----------------------------------------
  /**
   * Eq. 7-8 of DuAF, row by row: for the M (1..4) modality rows e_m[r] and t[r], q[r] (all
   * [rows, dim]): keys[r, m] = tanh(e_m[r] + t[r]), omega[r, :] = softmax_m(scale <keys[r, m],
   * q[r]>), h[r] = Σ_m omega[r, m] e_m[r]. keys [rows, M, dim] and omega [rows, M] are kept for
   * the backward.
   */
  modalityFusion(a: FusionArgs): void;
  /**
   * Its gradient given gh [rows, dim] and, unless null, gomega [rows, M]: ge_m, gt and gq (each
   * [rows, dim]) are overwritten.
   */
  modalityFusionGrad(a: FusionGradArgs): void;

  // ---- indexing -----------------------------------------------------------------------------
  /** out[i, :] = table[idx[i], :] for i < n, rows of dim elements. */
  gather(table: Storage, idx: Storage, out: Storage, n: number, dim: number): void;
  /**
   * out[i, :] = table[idx[i], :] + b[i, :] in one pass, where the backend fuses it (the bits of
   * gather then binary add); false, having done nothing, when it does not take the call.
   */
  gatherAdd?(
    table: Storage,
    idx: Storage,
    b: Storage,
    out: Storage,
    n: number,
    dim: number,
  ): boolean;
  /**
   * out[r, j] = table[idx[r, j], :] . h[r, :] for r < n, j < m (rows of d), without the gathered
   * [n, m, d] rows, where the backend fuses it with the bits of gather then the batched
   * [m x d] @ [d x 1] product; false, having done nothing, when it does not take the call.
   */
  gatherDots?(
    table: Storage,
    idx: Storage,
    h: Storage,
    out: Storage,
    n: number,
    m: number,
    d: number,
  ): boolean;
  /**
   * gatherDots' gradient for h: dh[r, :] = sum_j g[r, j] table[idx[r, j], :] (dh overwritten),
   * with the bits of the transposed batched product it replaces; false when not taken.
   */
  gatherDotsGradH?(
    table: Storage,
    idx: Storage,
    g: Storage,
    dh: Storage,
    n: number,
    m: number,
    d: number,
  ): boolean;
  /**
   * out[idx[i], :] += g[i] h[floor(i / m), :] for i < n m in order (out is not zeroed), each
   * product rounded then added: the bits of the product g h^T's rows then scatterAdd, without
   * those rows; false, having done nothing, when the backend does not take the call.
   */
  scatterOuter?(
    g: Storage,
    h: Storage,
    idx: Storage,
    out: Storage,
    n: number,
    m: number,
    d: number,
  ): boolean;
  /** out[idx[i], :] += g[i, :] (out is not zeroed). */
  scatterAdd(g: Storage, idx: Storage, out: Storage, n: number, dim: number): void;
  /** out[r] = x[r, idx[r]] for r < rows (x is rows x cols). */
  pick(x: Storage, idx: Storage, out: Storage, rows: number, cols: number): void;
  /** out[r, idx[r]] += g[r] (out is not zeroed). */
  pickGrad(g: Storage, idx: Storage, out: Storage, rows: number, cols: number): void;
  /**
   * out[r] (int32) = the first column of x [rows, cols] (cols >= 1) holding row r's largest
   * value (NaN is never the largest unless the whole row is). Optional: a backend without it has
   * the rows downloaded (op.argmaxRows).
   */
  argmaxRows?(x: Storage, out: Storage, rows: number, cols: number): void;
  /**
   * Full-ranking evaluation without downloading the scores: out[r] (int32) = how many columns of
   * x [rows, cols] score at least x[r, targets[r]], the target itself and the excluded columns
   * exCols[exOffsets[r] .. exOffsets[r + 1]) other than the target not counted (core/eval/
   * metrics.ts rankOf). Optional: evaluation downloads the scores where a backend lacks it.
   */
  rankRows?(
    x: Storage,
    targets: Storage,
    exOffsets: Storage,
    exCols: Storage,
    out: Storage,
    rows: number,
    cols: number,
  ): void;
  /**
   * rankRows of gemm's scores users items^T, each band of rows ranked while its scores are in
   * cache, where the backend fuses it. False, having done nothing, when it does not take the call
   * (the caller then scores and ranks separately).
   */
  rankScores?(a: RankScoresArgs): boolean;
  /** Floats of RankScoresArgs.pack for an item table of cols rows of d (with rankScores). */
  rankPackFloats?(cols: number, d: number): number;

  // ---- randomness ---------------------------------------------------------------------------
  /**
   * Dropout: out[i] = x[i] * m[i], m[i] = (u(seed, i) >= p) ? f32(1/(1-p)) : 0, where u is the
   * counter-based uniform of core/random.ts (hashUniform): every backend draws the same mask for
   * the same seed, and the mask is drawn again from the seed instead of being stored (backward
   * applies the same call to the gradient). x and out may be the same buffer.
   */
  dropout(x: Storage, out: Storage, n: number, p: number, seed: number): void;
  /**
   * Dropout of `n` rows of cols elements with the mask dropout(·, p, seed) draws for row rows[r]
   * (int32) of a larger [of, cols] tensor: element c of row r at index rows[r] * cols + c. False,
   * having done nothing, where the backend has no such call (the caller gathers from the larger
   * mask instead).
   */
  dropoutRows?(
    x: Storage,
    out: Storage,
    rows: Storage,
    n: number,
    cols: number,
    p: number,
    seed: number,
  ): boolean;

  // ---- optimizer ----------------------------------------------------------------------------
  adam(args: AdamArgs): void;

  /** Wait until queued work is done (no-op for synchronous backends). */
  sync(): void;
}

/** Registry entry: higher priority wins when no backend is named. */
export interface BackendFactory {
  name: string;
  priority: number;
  /** Returns a ready backend, or a reason it cannot run on this machine. */
  create(): Promise<Backend | { unavailable: string }>;
}

/** The first `size` elements of `into`, checked to be of `dtype` and long enough (download). */
export function checkedInto(
  into: Float32Array | Int32Array,
  dtype: DType,
  size: number,
): Float32Array | Int32Array {
  if ((dtype === "i32") !== (into instanceof Int32Array) || into.length < size) {
    throw new RangeError(
      `download: a ${into.constructor.name} of ${into.length} cannot take ${size} ${dtype} values`,
    );
  }
  return into.subarray(0, size);
}

/** What Backend.argmaxRows computes: the js backend runs it, and op.argmaxRows on downloaded rows. */
export function argmaxRowsOf(
  x: ArrayLike<number>,
  out: { [i: number]: number },
  rows: number,
  cols: number,
): void {
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let bestV = x[r * cols];
    for (let c = 1; c < cols; c++) {
      const v = x[r * cols + c];
      if (v > bestV || (bestV !== bestV && v === v)) [best, bestV] = [c, v];
    }
    out[r] = best;
  }
}
