import assert from "node:assert/strict";
import { tfidfMatrix, tfidfSvdFeatures, tokenize } from "../core/data/tfidf.ts";
import { type Csr, randomizedSvd, symmetricEigen } from "../core/data/svd.ts";
import { Rng } from "../core/random.ts";

Deno.test("tfidf: tokenizer lowercases letter/digit runs of length >= 2", () => {
  assert.deepEqual(tokenize("L'Oréal Paris 3.4oz, Eau-de-Toilette x 2"), [
    "oréal",
    "paris",
    "4oz",
    "eau",
    "de",
    "toilette",
  ]);
});

Deno.test("tfidf: weights follow sublinear tf and smoothed idf, rows unit length", () => {
  const { matrix, vocabulary } = tfidfMatrix(["red red shoe", "red hat", "blue hat", null], 1);
  assert.deepEqual(vocabulary, ["blue", "hat", "red", "shoe"]);
  const n = 4;
  const idf = (df: number) => Math.log((1 + n) / (1 + df)) + 1;
  // Row 0: red (tf 2 -> 1 + ln 2, df 2), shoe (tf 1, df 1).
  const red = (1 + Math.log(2)) * idf(2), shoe = idf(1);
  const norm = Math.hypot(red, shoe);
  assert.deepEqual([...matrix.idx.subarray(0, 2)], [2, 3]);
  assert.ok(Math.abs(matrix.vals[0] - red / norm) < 1e-12);
  assert.ok(Math.abs(matrix.vals[1] - shoe / norm) < 1e-12);
  assert.equal(matrix.ptr[4] - matrix.ptr[3], 0, "missing text has an empty row");
  // min df 2 drops terms seen in a single document.
  assert.deepEqual(tfidfMatrix(["red red shoe", "red hat", "blue hat"], 2).vocabulary, [
    "hat",
    "red",
  ]);
});

function randomSparse(rng: Rng, rows: number, cols: number, density: number): Csr {
  const ptr = new Int32Array(rows + 1);
  const idx: number[] = [], vals: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      if (rng.uniform() < density) {
        idx.push(c);
        vals.push(rng.normal());
      }
    }
    ptr[r + 1] = idx.length;
  }
  return { rows, cols, ptr, idx: Int32Array.from(idx), vals: Float64Array.from(vals) };
}

Deno.test("svd: Jacobi eigen-decomposition reconstructs a symmetric matrix", () => {
  const rng = new Rng(3);
  const n = 7;
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) m[i * n + j] = m[j * n + i] = rng.normal();
  }
  const { values, vectors } = symmetricEigen(m, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += vectors[i * n + k] * values[k] * vectors[j * n + k];
      assert.ok(Math.abs(s - m[i * n + j]) < 1e-9);
    }
  }
  for (let k = 1; k < n; k++) assert.ok(values[k - 1] >= values[k]);
});

Deno.test("svd: randomized top-k singular values match the exact ones", () => {
  const rng = new Rng(5);
  const a = randomSparse(rng, 120, 50, 0.15);
  // Exact singular values: square roots of the eigenvalues of A^T A.
  const ata = new Float64Array(a.cols * a.cols);
  for (let r = 0; r < a.rows; r++) {
    for (let p = a.ptr[r]; p < a.ptr[r + 1]; p++) {
      for (let q = a.ptr[r]; q < a.ptr[r + 1]; q++) {
        ata[a.idx[p] * a.cols + a.idx[q]] += a.vals[p] * a.vals[q];
      }
    }
  }
  const exact = symmetricEigen(ata, a.cols).values.map(Math.sqrt);
  const k = 8;
  // A random matrix has a flat spectrum, the slowest case for subspace iteration.
  const svd = randomizedSvd(a, k, new Rng(1), { powerIterations: 20 });
  for (let c = 0; c < k; c++) {
    assert.ok(Math.abs(svd.singularValues[c] - exact[c]) < 1e-6 * exact[0], `sigma ${c}`);
    // Columns of U * Sigma have norm sigma.
    let norm = 0;
    for (let r = 0; r < a.rows; r++) norm += svd.embedding[r * k + c] ** 2;
    assert.ok(Math.abs(Math.sqrt(norm) - exact[c]) < 1e-6 * exact[0]);
  }
});

Deno.test("tfidf+svd: unit rows, mask for empty text, deterministic, similar texts close", () => {
  const texts = [
    null,
    "red running shoe for women",
    "blue running shoe for men",
    "red lipstick matte finish",
    "pink lipstick gloss finish",
    "",
    "running shoe trail",
    "lipstick matte red",
  ];
  const a = tfidfSvdFeatures(texts, { dim: 4, seed: 1, minDf: 1 });
  const b = tfidfSvdFeatures(texts, { dim: 4, seed: 1, minDf: 1 });
  assert.deepEqual(a.data, b.data);
  assert.deepEqual([...a.mask], [0, 1, 1, 1, 1, 0, 1, 1]);
  const row = (i: number) => a.data.subarray(i * 4, i * 4 + 4);
  for (let i = 0; i < texts.length; i++) {
    const n = Math.hypot(...row(i));
    assert.ok(a.mask[i] ? Math.abs(n - 1) < 1e-6 : n === 0);
  }
  const cos = (i: number, j: number) => row(i).reduce((s, x, k) => s + x * row(j)[k], 0);
  assert.ok(cos(1, 2) > cos(1, 4), "two shoes are closer than a shoe and a lipstick");
  assert.ok(cos(3, 7) > cos(3, 6), "two lipsticks are closer than a lipstick and a shoe");
});
