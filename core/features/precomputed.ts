/**
 * Precomputed item feature matrices (for example BERT text or ViT image features made in Python)
 * read into the layout preprocess stores: a (numItems + 1) x dim float32 matrix whose row 0 is
 * padding, and a mask telling which items have a feature vector.
 *
 * Formats (docs/features.md):
 *   .npy          2-D float array; row r belongs to line r + 1 of the companion ids file
 *                 (X.ids.txt or X.npy.ids.txt, one item id per line).
 *   .safetensors  tensor "features" [n, dim]; "__metadata__": {"ids": "<JSON list of n ids>"}.
 *   .jsonl(.gz)   one {"id": "...", "vector": [...]} object per line.
 *
 * Problems (unknown item id, repeated id, NaN/Inf, wrong dimension, malformed line) stop the read
 * with a DataError when `strict`, and otherwise skip the row and count it in `skipped`. Items the
 * file does not mention keep mask 0: a missing modality, not an error.
 */
import { DataError, UsageError } from "../errors.ts";
import type { Progress } from "../progress.ts";
import { readSafetensors } from "../io/safetensors.ts";
import { readLines } from "./lines.ts";
import { parseNpyMatrix } from "./npy.ts";

export interface FeatureMatrix {
  dim: number;
  /** (numItems + 1) * dim values; row 0 (padding) and rows of items without features are 0. */
  data: Float32Array;
  /** numItems + 1 entries: 1 where the item has a feature vector. */
  mask: Uint8Array;
  /** Rows dropped in lenient mode. */
  skipped: number;
  /** "<format>:<path>", recorded with the preprocessed dataset. */
  source: string;
}

export interface ReadFeatureOptions {
  strict: boolean;
  /** Receives a note for the first few skipped rows and a count at the end (lenient mode). */
  progress?: Progress;
}

const MAX_NOTES = 5;

interface Location {
  file: string;
  line: number | null;
  field: string | null;
  suffix?: string;
}

/**
 * Collects rows into the item-indexed matrix, enforcing the checks every format shares.
 * A problem becomes a DataError (strict) or a counted skip.
 */
class FeatureSink {
  dim = 0;
  data = new Float32Array(0);
  readonly mask: Uint8Array;
  skipped = 0;

  constructor(
    readonly itemIdToIndex: Map<string, number>,
    readonly numItems: number,
    readonly strict: boolean,
    readonly progress: Progress | undefined,
  ) {
    this.mask = new Uint8Array(numItems + 1);
  }

  setDim(dim: number, err: DataError | null = null): void {
    if (!(dim > 0)) throw err ?? new RangeError(`feature dimension must be positive, got ${dim}`);
    this.dim = dim;
    this.data = new Float32Array((this.numItems + 1) * dim);
  }

  /** Reports a bad row: throws when strict, else counts it. Returns false for `continue`. */
  problem(err: DataError): false {
    if (this.strict) throw err;
    this.skipped++;
    if (this.skipped <= MAX_NOTES) this.progress?.log(`skipped: ${err.message}`);
    return false;
  }

  /**
   * Index of item `id`, or null after reporting it as unknown or repeated. `at` locates the id;
   * its `suffix` (e.g. " (row 7)") ends the message.
   */
  index(id: string, at: Location): number | null {
    const idx = this.itemIdToIndex.get(id);
    const fail = (what: string) => {
      this.problem(new DataError(at.file, at.line, at.field, `${what}${at.suffix ?? ""}`));
      return null;
    };
    // Index 0 marks items the input had but k-core filtering removed: known, silently unused.
    if (idx === 0) return null;
    if (idx === undefined || idx < 1 || idx > this.numItems) return fail(`unknown item "${id}"`);
    if (this.mask[idx]) return fail(`item "${id}" has a second vector`);
    return idx;
  }

