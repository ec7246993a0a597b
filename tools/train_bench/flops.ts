/**
 * Analytic FLOPs of one training step, for the "FLOP floor" of tools/bench_train.ts: the GEMM work
 * of the forward pass (2 FLOPs per multiply-add) times 3 for forward + backward (each GEMM's
 * backward is two GEMMs of the same size). Elementwise ops, softmax, LayerNorm and the optimizer
 * are left out: they are memory-bound and small next to the products. Sequences count at their
 * padded length, which is what the kernels compute (a 2048-row batch almost always holds a
 * history of the full max length).
 */

export interface EncoderShape {
  /** Rows (sequences) and padded length. */
  batch: number;
  len: number;
  hidden: number;
  inner: number;
  layers: number;
}

/** Forward GEMM FLOPs of the transformer encoder (RecBole SASRec layout). */
export function encoderForwardFlops(s: EncoderShape): number {
  const rows = s.batch * s.len;
  const projections = 4 * 2 * rows * s.hidden * s.hidden; // Q, K, V and the output dense
  const attention = 2 * 2 * s.batch * s.len * s.len * s.hidden; // QK^T and AV over all heads
  const ffn = 2 * 2 * rows * s.hidden * s.inner;
  return s.layers * (projections + attention + ffn);
}

/** Forward FLOPs of the CE logits over all items (padding row included): [B, d] @ [d, N]. */
export function logitsForwardFlops(batch: number, hidden: number, items: number): number {
  return 2 * batch * hidden * items;
}

export interface SasrecShape extends EncoderShape {
  /** Item rows scored by the CE loss (numItems + 1). */
  items: number;
}

/** One SASRec CE training step. */
export function sasrecStepFlops(s: SasrecShape): number {
  return 3 * (encoderForwardFlops(s) + logitsForwardFlops(s.batch, s.hidden, s.items));
}

export interface DuafShape extends SasrecShape {
  /** Frozen feature widths of the modalities in use (0 = absent). */
  textDim: number;
  imageDim: number;
  timeDim: number;
  /** Modalities fused (ID included). */
  modalities: number;
  /** Extra encoder passes over virtual sequences (one per VSCL modality) and their rows. */
  vsclPasses: number;
  vsclRows: number;
  /** MAT-MoE generator over every item (0 when off): experts, noise and hidden widths. */
  experts: number;
  noiseDim: number;
  expertHidden: number;
}

/**
 * One DuAF-MAT step: the SASRec work, plus the projections of every item's frozen features, the
 * time embedding, the fusion query (a causal prefix mean, one [L, L] product), the VSCL encoder
 * passes and, with images, the MAT-MoE generators over every item.
 */
export function duafStepFlops(s: DuafShape): number {
  const rows = s.batch * s.len;
  const vsclEncoder = s.vsclPasses *
    encoderForwardFlops({ ...s, batch: Math.min(s.vsclRows, s.batch) });
  const passRows = rows + s.vsclPasses * Math.min(s.vsclRows, s.batch) * s.len;
  const tables = 2 * s.items * (s.textDim + s.imageDim) * s.hidden;
  const time = s.modalities > 1 ? 2 * passRows * 2 * s.timeDim * s.hidden : 0;
  const query = s.modalities > 1 ? 2 * s.batch * s.hidden * s.len * s.len : 0;
  const generator = s.experts * 2 * s.items *
    ((s.hidden + s.noiseDim) * s.expertHidden + s.expertHidden * s.hidden);
  return 3 * (encoderForwardFlops(s) + vsclEncoder + logitsForwardFlops(s.batch, s.hidden, s.items) +
    tables + time + query + generator);
}
