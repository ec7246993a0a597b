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

/**
 * out[r] = the first column of row r holding its largest value (NaN only when the whole row is):
 * the row's maximum over four lanes, then the first column equal to it.
 */
export function argmaxRows(x: usize, out: usize, rows: i32, cols: i32): void {
  const nv = cols & ~3;
  for (let r = 0; r < rows; r++) {
    const row = x + ((<usize>r * cols) << 2);
    let m = -Infinity;
    if (nv > 0) {
      // NaN lanes never win: max(v, NaN) would give NaN, so NaN is replaced by -inf first.
      let acc = f32x4.splat(-Infinity);
      for (let i = 0; i < nv; i += 4) {
        const v = v128.load(row + (<usize>i << 2));
        acc = f32x4.max(acc, v128.bitselect(v, f32x4.splat(-Infinity), f32x4.eq(v, v)));
      }
      m = max(max(f32x4.extract_lane(acc, 0), f32x4.extract_lane(acc, 1)), max(f32x4.extract_lane(acc, 2), f32x4.extract_lane(acc, 3)));
    }
    for (let i = nv; i < cols; i++) {
      const v = load<f32>(row + (<usize>i << 2));
      if (v > m) m = v;
    }
    let best = 0;
    if (m == -Infinity) {
      // Every value -inf or NaN: the first -inf, else column 0 (the js reference's choice).
      for (let i = 0; i < cols; i++) {
        if (load<f32>(row + (<usize>i << 2)) == -Infinity) {
          best = i;
          break;
        }
      }
    } else {
      while (load<f32>(row + (<usize>best << 2)) != m) best++;
    }
    store<i32>(out + (<usize>r << 2), best);
  }
}

/**
 * out[r] = the 0-based rank of row r's target among its scores (metrics.ts rankOf): how many
 * columns score at least x[r, targets[r]], the target itself and the excluded columns
 * exCols[exOffsets[r] .. exOffsets[r + 1]) other than the target not counted. Full ranking
 * without copying the [rows x cols] scores out of the arena.
 */
export function rankRows(
  x: usize,
  targets: usize,
  exOffsets: usize,
  exCols: usize,
  out: usize,
  rows: i32,
  cols: i32,
): i32 {
  let bad = firstBad(targets, rows, cols);
  if (bad >= 0) return bad;
  bad = firstBad(exCols, load<i32>(exOffsets + (<usize>rows << 2)), cols);
  if (bad >= 0) return rows + bad;
  const nv = cols & ~3;
  for (let r = 0; r < rows; r++) {
    const row = x + ((<usize>r * cols) << 2);
    const t = load<i32>(targets + (<usize>r << 2));
    const s = load<f32>(row + (<usize>t << 2));
    const vs = f32x4.splat(s);
    // A true comparison is lane -1, so subtracting counts.
    let acc = i32x4.splat(0);
    for (let i = 0; i < nv; i += 4) {
      acc = i32x4.sub(acc, f32x4.ge(v128.load(row + (<usize>i << 2)), vs));
    }
    let n = i32x4.extract_lane(acc, 0) + i32x4.extract_lane(acc, 1) +
      i32x4.extract_lane(acc, 2) + i32x4.extract_lane(acc, 3);
    for (let i = nv; i < cols; i++) n += i32(load<f32>(row + (<usize>i << 2)) >= s);
    n--; // the target itself
    const e1 = load<i32>(exOffsets + (<usize>(r + 1) << 2));
    for (let e = load<i32>(exOffsets + (<usize>r << 2)); e < e1; e++) {
      const c = load<i32>(exCols + (<usize>e << 2));
      if (c != t && load<f32>(row + (<usize>c << 2)) >= s) n--;
    }
    store<i32>(out + (<usize>r << 2), n);
  }
  return -1;
}