  /**
   * Writes get(0..dim-1) as item idx's row after checking every value is finite in float32.
   * `where(col, value)` builds the error for a bad value.
   */
  put(idx: number, get: (c: number) => number, where: (c: number, v: number) => DataError) {
    const row = this.data.subarray(idx * this.dim, (idx + 1) * this.dim);
    for (let c = 0; c < this.dim; c++) {
      const v = Math.fround(get(c));
      if (!Number.isFinite(v)) {
        row.fill(0);
        return this.problem(where(c, get(c)));
      }
      row[c] = v;
    }
    this.mask[idx] = 1;
    return true;
  }

  finish(source: string): FeatureMatrix {
    if (this.skipped > MAX_NOTES) {
      this.progress?.log(`skipped ${this.skipped} rows in all (${source})`);
    }
    return { dim: this.dim, data: this.data, mask: this.mask, skipped: this.skipped, source };
  }
}

/** Names a value that is not finite in float32. */
function describe(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (Number.isFinite(v)) return `${v} (outside the float32 range)`;
  return v > 0 ? "Infinity" : "-Infinity";
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new DataError(path, null, null, `cannot read: ${(e as Error).message}`);
  }
}

/** The ids file that gives a .npy file's row order: X.ids.txt, else X.npy.ids.txt. */
export async function npyIdsPath(npyPath: string): Promise<string> {
  const candidates = [npyPath.replace(/\.npy$/i, "") + ".ids.txt", npyPath + ".ids.txt"];
  for (const p of candidates) {
    try {
      if ((await Deno.stat(p)).isFile) return p;
    } catch {
      // try the next name
    }
  }
  throw new DataError(
    npyPath,
    null,
    null,
    `needs its item ids in ${candidates[0]} (one id per line, in row order)`,
  );
}

async function readNpy(path: string, sink: FeatureSink, widths?: number[]): Promise<string> {
  const m = parseNpyMatrix(await readBytes(path), path, { layers: widths !== undefined });
  if (widths && m.layers) widths.push(...Array(m.layers).fill(m.cols / m.layers));
  const idsPath = await npyIdsPath(path);
  const lines = (await Deno.readTextFile(idsPath)).split("\n");
  if (lines.length > 0 && lines[lines.length - 1].trim() === "") lines.pop();
  if (lines.length !== m.rows) {
    throw new DataError(
      idsPath,
      null,
      null,
      `has ${lines.length} ids but ${path} has ${m.rows} rows`,
    );
  }
  sink.setDim(m.cols, new DataError(path, null, null, "feature dimension is 0"));
  for (let r = 0; r < m.rows; r++) {
    const id = lines[r].trim();
    if (id === "") throw new DataError(idsPath, r + 1, "id", "empty item id");
    const idx = sink.index(id, {
      file: idsPath,
      line: r + 1,
      field: "id",
      suffix: ` (row ${r} of ${path})`,
    });
    if (idx === null) continue;
    const base = r * m.cols;
    const values = m.values;
    sink.put(
      idx,
      values ? (c) => values[base + c] : (c) => m.get(r, c),
      (c, v) =>
        new DataError(path, null, null, `row ${r} (item "${id}"), column ${c} is ${describe(v)}`),
    );
  }
  return `npy:${path}`;
}

