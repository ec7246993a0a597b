/**
 * Analytic FLOPs of a training epoch, for the "FLOP floor" of `duaf bench` and
 * tools/bench_train.ts: the GEMM work of the forward pass (2 FLOPs per multiply-add) times 3 for
 * forward + backward (each GEMM's backward is two GEMMs of the same size). Elementwise ops,
 * softmax, LayerNorm and the optimizer are left out: they are memory-bound and small next to the
 * products.
 *
 * Work is counted per training example at its real history length (at most the max length):
 * that is the useful work, the floor no implementation can go under. Padding every example to
 * the max length, as RecBole does, is `paddedLengths`. Prefix training reads each example's last
 * step (one target); window training reads every step (a target at each).
 */
import type { TrainConfig } from "../config.ts";
import type { Dataset } from "../data/dataset.ts";
import { splitExamples, windowExamples } from "../models/examples.ts";

/** History lengths of an epoch's examples: count, sum and sum of squares. */
export interface Lengths {
  count: number;
  sum: number;
  sumSq: number;
}

export function lengthStats(lengths: Iterable<number>): Lengths {
  const s = { count: 0, sum: 0, sumSq: 0 };
  for (const l of lengths) {
    s.count++;
    s.sum += l;
    s.sumSq += l * l;
  }
  return s;
}

/** The same examples, each padded to `len`. */
export function paddedLengths(l: Lengths, len: number): Lengths {
  return { count: l.count, sum: l.count * len, sumSq: l.count * len * len };
}

/** Scales every example's work by `f` (a share of the rows). */
function share(l: Lengths, f: number): Lengths {
  return { count: l.count * f, sum: l.sum * f, sumSq: l.sumSq * f };
}

export interface EncoderShape {
  hidden: number;
  inner: number;
  layers: number;
}

/**
 * Forward GEMM FLOPs of the transformer encoder (RecBole SASRec layout) over all examples. Read
 * at the last step only (`every` false: the prefix-training loss, scoring), the layers below the
 * last run at every step, and the last needs its keys and values at every step and its query,
 * attention, output dense and feed-forward at that one step (TransformerEncoder.forwardAt). Read
 * at every step (window training), every layer runs at every step.
 */
export function encoderForwardFlops(l: Lengths, s: EncoderShape, every = false): number {
  const d = s.hidden;
  const projections = 4 * 2 * l.sum * d * d; // Q, K, V and the output dense
  const attention = 2 * 2 * l.sumSq * d; // QK^T and AV, all heads together
  const ffn = 2 * 2 * l.sum * d * s.inner;
  const full = projections + attention + ffn;
  if (every) return s.layers * full;
  const lastLayer = 2 * 2 * l.sum * d * d + // K and V at every step
    2 * 2 * l.count * d * d + // Q and the output dense at the last step
    2 * 2 * l.sum * d + // one query's QK^T and AV
    2 * 2 * l.count * d * s.inner;
  return (s.layers - 1) * full + lastLayer;
}

export interface SasrecShape extends EncoderShape {
  /** Item rows scored by the CE loss (numItems + 1: RecBole keeps the padding row). */
  items: number;
}

/**
 * One SASRec epoch with CE over all items: the logits of each example's last step, or with
 * `every` (window training) of every step.
 */
export function sasrecEpochFlops(l: Lengths, s: SasrecShape, every = false): number {
  const targets = every ? l.sum : l.count;
  return 3 * (encoderForwardFlops(l, s, every) + 2 * targets * s.hidden * s.items);
}

export interface DuafShape extends SasrecShape {
  /** Optimizer steps in the epoch and rows per step. */
  steps: number;
  batch: number;
  /** Frozen feature widths of the modalities in use (0 = absent). */
  textDim: number;
  imageDim: number;
  timeDim: number;
  /** Modalities fused (ID included). */
  modalities: number;
  /** Extra encoder passes over virtual sequences (one per VSCL modality) and their rows a step. */
  vsclPasses: number;
  vsclRows: number;
  /** MAT-MoE generator over every item (experts 0 when off). */
  experts: number;
  noiseDim: number;
  expertHidden: number;
}

