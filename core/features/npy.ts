/**
 * Reader for NumPy .npy files holding a 2-D float matrix (float16, float32 or float64, either
 * byte order, C or Fortran order), as written by `numpy.save`.
 *
 * Layout: "\x93NUMPY", major and minor version bytes, header length (u16 LE in version 1, u32 LE
 * in versions 2 and 3), a Python dict literal {'descr': '<f4', 'fortran_order': False,
 * 'shape': (n, d), }, then the raw array data.
 */
import { DataError } from "../errors.ts";

export interface NpyMatrix {
  rows: number;
  cols: number;
  /** numpy dtype string as written, e.g. "<f4". */
  descr: string;
  /** Element (r, c) as a float. */
  get(r: number, c: number): number;
  /** Row-major values as a typed view, when the layout allows one (little-endian f4/f8, C order). */
  values: Float32Array | Float64Array | null;
  /** [items, K, d] arrays read with `layers`: K (cols = K * d, each row its K layers in turn). */
  layers?: number;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Parses .npy bytes; `file` names the source in errors. */
export function parseNpyMatrix(
  bytes: Uint8Array,
  file: string,
  opts: { layers?: boolean } = {},
): NpyMatrix {
  const bad = (problem: string) => new DataError(file, null, null, problem);
  if (bytes.length < 10 || !MAGIC.every((b, i) => bytes[i] === b)) {
    throw bad("not a .npy file (missing \\x93NUMPY magic)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  if (major < 1 || major > 3) throw bad(`unsupported .npy format version ${major}`);
  const headerStart = major === 1 ? 10 : 12;
  if (bytes.length < headerStart) throw bad("truncated .npy header");
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  if (headerStart + headerLen > bytes.length) throw bad("truncated .npy header");
  const header = new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLen));

  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw bad(`unreadable .npy header ${JSON.stringify(header.trim())}`);
  }
  let shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad(`unreadable shape (${shapeText.trim()})`);
  }
  // Layer states [items, K, d] in C order are rows of K * d values: layer k at k * d.
  let layers: number | undefined;
  if (opts.layers) {
    if (shape.length !== 3 || fortran === "True") {
      throw bad(
        `layer features must be a 3-D C-order array [items, layers, dim], got (${shapeText.trim()})`,
      );
    }
    layers = shape[1];
    shape = [shape[0], shape[1] * shape[2]];
  } else if (shape.length !== 2) {
    throw bad(`features must be a 2-D array [items, dim], got shape (${shapeText.trim()})`);
  }
  const m = /^([<>|=]?)f([248])$/.exec(descr);
  if (!m) {
    throw bad(`dtype '${descr}' is not supported (want float16, float32 or float64)`);
  }
  const littleEndian = m[1] !== ">";
  const size = Number(m[2]);
  const [rows, cols] = shape;
  const dataStart = headerStart + headerLen;
  const expected = rows * cols * size;
  if (bytes.length - dataStart !== expected) {
    throw bad(
      `data has ${bytes.length - dataStart} bytes but shape (${rows}, ${cols}) of '${descr}' ` +
        `needs ${expected}`,
    );
  }
  const rowStride = fortran === "True" ? size : cols * size;
  const colStride = fortran === "True" ? rows * size : size;
  const read = size === 4
    ? (o: number) => view.getFloat32(o, littleEndian)
    : size === 8
    ? (o: number) => view.getFloat64(o, littleEndian)
    : (o: number) => halfToFloat(view.getUint16(o, littleEndian));
  let values: Float32Array | Float64Array | null = null;
  const abs = bytes.byteOffset + dataStart;
  if (littleEndian && fortran === "False" && size !== 2 && abs % size === 0) {
    values = size === 4
      ? new Float32Array(bytes.buffer, abs, rows * cols)
      : new Float64Array(bytes.buffer, abs, rows * cols);
  }
  return {
    rows,
    cols,
    descr,
    get: (r, c) => read(dataStart + r * rowStride + c * colStride),
    values,
    ...(layers === undefined ? {} : { layers }),
  };
}

/** IEEE 754 binary16 to a JS number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** A JS number to IEEE 754 binary16, rounding to nearest even (NumPy's astype(float16)). */
export function floatToHalf(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (Number.isNaN(v)) return 0x7e00;
  if (a >= 65520) return sign | 0x7c00; // rounds past the largest half: infinity
  if (a < 2 ** -14) {
    // Subnormal: multiples of 2^-24.
    const q = a / 2 ** -24;
    let m = Math.floor(q);
    const r = q - m;
    if (r > 0.5 || (r === 0.5 && m % 2 === 1)) m++;
    return sign | m; // m = 1024 carries into the smallest normal, as it should
  }
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 rounding
  if (2 ** (e + 1) <= a) e++;
  const q = (a / 2 ** e - 1) * 1024;
  let m = Math.floor(q);
  const r = q - m;
  if (r > 0.5 || (r === 0.5 && m % 2 === 1)) m++;
  if (m === 1024) {
    m = 0;
    e++;
  }
  return sign | ((e + 15) << 10) | m;
}

/** A row-major [rows, cols] matrix as .npy bytes (version 1.0), float32 or float16. */
export function npyMatrixBytes(
  rows: number,
  cols: number,
  data: ArrayLike<number>,
  dtype: "<f4" | "<f2" = "<f4",
): Uint8Array {
  if (data.length !== rows * cols) {
    throw new RangeError(`npy: ${rows} x ${cols} needs ${rows * cols} values, got ${data.length}`);
  }
  let header = `{'descr': '${dtype}', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  // Magic (6) + version (2) + length (2) + header + "\n", padded to a multiple of 64.
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n";
  const size = dtype === "<f4" ? 4 : 2;
  const out = new Uint8Array(10 + header.length + rows * cols * size);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  const start = 10 + header.length;
  for (let i = 0; i < data.length; i++) {
    if (size === 4) view.setFloat32(start + 4 * i, data[i], true);
    else view.setUint16(start + 2 * i, floatToHalf(data[i]), true);
  }
  return out;
}