async function readSafetensorsFeatures(
  path: string,
  sink: FeatureSink,
  widths?: number[],
): Promise<string> {
  const { tensors, metadata } = await readSafetensors(path);
  const t = widths ? layerTensor(path, tensors, widths) : tensors.get("features");
  if (!t) {
    const names = [...tensors.keys()].join(", ") || "none";
    throw new DataError(path, null, "features", `no tensor named "features" (found: ${names})`);
  }
  if (t.dtype !== "F32" && t.dtype !== "F64") {
    throw new DataError(path, null, "features", `dtype ${t.dtype} is not F32 or F64`);
  }
  if (t.shape.length !== 2) {
    throw new DataError(path, null, "features", `must be 2-D [items, dim], got [${t.shape}]`);
  }
  const [rows, cols] = t.shape;
  const field = "__metadata__.ids";
  if (metadata.ids === undefined) {
    throw new DataError(path, null, field, "missing: store the row ids as a JSON list string");
  }
  let ids: unknown;
  try {
    ids = JSON.parse(metadata.ids);
  } catch {
    throw new DataError(path, null, field, "is not a JSON list");
  }
  if (!Array.isArray(ids) || !ids.every((x) => typeof x === "string" || typeof x === "number")) {
    throw new DataError(path, null, field, "must be a JSON list of strings");
  }
  if (ids.length !== rows) {
    throw new DataError(path, null, field, `has ${ids.length} ids but "features" has ${rows} rows`);
  }
  sink.setDim(cols, new DataError(path, null, "features", "feature dimension is 0"));
  const data = t.data as Float32Array | Float64Array;
  for (let r = 0; r < rows; r++) {
    const id = String(ids[r]);
    const idx = sink.index(id, { file: path, line: null, field, suffix: ` (row ${r})` });
    if (idx === null) continue;
    sink.put(
      idx,
      (c) => data[r * cols + c],
      (c, v) =>
        new DataError(
          path,
          null,
          "features",
          `row ${r} (item "${id}"), column ${c} is ${describe(v)}`,
        ),
    );
  }
  return `safetensors:${path}`;
}

