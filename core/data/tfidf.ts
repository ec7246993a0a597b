/**
 * The built-in offline text featurizer: TF-IDF over item texts (title, categories, brand) reduced
 * by truncated SVD to `dim` columns and L2-normalised (LSA). It needs no download, so every
 * dataset has a text modality even when no encoder or precomputed features are supplied.
 *
 * Weights follow scikit-learn's TfidfVectorizer(sublinear_tf=True, smooth_idf=True):
 * tf = 1 + ln(count), idf = ln((1 + n) / (1 + df)) + 1, rows L2-normalised; tokens are
 * lowercase runs of two or more letters/digits; terms in fewer than `minDf` documents are dropped.
 */
import { Rng } from "../random.ts";
import type { Progress } from "../progress.ts";
import { type Csr, randomizedSvd } from "./svd.ts";

const TOKEN = /[\p{L}\p{N}]{2,}/gu;

export function tokenize(text: string): string[] {
  return text.toLowerCase().match(TOKEN) ?? [];
}

export interface TfidfOptions {
  dim: number;
  seed: number;
  /** Minimum document frequency of a term (default 2: a term seen once cannot relate items). */
  minDf?: number;
}

export interface TextFeatures {
  dim: number;
  /** Row-major (texts.length) x dim. */
  data: Float32Array;
  /** 1 where the text had at least one vocabulary term. */
  mask: Uint8Array;
  vocabularySize: number;
}

/** Sparse TF-IDF matrix of `texts` (null = no text). */
export function tfidfMatrix(texts: readonly (string | null)[], minDf = 2): {
  matrix: Csr;
  vocabulary: string[];
} {
  const docs = texts.map((t) => (t ? tokenize(t) : []));
  const df = new Map<string, number>();
  for (const tokens of docs) for (const t of new Set(tokens)) df.set(t, (df.get(t) ?? 0) + 1);
  const vocabulary = [...df].filter(([, c]) => c >= minDf).map(([t]) => t).sort();
  const column = new Map(vocabulary.map((t, i) => [t, i]));
  const idf = new Float64Array(vocabulary.length);
  const n = docs.length;
  vocabulary.forEach((t, i) => idf[i] = Math.log((1 + n) / (1 + df.get(t)!)) + 1);

  const ptr = new Int32Array(n + 1);
  const idx: number[] = [];
  const vals: number[] = [];
  for (let r = 0; r < n; r++) {
    const counts = new Map<number, number>();
    for (const t of docs[r]) {
      const c = column.get(t);
      if (c !== undefined) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    const cols = [...counts.keys()].sort((a, b) => a - b);
    let norm = 0;
    const row = cols.map((c) => {
      const w = (1 + Math.log(counts.get(c)!)) * idf[c];
      norm += w * w;
      return w;
    });
    norm = Math.sqrt(norm);
    cols.forEach((c, j) => {
      idx.push(c);
      vals.push(row[j] / norm);
    });
    ptr[r + 1] = idx.length;
  }
  return {
    matrix: {
      rows: n,
      cols: vocabulary.length,
      ptr,
      idx: Int32Array.from(idx),
      vals: Float64Array.from(vals),
    },
    vocabulary,
  };
}

/** TF-IDF + truncated SVD text features, one L2-normalised row per text (zero when missing). */
export function tfidfSvdFeatures(
  texts: readonly (string | null)[],
  opts: TfidfOptions,
  progress?: Progress,
): TextFeatures {
  const { matrix, vocabulary } = tfidfMatrix(texts, opts.minDf ?? 2);
  const steps = 7;
  const task = progress?.start("text features (tf-idf + svd)", steps, "steps");
  const { embedding } = randomizedSvd(matrix, opts.dim, new Rng(opts.seed), {
    powerIterations: steps - 2,
    onStep: () => task?.tick(),
  });
  const data = new Float32Array(texts.length * opts.dim);
  const mask = new Uint8Array(texts.length);
  for (let r = 0; r < texts.length; r++) {
    if (matrix.ptr[r + 1] === matrix.ptr[r]) continue;
    let norm = 0;
    for (let c = 0; c < opts.dim; c++) norm += embedding[r * opts.dim + c] ** 2;
    norm = Math.sqrt(norm);
    // A document whose terms all fall outside the top components has no usable direction.
    if (!(norm > 1e-12)) continue;
    mask[r] = 1;
    for (let c = 0; c < opts.dim; c++) data[r * opts.dim + c] = embedding[r * opts.dim + c] / norm;
  }
  task?.done(`${vocabulary.length} terms`);
  return { dim: opts.dim, data, mask, vocabularySize: vocabulary.length };
}
