/**
 * safetensors reader and writer (the Hugging Face format, so PyTorch/NumPy users can open duaf's
 * arrays and checkpoints with `safetensors.numpy.load_file`).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON header
 * `{"__metadata__": {..}, name: {dtype, shape, data_offsets: [begin, end]}, ...}`, then the raw
 * little-endian tensor bytes. Output is byte-deterministic: header keys are sorted, the header is
 * space-padded so the data starts on an 8-byte boundary, and tensors are laid out by element size
 * (largest first) then name, as the reference implementation does, so every tensor is naturally
 * aligned and the reader can return zero-copy views.
 */
import { DataError } from "../errors.ts";
import { writeFileAtomic } from "./atomic.ts";

export type SafeDType = "F32" | "F64" | "I32" | "I64" | "U8";

/** The typed array that holds each dtype. */
export interface SafeArrayOf {
  F32: Float32Array;
  F64: Float64Array;
  I32: Int32Array;
  I64: BigInt64Array;
  U8: Uint8Array;
}

export type SafeTensor = {
  [D in SafeDType]: { dtype: D; shape: number[]; data: SafeArrayOf[D] };
}[SafeDType];

export type TensorMap = Map<string, SafeTensor>;

export interface SafetensorsFile {
  tensors: TensorMap;
  metadata: Record<string, string>;
}

const ELEMENT_BYTES: Record<SafeDType, number> = { F64: 8, I64: 8, F32: 4, I32: 4, U8: 1 };

const ARRAY_CTOR = {
  F32: Float32Array,
  F64: Float64Array,
  I32: Int32Array,
  I64: BigInt64Array,
  U8: Uint8Array,
} as const;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function assertLittleEndian(): void {
  if (!LITTLE_ENDIAN) throw new Error("safetensors: big-endian hosts are not supported");
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isDType(s: unknown): s is SafeDType {
  return typeof s === "string" && Object.hasOwn(ELEMENT_BYTES, s);
}

/** Convenience constructor with the dtype inferred from the array type. */
export function tensor(data: SafeTensor["data"], shape: number[]): SafeTensor {
  const dtype: SafeDType = data instanceof Float32Array
    ? "F32"
    : data instanceof Float64Array
    ? "F64"
    : data instanceof Int32Array
    ? "I32"
    : data instanceof BigInt64Array
    ? "I64"
    : "U8";
  return { dtype, shape, data } as SafeTensor;
}

/** Serialises tensors (+ optional string metadata) to safetensors bytes. */
export function encodeSafetensors(
  tensors: TensorMap | Record<string, SafeTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  assertLittleEndian();
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new Error("safetensors: '__metadata__' is reserved");
    if (!isDType(t.dtype)) throw new Error(`safetensors: ${name}: unknown dtype ${t.dtype}`);
    if (!(t.data instanceof ARRAY_CTOR[t.dtype])) {
      throw new Error(`safetensors: ${name}: data is not a ${ARRAY_CTOR[t.dtype].name}`);
    }
    if (t.shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new Error(`safetensors: ${name}: bad shape [${t.shape}]`);
    }
    if (product(t.shape) !== t.data.length) {
      throw new Error(
        `safetensors: ${name}: shape [${t.shape}] needs ${product(t.shape)} elements, ` +
          `data has ${t.data.length}`,
      );
    }
  }
  const byName = (a: [string, SafeTensor], b: [string, SafeTensor]) =>
    a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
  const layout = [...entries].sort((a, b) =>
    ELEMENT_BYTES[b[1].dtype] - ELEMENT_BYTES[a[1].dtype] || byName(a, b)
  );
  const offsets = new Map<string, [number, number]>();
  let total = 0;
  for (const [name, t] of layout) {
    const bytes = t.data.byteLength;
    offsets.set(name, [total, total + bytes]);
    total += bytes;
  }
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    const sorted: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort()) {
      if (typeof metadata[k] !== "string") {
        throw new Error(`safetensors: metadata '${k}' must be a string`);
      }
      sorted[k] = metadata[k];
    }
    header.__metadata__ = sorted;
  }
  for (const [name, t] of [...entries].sort(byName)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: offsets.get(name) };
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) {
    const padded = new Uint8Array(json.length + pad).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const out = new Uint8Array(8 + json.length + total);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  const base = 8 + json.length;
  for (const [name, t] of layout) {
    const [begin] = offsets.get(name)!;
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), base + begin);
  }
  return out;
}

