// Row gathers and scatters by int32 index. Indices are validated before anything is written;
// the return value is the position of the first bad index, or -1.

import { addRow } from "./binary";

function firstBad(idx: usize, n: i32, bound: i32): i32 {
  for (let i = 0; i < n; i++) {
    const v = load<i32>(idx + (<usize>i << 2));
    if (<u32>v >= <u32>bound) return i;
  }
  return -1;
}

/** out[i, :] = table[idx[i], :] (rows of dim floats), table has tableRows rows. */
export function gather(table: usize, tableRows: i32, idx: usize, out: usize, n: i32, dim: i32): i32 {
  const bad = firstBad(idx, n, tableRows);
  if (bad >= 0) return bad;
  const rowBytes = <usize>dim << 2;
  for (let i = 0; i < n; i++) {
    const row = <usize>load<i32>(idx + (<usize>i << 2));
    memory.copy(out + <usize>i * rowBytes, table + row * rowBytes, rowBytes);
  }
  return -1;
}

/** out[idx[i], :] += g[i, :]; out has outRows rows. */
export function scatterAdd(g: usize, idx: usize, out: usize, outRows: i32, n: i32, dim: i32): i32 {
  const bad = firstBad(idx, n, outRows);
  if (bad >= 0) return bad;
  const rowBytes = <usize>dim << 2;
  for (let i = 0; i < n; i++) {
    const row = <usize>load<i32>(idx + (<usize>i << 2));
    addRow(g + <usize>i * rowBytes, out + row * rowBytes, dim);
  }
  return -1;
}

/** out[r] = x[r, idx[r]] for r < rows. */
export function pick(x: usize, idx: usize, out: usize, rows: i32, cols: i32): i32 {
  const bad = firstBad(idx, rows, cols);
  if (bad >= 0) return bad;
  for (let r = 0; r < rows; r++) {
    const c = <usize>load<i32>(idx + (<usize>r << 2));
    store<f32>(out + (<usize>r << 2), load<f32>(x + ((<usize>r * cols + c) << 2)));
  }
  return -1;
}

/** out[r, idx[r]] += g[r] for r < rows. */
export function pickGrad(g: usize, idx: usize, out: usize, rows: i32, cols: i32): i32 {
  const bad = firstBad(idx, rows, cols);
  if (bad >= 0) return bad;
  for (let r = 0; r < rows; r++) {
    const c = <usize>load<i32>(idx + (<usize>r << 2));
    const p = out + ((<usize>r * cols + c) << 2);
    store<f32>(p, load<f32>(p) + load<f32>(g + (<usize>r << 2)));
  }
  return -1;
}