/**
 * One DuAF-MAT epoch: the SASRec work (`every`: window training), the VSCL encoder passes (their
 * first `vsclRows` rows of each batch, read at the last step; inserted items not counted), and per step the projections of every item's frozen
 * features, the time embedding, the fusion query (a causal prefix mean, one [L, L] product per
 * sequence) and, with images, the MAT-MoE generators over every item.
 */
export function duafEpochFlops(l: Lengths, s: DuafShape, every = false): number {
  const d = s.hidden;
  const virtual = share(l, s.vsclPasses * Math.min(1, s.vsclRows / s.batch));
  // VSCL's views read s_u alone in both modes.
  const encoder = encoderForwardFlops(l, s, every) + encoderForwardFlops(virtual, s);
  const fused = s.modalities > 1;
  const time = fused ? 2 * (l.sum + virtual.sum) * 2 * s.timeDim * d : 0;
  const query = fused ? 2 * l.sumSq * d : 0;
  const tables = 2 * s.items * (s.textDim + s.imageDim) * d;
  const generator = s.experts * 2 * s.items *
    ((d + s.noiseDim) * s.expertHidden + s.expertHidden * d);
  const logits = 2 * (every ? l.sum : l.count) * d * s.items;
  return 3 * (encoder + time + query + logits + s.steps * (tables + generator));
}

/**
 * Forward-only FLOPs of a full-ranking evaluation: each test user's history through the model once
 * and its scores against every item; DuAF-MAT's item tables and generators once, no VSCL.
 */
export function evalFlops(l: Lengths, s: DuafShape | SasrecShape): number {
  if ("steps" in s) return duafEpochFlops(l, { ...s, steps: 1, vsclPasses: 0 }) / 3;
  return sasrecEpochFlops(l, s) / 3;
}

/** An epoch's and a full evaluation's FLOPs for one configuration on one dataset. */
export interface ConfigFlops {
  epoch: number;
  /** Forward FLOPs of ranking every test user's history against every item. */
  eval: number;
}

/**
 * The FLOPs of `cfg`'s epoch on `ds` (its train mode, d, inner size, layers, max length, batch
 * and, for DuAF-MAT, the modalities, VSCL and MAT-MoE it uses), for the models whose work this
 * module counts: SASRec and DuAF-MAT. Null for any other model.
 */
export function configFlops(ds: Dataset, cfg: TrainConfig): ConfigFlops | null {
  if (cfg.model !== "sasrec" && cfg.model !== "duafmat") return null;
  const window = cfg.trainMode === "window";
  const lengthsOf = (positions: Int32Array) =>
    lengthStats(Array.from(positions, (p) => Math.min(p, cfg.maxLen)));
  const train = lengthsOf((window ? windowExamples(ds) : splitExamples(ds, "train")).positions);
  const test = lengthsOf(splitExamples(ds, "test").positions);
  const shape = {
    hidden: cfg.hidden,
    inner: cfg.inner,
    layers: cfg.layers,
    items: ds.numItems + 1,
  };
  if (cfg.model === "sasrec") {
    return { epoch: sasrecEpochFlops(train, shape, window), eval: evalFlops(test, shape) };
  }
  const dc = cfg.duafmat;
  const text = dc.modalities.includes("text") && ds.text ? ds.text.dim : 0;
  const image = dc.modalities.includes("image") && ds.image ? ds.image.dim : 0;
  const duaf = (l: Lengths): DuafShape => ({
    ...shape,
    steps: Math.ceil(l.count / cfg.batchSize),
    batch: cfg.batchSize,
    textDim: text,
    imageDim: image,
    timeDim: dc.timeDim,
    modalities: 1 + (text ? 1 : 0) + (image ? 1 : 0),
    vsclPasses: dc.vscl ? (text ? 1 : 0) + (image ? 1 : 0) : 0,
    vsclRows: dc.vsclRows,
    experts: image && dc.matMoe ? dc.experts : 0,
    noiseDim: dc.noiseDim,
    expertHidden: dc.expertHidden,
  });
  return { epoch: duafEpochFlops(train, duaf(train), window), eval: evalFlops(test, duaf(test)) };
}