/**
 * Parses safetensors bytes. Tensors are zero-copy views into `bytes` when aligned (always for
 * files duaf writes), copies otherwise. `file` names the source in error messages.
 */
export function decodeSafetensors(bytes: Uint8Array, file = "<safetensors>"): SafetensorsFile {
  assertLittleEndian();
  const bad = (field: string | null, problem: string) => new DataError(file, null, field, problem);
  if (bytes.length < 8) throw bad(null, "not a safetensors file (shorter than 8 bytes)");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(bytes.length - 8)) {
    throw bad(null, `not a safetensors file (header length ${headerLen} exceeds file size)`);
  }
  const n = Number(headerLen);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch {
    throw bad(null, "not a safetensors file (header is not JSON)");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw bad(null, "not a safetensors file (header is not a JSON object)");
  }
  const data = bytes.subarray(8 + n);
  const tensors: TensorMap = new Map();
  const metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null) throw bad(name, "must be an object");
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== "string") throw bad(`__metadata__.${k}`, "must be a string");
        metadata[k] = v;
      }
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!isDType(e.dtype)) {
      throw bad(name, `unsupported dtype ${JSON.stringify(e.dtype)} (want F32, F64, I32, I64, U8)`);
    }
    const shape = e.shape;
    if (
      !Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || (d as number) < 0)
    ) {
      throw bad(name, "shape must be a list of non-negative integers");
    }
    const off = e.data_offsets;
    if (
      !Array.isArray(off) || off.length !== 2 || !off.every(Number.isSafeInteger) ||
      off[0] < 0 || off[1] < off[0] || off[1] > data.length
    ) {
      throw bad(name, `data_offsets ${JSON.stringify(off)} outside the ${data.length}-byte data`);
    }
    const size = ELEMENT_BYTES[e.dtype];
    const count = product(shape as number[]);
    if (off[1] - off[0] !== count * size) {
      throw bad(
        name,
        `shape [${shape}] needs ${count * size} bytes, data_offsets give ${off[1] - off[0]}`,
      );
    }
    const start = data.byteOffset + off[0];
    const Ctor = ARRAY_CTOR[e.dtype];
    const arr = start % size === 0
      ? new Ctor(data.buffer as ArrayBuffer, start, count)
      : new Ctor(data.slice(off[0], off[1]).buffer);
    tensors.set(name, { dtype: e.dtype, shape: shape as number[], data: arr } as SafeTensor);
  }
  return { tensors, metadata };
}

/** Reads a .safetensors file. A missing file is a DataError naming it. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DataError(path, null, null, "no such file");
    throw e;
  }
  return decodeSafetensors(bytes, path);
}

/** Writes a .safetensors file atomically (temporary name, then rename). */
export async function writeSafetensors(
  path: string,
  tensors: TensorMap | Record<string, SafeTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/** Fetches a tensor by name with the expected dtype, or fails with a DataError naming it. */
export function getTensor<D extends SafeDType>(
  file: SafetensorsFile,
  name: string,
  dtype: D,
  path = "<safetensors>",
): { dtype: D; shape: number[]; data: SafeArrayOf[D] } {
  const t = file.tensors.get(name);
  if (!t) throw new DataError(path, null, name, "tensor missing");
  if (t.dtype !== dtype) {
    throw new DataError(path, null, name, `dtype ${t.dtype}, expected ${dtype}`);
  }
  return t as { dtype: D; shape: number[]; data: SafeArrayOf[D] };
}