async function readJsonl(path: string, sink: FeatureSink): Promise<string> {
  for await (const [line, lineNo] of readLines(path)) {
    if (line.trim() === "") continue;
    const err = (field: string | null, problem: string) =>
      new DataError(path, lineNo, field, problem);
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      // Python's json.dumps writes NaN and Infinity, which are not JSON.
      sink.problem(
        /(^|[^"\w])-?(NaN|Infinity)\b/.test(line)
          ? err("vector", "contains NaN or Infinity")
          : err(null, `not valid JSON (${(e as Error).message})`),
      );
      continue;
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
      sink.problem(err(null, 'expected an object {"id": ..., "vector": [...]}'));
      continue;
    }
    const { id, vector } = obj as { id?: unknown; vector?: unknown };
    if (typeof id !== "string" && typeof id !== "number") {
      sink.problem(err("id", "missing or not a string"));
      continue;
    }
    if (!Array.isArray(vector) || vector.length === 0) {
      sink.problem(err("vector", "missing or not a non-empty list of numbers"));
      continue;
    }
    const bad = vector.findIndex((v) => typeof v !== "number");
    if (bad >= 0) {
      sink.problem(err("vector", `element ${bad} is ${JSON.stringify(vector[bad])}, not a number`));
      continue;
    }
    if (sink.dim === 0) sink.setDim(vector.length);
    else if (vector.length !== sink.dim) {
      sink.problem(
        err(
          "vector",
          `has ${vector.length} values, expected ${sink.dim} (the first vector's length)`,
        ),
      );
      continue;
    }
    const key = String(id);
    const idx = sink.index(key, { file: path, line: lineNo, field: "id" });
    if (idx === null) continue;
    sink.put(
      idx,
      (c) => vector[c] as number,
      (c, v) => err("vector", `element ${c} is ${describe(v)}`),
    );
  }
  if (sink.dim === 0) throw new DataError(path, null, null, "has no feature vectors");
  return `jsonl:${path}`;
}

type SafeTensors = Awaited<ReturnType<typeof readSafetensors>>["tensors"];

/**
 * Layer states of a safetensors file as one 2-D [items, Σ widths] tensor: "features"
 * [items, K, d], or "layer_0" .. "layer_{K-1}" [items, d_k] (widths may differ). Fills `widths`.
 */
function layerTensor(
  path: string,
  tensors: SafeTensors,
  widths: number[],
): { dtype: string; shape: number[]; data: Float32Array | Float64Array } {
  const f = tensors.get("features");
  if (f) {
    if (f.shape.length !== 3) {
      throw new DataError(
        path,
        null,
        "features",
        `must be 3-D [items, layers, dim], got [${f.shape}]`,
      );
    }
    const [n, k, d] = f.shape;
    widths.push(...Array(k).fill(d));
    return { dtype: f.dtype, shape: [n, k * d], data: f.data as Float32Array | Float64Array };
  }
  const parts = [];
  for (let k = 0; tensors.has(`layer_${k}`); k++) parts.push(tensors.get(`layer_${k}`)!);
  if (parts.length === 0) {
    const names = [...tensors.keys()].join(", ") || "none";
    throw new DataError(path, null, null, `no "features" or "layer_0".. tensors (found: ${names})`);
  }
  const n = parts[0].shape[0];
  for (const [k, p] of parts.entries()) {
    if (p.shape.length !== 2 || p.shape[0] !== n || (p.dtype !== "F32" && p.dtype !== "F64")) {
      throw new DataError(
        path,
        null,
        `layer_${k}`,
        `must be F32/F64 [${n}, dim], got ${p.dtype} [${p.shape}]`,
      );
    }
    widths.push(p.shape[1]);
  }
  const cols = widths.reduce((a, b) => a + b, 0);
  const data = new Float64Array(n * cols);
  for (let r = 0; r < n; r++) {
    let at = r * cols;
    for (const [k, p] of parts.entries()) {
      const src = p.data as Float32Array | Float64Array;
      for (let c = 0; c < widths[k]; c++) data[at++] = src[r * widths[k] + c];
    }
  }
  return { dtype: "F64", shape: [n, cols], data };
}

/** Layer states of every item: (numItems + 1) x Σ widths, layer k at its offset. */
export interface LayerMatrix extends FeatureMatrix {
  widths: number[];
}

/**
 * Reads precomputed layer-wise states (.npy [items, K, d] with its ids file, or .safetensors
 * "features" [items, K, d] / "layer_0".. [items, d_k] with ids in the metadata) into an
 * item-indexed matrix of concatenated layers.
 */
export async function readLayerFeatureFile(
  path: string,
  itemIdToIndex: Map<string, number>,
  numItems: number,
  opts: ReadFeatureOptions,
): Promise<LayerMatrix> {
  const sink = new FeatureSink(itemIdToIndex, numItems, opts.strict, opts.progress);
  const lower = path.toLowerCase();
  const widths: number[] = [];
  let source: string;
  if (lower.endsWith(".npy")) source = await readNpy(path, sink, widths);
  else if (lower.endsWith(".safetensors")) {
    source = await readSafetensorsFeatures(path, sink, widths);
  } else {
    throw new UsageError(`${path}: layer features must be .npy or .safetensors`);
  }
  return { ...sink.finish(source), widths };
}

/**
 * Reads a precomputed feature file (.npy, .safetensors, .jsonl or .jsonl.gz) into an
 * item-indexed matrix: item i (1..numItems, from itemIdToIndex) gets row i.
 */
export async function readFeatureFile(
  path: string,
  itemIdToIndex: Map<string, number>,
  numItems: number,
  opts: ReadFeatureOptions,
): Promise<FeatureMatrix> {
  const sink = new FeatureSink(itemIdToIndex, numItems, opts.strict, opts.progress);
  const lower = path.toLowerCase();
  let source: string;
  if (lower.endsWith(".npy")) source = await readNpy(path, sink);
  else if (lower.endsWith(".safetensors")) source = await readSafetensorsFeatures(path, sink);
  else if (/\.jsonl?(\.gz)?$/.test(lower)) source = await readJsonl(path, sink);
  else {
    throw new UsageError(
      `${path}: unknown feature file type (expected .npy, .safetensors, .jsonl or .jsonl.gz)`,
    );
  }
  return sink.finish(source);
}
