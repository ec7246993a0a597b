/**
 * The reference backend: plain TypeScript loops, written to be obviously right rather than fast.
 * With `float64: true` it stores and computes in float64, which the gradient checks use as their
 * exact-enough ground truth. Other backends are tested for parity against this one.
 */
import { ResourceError } from "../errors.ts";
import {
  type AdamArgs,
  argmaxRowsOf,
  type Backend,
  type BinaryOp,
  checkedInto,
  type DType,
  type FusionArgs,
  type FusionGradArgs,
  type GemmArgs,
  gemmBatch2,
  gemmLd,
  gemmSpans,
  type Storage,
  type UnaryOp,
} from "../backend.ts";
import { hashUniform } from "../random.ts";
import { unaryDerivative, unaryForward } from "./scalar_math.ts";

type FloatArray = Float32Array | Float64Array;

class JsStorage implements Storage {
  constructor(
    readonly size: number,
    readonly dtype: DType,
    readonly data: FloatArray | Int32Array,
  ) {}
}

function f(s: Storage): FloatArray {
  return (s as JsStorage).data as FloatArray;
}
function ix(s: Storage): Int32Array {
  return (s as JsStorage).data as Int32Array;
}

/** log Σ_c e^X[o + c] over one row of `cols` values, shifted by the row's max. */
/**
 * log sum_c e^X[o + c]. With `keep`, the row is left as e^(X - max) and keep[r] = max (the kept
 * exponentials of crossEntropyBlock).
 */
function rowLogSumExp(
  X: FloatArray,
  o: number,
  cols: number,
  keep: FloatArray | null = null,
  r = 0,
): number {
  let max = -Infinity;
  for (let c = 0; c < cols; c++) max = Math.max(max, X[o + c]);
  let sum = 0;
  for (let c = 0; c < cols; c++) {
    const e = Math.exp(X[o + c] - max);
    if (keep) X[o + c] = e;
    sum += e;
  }
  if (keep) keep[r] = max;
  return max + Math.log(sum);
}

/** Visits every multi-index of `shape` in row-major order, yielding the two strided offsets. */
function forEachStrided(
  shape: readonly number[],
  sa: readonly number[],
  sb: readonly number[],
  visit: (flat: number, offA: number, offB: number) => void,
): void {
  const rank = shape.length;
  const total = shape.reduce((p, d) => p * d, 1);
  const idx = new Array<number>(rank).fill(0);
  let offA = 0;
  let offB = 0;
  for (let flat = 0; flat < total; flat++) {
    visit(flat, offA, offB);
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      offA += sa[d];
      offB += sb[d];
      if (idx[d] < shape[d]) break;
      offA -= sa[d] * shape[d];
      offB -= sb[d] * shape[d];
      idx[d] = 0;
    }
  }
}

export class JsBackend implements Backend {
  readonly name: string;
  readonly keepsCrossEntropyExp = true;
  readonly hostMemory = true;
  readonly #Float: typeof Float32Array | typeof Float64Array;

  constructor(opts: { float64?: boolean } = {}) {
    this.#Float = opts.float64 ? Float64Array : Float32Array;
    this.name = opts.float64 ? "js64" : "js";
  }

  /** Typed arrays live in host memory: what the OS reports as available. */
  memoryLimit(): { bytes: number; what: string } | null {
    try {
      return { bytes: Deno.systemMemoryInfo().available, what: "host memory (available)" };
    } catch {
      return null;
    }
  }

  alloc(size: number, dtype: DType): Storage {
    const Ctor = dtype === "i32" ? Int32Array : this.#Float;
    let data: Int32Array | FloatArray;
    try {
      data = new Ctor(size);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      throw new ResourceError(
        "host memory",
        size * Ctor.BYTES_PER_ELEMENT,
        null,
        "use smaller batches (tokenBudget, batchSize, evalBatchSize)",
      );
    }
    return new JsStorage(size, dtype, data);
  }

  upload(data: Float32Array | Int32Array, dtype: DType): Storage {
    const s = this.alloc(data.length, dtype) as JsStorage;
    s.data.set(data);
    return s;
  }

  download(
    s: Storage,
    offset = 0,
    size = s.size - offset,
    into?: Float32Array | Int32Array,
  ): Float32Array | Int32Array {
    const data = (s as JsStorage).data;
    if (into) {
      const out = checkedInto(into, s.dtype, size);
      out.set(data.subarray(offset, offset + size));
      return out;
    }
    if (s.dtype === "i32") return (data as Int32Array).slice(offset, offset + size);
    return Float32Array.from(data.subarray(offset, offset + size));
  }

  /** float64 contents, for gradient checks on the float64 backend. */
  downloadF64(s: Storage): Float64Array {
    return Float64Array.from((s as JsStorage).data);
  }

  free(_s: Storage): void {}

  fill(s: Storage, value: number, offset = 0, size = s.size - offset): void {
    (s as JsStorage).data.fill(value, offset, offset + size);
  }

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
  ): void {
    const s = (src as JsStorage).data;
    const d = (dst as JsStorage).data;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = s[srcOffset + r * srcStride + c];
        const o = dstOffset + r * dstStride + c;
        d[o] = accumulate ? d[o] + v : v;
      }
    }
  }

  gemm(g: GemmArgs): void {
    const A = f(g.a);
    const B = f(g.b);
    const C = f(g.c);
    const { m, n, k } = g;
    const { lda, ldb, ldc } = gemmLd(g);
    gemmSpans(g); // checks the row strides
    const inner = gemmBatch2(g);
    const acc = new Float64Array(n);
    for (let item = 0; item < g.batch * inner.n; item++) {
      const bi = Math.floor(item / inner.n), bj = item % inner.n;
      const a0 = g.aOffset + bi * g.strideA + bj * inner.a;
      const b0 = g.bOffset + bi * g.strideB + bj * inner.b;
      const c0 = g.cOffset + bi * g.strideC + bj * inner.c;
      for (let i = 0; i < m; i++) {
        acc.fill(0);
        for (let p = 0; p < k; p++) {
          const av = g.transA ? A[a0 + p * lda + i] : A[a0 + i * lda + p];
          if (g.transB) { for (let j = 0; j < n; j++) acc[j] += av * B[b0 + j * ldb + p]; }
          else for (let j = 0; j < n; j++) acc[j] += av * B[b0 + p * ldb + j];
        }
        const row = c0 + i * ldc;
        for (let j = 0; j < n; j++) {
          C[row + j] = g.alpha * acc[j] + (g.beta === 1 ? C[row + j] : 0);
        }
      }
    }
  }

  unary(op: UnaryOp, x: Storage, out: Storage, n: number, alpha: number): void {
    const X = f(x);
    const O = f(out);
    for (let i = 0; i < n; i++) O[i] = unaryForward(op, X[i], alpha);
  }

  unaryGrad(
    op: UnaryOp,
    x: Storage,
    y: Storage,
    g: Storage,
    out: Storage,
    n: number,
    alpha: number,
  ): void {
    const X = f(x);
    const Y = f(y);
    const G = f(g);
    const O = f(out);
    for (let i = 0; i < n; i++) O[i] = G[i] * unaryDerivative(op, X[i], Y[i], alpha);
  }

  binary(
    op: BinaryOp,
    a: Storage,
    aStrides: readonly number[],
    b: Storage,
    bStrides: readonly number[],
    out: Storage,
    shape: readonly number[],
  ): void {
    const A = f(a);
    const B = f(b);
    const O = f(out);
    forEachStrided(shape, aStrides, bStrides, (i, oa, ob) => {
      const x = A[oa];
      const y = B[ob];
      O[i] = op === "add" ? x + y : op === "sub" ? x - y : op === "mul" ? x * y : x / y;
    });
  }

  reduceSum(
    x: Storage,
    shape: readonly number[],
    out: Storage,
    outStrides: readonly number[],
    outSize: number,
    accumulate: boolean,
  ): void {
    const X = f(x);
    const O = f(out);
    // Accumulate in float64 so the reference does not depend on summation order.
    const acc = new Float64Array(outSize);
    const zero = shape.map(() => 0);
    forEachStrided(shape, outStrides, zero, (i, oo) => {
      acc[oo] += X[i];
    });
    for (let i = 0; i < outSize; i++) O[i] = accumulate ? O[i] + acc[i] : acc[i];
  }

  axpy(x: Storage, out: Storage, n: number, alpha: number): void {
    const X = f(x);
    const O = f(out);
    for (let i = 0; i < n; i++) O[i] += alpha * X[i];
  }

  sumSquares(x: Storage, n: number): number {
    const X = f(x);
    let s = 0;
    for (let i = 0; i < n; i++) s += X[i] * X[i];
    return s;
  }

  permute(x: Storage, shape: readonly number[], perm: readonly number[], out: Storage): void {
    const X = (x as JsStorage).data;
    const O = (out as JsStorage).data;
    const rank = shape.length;
    const inStrides = new Array<number>(rank);
    let s = 1;
    for (let d = rank - 1; d >= 0; d--) {
      inStrides[d] = s;
      s *= shape[d];
    }
    const outShape = perm.map((p) => shape[p]);
    const srcStrides = perm.map((p) => inStrides[p]);
    forEachStrided(outShape, srcStrides, outShape.map(() => 0), (i, src) => {
      O[i] = X[src];
    });
  }

  softmax(x: Storage, out: Storage, rows: number, cols: number, log: boolean): void {
    const X = f(x);
    const O = f(out);
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      const lse = rowLogSumExp(X, o, cols);
      for (let c = 0; c < cols; c++) {
        O[o + c] = log ? X[o + c] - lse : Math.exp(X[o + c] - lse);
      }
    }
  }

  softmaxGrad(
    y: Storage,
    g: Storage,
    out: Storage,
    rows: number,
    cols: number,
    log: boolean,
    scale = 1,
  ): void {
    const Y = f(y);
    const G = f(g);
    const O = f(out);
    // The unscaled value is rounded to the storage's precision first, as in two passes.
    const round = O instanceof Float32Array ? Math.fround : (v: number) => v;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let dot = 0;
      // softmax: dx = y * (g - Σ g*y); log-softmax: dx = g - exp(y) * Σ g.
      for (let c = 0; c < cols; c++) dot += log ? G[o + c] : G[o + c] * Y[o + c];
      for (let c = 0; c < cols; c++) {
        const d = log ? G[o + c] - Math.exp(Y[o + c]) * dot : Y[o + c] * (G[o + c] - dot);
        O[o + c] = scale === 1 ? d : round(d) * scale;
      }
    }
  }

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
  ): void {
    const X = f(x);
    const M = mask ? f(mask) : null;
    const O = f(out);
    // The logits as the scale and add passes store them, then the softmax of out in place.
    const round = O instanceof Float32Array ? Math.fround : (v: number) => v;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      const k = r % q, j = Math.floor(r / q) % heads, i = Math.floor(r / (q * heads));
      const mo = (i * maskRows[0] + j * maskRows[1] + k * maskRows[2]) * cols;
      for (let c = 0; c < cols; c++) {
        const z = round(X[o + c] * scale);
        O[o + c] = M ? z + M[mo + c] : z;
      }
    }
    this.softmax(out, out, rows, cols, false);
  }

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
  ): void {
    const X = f(x);
    const Gm = f(gamma);
    const Bt = f(beta);
    const O = f(out);
    const M = f(mean);
    const R = f(rstd);
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let mu = 0;
      for (let c = 0; c < cols; c++) mu += X[o + c];
      mu /= cols;
      let v = 0;
      for (let c = 0; c < cols; c++) v += (X[o + c] - mu) ** 2;
      v /= cols;
      const rs = 1 / Math.sqrt(v + eps);
      M[r] = mu;
      R[r] = rs;
      for (let c = 0; c < cols; c++) O[o + c] = (X[o + c] - mu) * rs * Gm[c] + Bt[c];
    }
  }

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
  ): void {
    const X = f(x);
    const Gm = f(gamma);
    const M = f(mean);
    const R = f(rstd);
    const G = f(g);
    const DX = f(dx);
    const DG = f(dgamma);
    const DB = f(dbeta);
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      const mu = M[r];
      const rs = R[r];
      // With xhat = (x-mu)*rs and gh = g*gamma: dx = rs * (gh - mean(gh) - xhat * mean(gh*xhat)).
      let sumG = 0;
      let sumGX = 0;
      for (let c = 0; c < cols; c++) {
        const xh = (X[o + c] - mu) * rs;
        const gh = G[o + c] * Gm[c];
        sumG += gh;
        sumGX += gh * xh;
        DG[c] += G[o + c] * xh;
        DB[c] += G[o + c];
      }
      for (let c = 0; c < cols; c++) {
        const xh = (X[o + c] - mu) * rs;
        const gh = G[o + c] * Gm[c];
        DX[o + c] = rs * (gh - sumG / cols - xh * sumGX / cols);
      }
    }
  }

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
  ): void {
    const X = f(x);
    const T = ix(targets);
    const L = f(lse);
    const P = f(picked);
    const S = shift ? f(shift) : null;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      const t = T[r] - colOffset;
      if (t >= 0 && t < cols) P[r] = X[o + t];
      else if (first) P[r] = 0;
      const block = rowLogSumExp(X, o, cols, S, r);
      if (first) L[r] = block;
      else {
        const hi = Math.max(L[r], block);
        L[r] = hi + Math.log(Math.exp(L[r] - hi) + Math.exp(block - hi));
      }
    }
  }

  crossEntropyBlockGrad(
    x: Storage,
    targets: Storage,
    lse: Storage,
    w: Storage,
    rows: number,
    cols: number,
    colOffset: number,
    shift?: Storage,
  ): void {
    const X = f(x);
    const T = ix(targets);
    const L = f(lse);
    const W = f(w);
    const S = shift ? f(shift) : null;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      const t = T[r] - colOffset;
      const scale = S ? Math.exp(S[r] - L[r]) : 0;
      for (let c = 0; c < cols; c++) {
        const p = S ? X[o + c] * scale : Math.exp(X[o + c] - L[r]);
        X[o + c] = W[r] * (p - (c === t ? 1 : 0));
      }
    }
  }

  gather(table: Storage, idx: Storage, out: Storage, n: number, dim: number): void {
    const T = f(table);
    const I = ix(idx);
    const O = f(out);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < dim; c++) O[i * dim + c] = T[I[i] * dim + c];
    }
  }

  scatterAdd(g: Storage, idx: Storage, out: Storage, n: number, dim: number): void {
    const G = f(g);
    const I = ix(idx);
    const O = f(out);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < dim; c++) O[I[i] * dim + c] += G[i * dim + c];
    }
  }

  pick(x: Storage, idx: Storage, out: Storage, rows: number, cols: number): void {
    const X = f(x);
    const I = ix(idx);
    const O = f(out);
    for (let r = 0; r < rows; r++) O[r] = X[r * cols + I[r]];
  }

  argmaxRows(x: Storage, out: Storage, rows: number, cols: number): void {
    argmaxRowsOf(f(x), ix(out), rows, cols);
  }

  rankRows(
    x: Storage,
    targets: Storage,
    exOffsets: Storage,
    exCols: Storage,
    out: Storage,
    rows: number,
    cols: number,
  ): void {
    const X = f(x);
    const T = ix(targets);
    const O = ix(exOffsets);
    const C = ix(exCols);
    const R = ix(out);
    for (let r = 0; r < rows; r++) {
      const t = T[r];
      if (!(t >= 0 && t < cols)) {
        throw new RangeError(`js rankRows: target ${t} outside [0, ${cols})`);
      }
      const s = X[r * cols + t];
      let n = -1; // the target itself
      for (let c = 0; c < cols; c++) n += +(X[r * cols + c] >= s);
      for (let e = O[r]; e < O[r + 1]; e++) {
        const c = C[e];
        if (!(c >= 0 && c < cols)) {
          throw new RangeError(`js rankRows: column ${c} outside [0, ${cols})`);
        }
        if (c !== t && X[r * cols + c] >= s) n--;
      }
      R[r] = n;
    }
  }

  pickGrad(g: Storage, idx: Storage, out: Storage, rows: number, cols: number): void {
    const G = f(g);
    const I = ix(idx);
    const O = f(out);
    for (let r = 0; r < rows; r++) O[r * cols + I[r]] += G[r];
  }

  modalityFusion(a: FusionArgs): void {
    const { e, t, q, h, omega, keys, rows, dim, scale } = a;
    const E = e.map(f), T = f(t), Q = f(q), H = f(h), W = f(omega), K = f(keys);
    const m = E.length;
    const s = new Float64Array(m);
    for (let r = 0; r < rows; r++) {
      const o = r * dim;
      let max = -Infinity;
      for (let j = 0; j < m; j++) {
        const ko = (r * m + j) * dim;
        let dot = 0;
        for (let c = 0; c < dim; c++) {
          K[ko + c] = Math.tanh(E[j][o + c] + T[o + c]);
          dot += K[ko + c] * Q[o + c];
        }
        s[j] = scale * dot;
        max = Math.max(max, s[j]);
      }
      let sum = 0;
      for (let j = 0; j < m; j++) sum += s[j] = Math.exp(s[j] - max);
      for (let j = 0; j < m; j++) W[r * m + j] = s[j] / sum;
      for (let c = 0; c < dim; c++) {
        let acc = 0;
        for (let j = 0; j < m; j++) acc += W[r * m + j] * E[j][o + c];
        H[o + c] = acc;
      }
    }
  }

  modalityFusionGrad(a: FusionGradArgs): void {
    const { e, q, omega, keys, gh, gomega, ge, gt, gq, rows, dim, scale } = a;
    const E = e.map(f), Q = f(q), W = f(omega), K = f(keys), G = f(gh), GE = ge.map(f);
    const GT = f(gt), GQ = f(gq), GW = gomega ? f(gomega) : null;
    const m = E.length;
    const gs = new Float64Array(m);
    for (let r = 0; r < rows; r++) {
      const o = r * dim;
      // dL/dω_m = <gh, e_m>; through the softmax, dL/ds_m = ω_m (dL/dω_m - Σ_j ω_j dL/dω_j).
      let mean = 0;
      for (let j = 0; j < m; j++) {
        let dot = 0;
        for (let c = 0; c < dim; c++) dot += G[o + c] * E[j][o + c];
        if (GW) dot += GW[r * m + j];
        gs[j] = dot;
        mean += W[r * m + j] * dot;
      }
      for (let j = 0; j < m; j++) gs[j] = scale * W[r * m + j] * (gs[j] - mean);
      for (let c = 0; c < dim; c++) {
        let t = 0, qg = 0;
        for (let j = 0; j < m; j++) {
          const k = K[(r * m + j) * dim + c];
          const u = gs[j] * (1 - k * k) * Q[o + c];
          GE[j][o + c] = W[r * m + j] * G[o + c] + u;
          t += u;
          qg += gs[j] * k;
        }
        GT[o + c] = t;
        GQ[o + c] = qg;
      }
    }
  }

  dropout(x: Storage, out: Storage, n: number, p: number, seed: number): void {
    const X = f(x);
    const O = f(out);
    const keep = Math.fround(1 / (1 - p));
    for (let i = 0; i < n; i++) O[i] = X[i] * (hashUniform(seed, i) >= p ? keep : 0);
  }

  adam(a: AdamArgs): void {
    const P = f(a.p);
    const G = f(a.g);
    const M = f(a.m);
    const V = f(a.v);
    for (let i = 0; i < a.n; i++) {
      let g = G[i];
      if (!a.decoupled && a.weightDecay !== 0) g += a.weightDecay * P[i];
      M[i] = a.beta1 * M[i] + (1 - a.beta1) * g;
      V[i] = a.beta2 * V[i] + (1 - a.beta2) * g * g;
      const mhat = M[i] / a.biasCorrection1;
      const vhat = V[i] / a.biasCorrection2;
      if (a.decoupled && a.weightDecay !== 0) P[i] -= a.lr * a.weightDecay * P[i];
      P[i] -= a.lr * mhat / (Math.sqrt(vhat) + a.eps);
    }
  }

  sync(): void {}
}
