/**
 * The fused ops of the encoders on the native backend with its C kernels, against the
 * separate ops they replace on the same backend, bit for bit, on one kernel thread and split over
 * two, with and without a tape:
 * - op.feedForward (GELU in the GEMM's store): linear(gelu(linear(x))), forward and every
 *   gradient; a releasing backward frees the op's inner activations as the three ops do.
 * - op.addLayerNorm (the residual add inside the layer norm): layerNorm(a + b), and with the
 *   branch's dropout, layerNorm(dropout(a) + b).
 * - op.embeddingAdd (an addend in the lookup's pass): embedding(table, idx) + b.
 * - op.dropoutRows (rows' masks drawn where they are used): x * embedding(dropout(ones), rows).
 * Elsewhere each op is the ops it replaces (finite-difference checks in ops_gradcheck.test.ts).
 */
import * as op from "../core/ops/mod.ts";
import assert from "node:assert/strict";
import type { Backend } from "../core/backend.ts";
import { nativeOnOneAndTwoThreads } from "./helpers/native_threads.ts";
import { assertSameBits } from "./helpers/assert_close.ts";
import { Rng } from "../core/random.ts";
import {
  backward,
  full,
  liveTensorCount,
  noGrad,
  type Tensor,
  tensor,
  tidy,
  withBackend,
} from "../core/tensor.ts";

const { one, two, ignore } = await nativeOnOneAndTwoThreads("fused encoder op");

interface Problem {
  rows: number;
  d: number;
  inner: number;
  data: Float32Array[];
}

function problem(seed: number, rows: number, d: number, inner: number): Problem {
  const r = new Rng(seed);
  const fill = (n: number, s: number) => Float32Array.from({ length: n }, () => r.normal() * s);
  // x, w1, b1, w2, b2, and the output's gradient.
  return {
    rows,
    d,
    inner,
    data: [
      fill(rows * d, 1),
      fill(inner * d, 0.3),
      fill(inner, 0.1),
      fill(d * inner, 0.3),
      fill(d, 0.1),
      fill(rows * d, 1),
    ],
  };
}

/** Tensors alive right after each taped run's backward. */
const live: number[] = [];

/** Output and the gradients of x, w1, b1, w2, b2, fused or as three ops, with or without a tape. */
function run(be: Backend, p: Problem, fused: boolean, taped: boolean): Float32Array[] {
  return withBackend(be, () =>
    tidy(() => {
      const shapes = [[p.rows, p.d], [p.inner, p.d], [p.inner], [p.d, p.inner], [p.d]];
      const ps = shapes.map((s, i) => tensor(p.data[i], s));
      const forward = ([x, w1, b1, w2, b2]: Tensor[]) =>
        fused
          ? op.feedForward(x, w1, b1, w2, b2)
          : op.linear(op.gelu(op.linear(x, w1, b1)), w2, b2);
      if (!taped) return [noGrad(() => forward(ps)).toFloat32()];
      for (const t of ps) t.requiresGrad = true;
      const y = forward(ps);
      const out = y.toFloat32();
      backward(y, tensor(p.data[5], [p.rows, p.d]), { release: true });
      live.push(liveTensorCount());
      const grads = ps.map((t) => {
        const g = t.grad!.toFloat32();
        t.grad!.dispose();
        return g;
      });
      return [out, ...grads];
    }));
}

/** feedForward's outputs, in run()'s order. */
const FEED_FORWARD = ["y", "dx", "dw1", "db1", "dw2", "db2"];

Deno.test({
  name: "feedForward fused in the GEMM: the three ops' bits, forward and backward",
  ignore,
  fn() {
    // Rows split across two threads (many rows), columns split (few rows), one thread, an edge
    // band of rows (rows % 6), and a hidden width past one vector.
    const cases: [number, number, number][] = [[1003, 64, 256], [5, 64, 256], [37, 24, 40]];
    for (const [rows, d, inner] of cases) {
      const p = problem(rows, rows, d, inner);
      for (const be of [one!, two!]) {
        const what = `[${rows}x${d}] inner ${inner}, ${be.threads} thread(s)`;
        for (const taped of [true, false]) {
          assertSameBits(
            run(be, p, true, taped),
            run(be, p, false, taped),
            `${what}${taped ? "" : ", no tape"}`,
            FEED_FORWARD,
          );
        }
      }
    }
  },
});

Deno.test({
  name: "feedForward fused: a releasing backward frees its inner activations as the three ops do",
  ignore,
  fn() {
    const p = problem(3, 64, 16, 32);
    live.length = 0;
    run(one!, p, false, true);
    run(one!, p, true, true);
    const [separate, fused] = live;
    assert.equal(fused, separate);
  },
});

/** addLayerNorm's output and the gradients of a, b, gamma, beta, fused or as add then layerNorm. */
function runAddNorm(
  be: Backend,
  p: Problem,
  dy: Float32Array,
  fused: boolean,
  taped: boolean,
  drop?: { p: number; seed: number },
): Float32Array[] {
  return withBackend(be, () =>
    tidy(() => {
      const shapes = [[p.rows, p.d], [p.rows, p.d], [p.d], [p.d]];
      const data = [p.data[0], p.data[5], p.data[4], p.data[2].subarray(0, p.d)];
      const ps = shapes.map((s, i) => tensor(data[i], s));
      const forward = ([a, b, g, bt]: Tensor[]) => {
        if (fused) return op.addLayerNorm(a, b, g, bt, 1e-12, drop);
        const branch = drop ? op.dropout(a, drop.p, drop.seed, true) : a;
        return op.layerNorm(op.add(branch, b), g, bt, 1e-12);
      };
      if (!taped) return [noGrad(() => forward(ps)).toFloat32()];
      for (const t of ps) t.requiresGrad = true;
      const y = forward(ps);
      const out = y.toFloat32();
      backward(y, tensor(dy, [p.rows, p.d]), { release: true });
      const grads = ps.map((t) => {
        const g = t.grad!.toFloat32();
        t.grad!.dispose();
        return g;
      });
      return [out, ...grads];
    }));
}

Deno.test({
  name: "addLayerNorm fused: (dropout,) add then layerNorm's bits, forward and backward",
  ignore,
  fn() {
    // Rows split over two threads with a remainder of rows % 4, few rows, one row.
    const cases: [number, number][] = [[1031, 64], [7, 64], [1, 24], [2050, 40]];
    for (const [rows, d] of cases) {
      const p = problem(rows + 7, rows, d, d);
      const dy = problem(rows + 8, rows, d, d).data[0];
      for (const be of [one!, two!]) {
        for (const taped of [true, false]) {
          for (const drop of [undefined, { p: 0.3, seed: rows }]) {
            const fused = runAddNorm(be, p, dy, true, taped, drop);
            assertSameBits(
              fused,
              runAddNorm(be, p, dy, false, taped, drop),
              `[${rows}x${d}], ${be.threads} thread(s)${taped ? "" : ", no tape"}${
                drop ? ", dropout" : ""
              }`,
              ["y", "da", "db", "dgamma", "dbeta"],
            );
            // The mask is drawn: some of a's gradient is dropped, none where it is kept.
            if (drop && taped) assert.ok(fused[1].some((v, i) => v === 0 && fused[2][i] !== 0));
          }
        }
      }
    }
  },
});

Deno.test({
  name: "embeddingAdd fused: the lookup then add's bits, forward and backward; bad indices refused",
  ignore,
  fn() {
    const r = new Rng(11);
    const [rows, d, n] = [50, 24, 301];
    const table = Float32Array.from({ length: rows * d }, () => r.normal());
    const b = Float32Array.from({ length: n * d }, () => r.normal());
    const dy = Float32Array.from({ length: n * d }, () => r.normal());
    // Repeated rows: the table's gradient sums several rows of g.
    const idx = Int32Array.from({ length: n }, () => r.int(rows));
    const run = (be: Backend, fused: boolean) =>
      withBackend(be, () =>
        tidy(() => {
          const t = tensor(table, [rows, d]);
          const bt = tensor(b, [n, d]);
          t.requiresGrad = bt.requiresGrad = true;
          const i = tensor(idx, [n], "i32");
          const y = fused ? op.embeddingAdd(t, i, bt) : op.add(op.embedding(t, i), bt);
          const out = y.toFloat32();
          backward(y, tensor(dy, [n, d]), { release: true });
          const grads = [t, bt].map((p) => {
            const g = p.grad!.toFloat32();
            p.grad!.dispose();
            return g;
          });
          return [out, ...grads];
        }));
    assertSameBits(run(one!, true), run(one!, false), "embeddingAdd", ["y", "dtable", "db"]);
    withBackend(one!, () =>
      tidy(() => {
        const bad = tensor(Int32Array.from([0, rows]), [2], "i32");
        assert.throws(
          () =>
            op.embeddingAdd(tensor(table, [rows, d]), bad, tensor(b.subarray(0, 2 * d), [2, d])),
          /index/,
        );
      }));
  },
});

interface ScoresProblem {
  n: number;
  m: number;
  d: number;
  rows: number;
  table: Float32Array;
  h: Float32Array;
  idx: Int32Array;
  dy: Float32Array;
}

function scoresProblem(n: number, m: number, d: number, rows: number): ScoresProblem {
  const r = new Rng(n + m + d);
  const fill = (len: number) => Float32Array.from({ length: len }, () => r.normal());
  // Repeated rows: the table's gradient sums several rows.
  const idx = Int32Array.from({ length: n * m }, () => r.int(rows));
  return { n, m, d, rows, table: fill(rows * d), h: fill(n * d), idx, dy: fill(n * m) };
}

/**
 * gatherDots (or the gather and product it replaces) forward and backward: [y, dtable, dh];
 * with `second`, the table also takes a lookup of those rows whose gradient is summed with it.
 */
function runScores(
  be: Backend,
  fused: boolean,
  p: ScoresProblem,
  second?: { idx: Int32Array; dz: Float32Array },
): Float32Array[] {
  const { n, m, d } = p;
  return withBackend(be, () =>
    tidy(() => {
      const t = tensor(p.table, [p.rows, d]);
      const h = tensor(p.h, [n, d]);
      t.requiresGrad = h.requiresGrad = true;
      const i = tensor(p.idx, [n, m], "i32");
      const y = fused
        ? op.gatherDots(t, i, h)
        : op.reshape(op.matmul(op.embedding(t, i), op.reshape(h, [n, d, 1])), [n, m]);
      let loss = op.sum(op.mul(y, tensor(p.dy, [n, m])));
      if (second) {
        const k = second.idx.length;
        const z = op.embedding(t, tensor(second.idx, [k], "i32"));
        loss = op.add(loss, op.sum(op.mul(z, tensor(second.dz, [k, d]))));
      }
      const out = y.toFloat32();
      backward(loss, undefined, { release: true });
      return [
        out,
        ...[t, h].map((x) => {
          const g = x.grad!.toFloat32();
          x.grad!.dispose();
          return g;
        }),
      ];
    }));
}

Deno.test({
  name:
    "gatherDots fused: the gather then product's bits, forward and backward; bad indices refused",
  ignore,
  fn() {
    // 257 candidates: two K slices in h's gradient; d = 300: two in the scores; d = 24: a
    // masked vector; rows split over two threads with an odd count.
    const cases: [number, number, number, number][] = [
      [301, 257, 64, 2000],
      [7, 20, 24, 30],
      [33, 5, 300, 40],
    ];
    for (const [n, m, d, rows] of cases) {
      const p = scoresProblem(n, m, d, rows);
      for (const be of [one!, two!]) {
        // The backend takes the call (else both sides would be the composition).
        withBackend(be, () =>
          tidy(() => {
            const [t, i, h, o] = [
              tensor(p.table, [rows, d]),
              tensor(p.idx, [n, m], "i32"),
              tensor(p.h, [n, d]),
              full([n, m], 0),
            ];
            assert.ok(be.gatherDots?.(t.storage, i.storage, h.storage, o.storage, n, m, d));
          }));
        const label = `gatherDots [${n}x${m}x${d}], ${be.threads} thread(s)`;
        const names = ["y", "dtable", "dh"];
        assertSameBits(runScores(be, true, p), runScores(be, false, p), label, names);
      }
    }
    // A table with a second lookup whose gradient is summed first: the scores' gradient is
    // added into that sum through a compact buffer of the touched rows (few rows of many).
    const p = scoresProblem(6, 9, 40, 500);
    const second = {
      idx: Int32Array.of(3, p.idx[0], 3, 77),
      dz: Float32Array.from({ length: 4 * 40 }, (_, i) => Math.sin(i)),
    };
    for (const be of [one!, two!]) {
      const label = `gatherDots, shared table, ${be.threads} thread(s)`;
      const [a, b] = [runScores(be, true, p, second), runScores(be, false, p, second)];
      assertSameBits(a, b, label, ["y", "dtable", "dh"]);
    }
    withBackend(one!, () =>
      tidy(() => {
        const bad = tensor(Int32Array.from([0, 3, 50, 1]), [2, 2], "i32");
        assert.throws(
          () => op.gatherDots(tensor(new Float32Array(50 * 4), [50, 4]), bad, full([2, 4], 0)),
          /gatherDots: index 50 at position 2 outside \[0, 50\)/,
        );
      }));
  },
});

Deno.test({
  name: "dropoutRows in one pass: the gathered mask's bits, forward and backward; bad rows refused",
  ignore,
  fn() {
    const r = new Rng(13);
    // Enough rows for the two threads to split them; rows of the larger tensor in any order.
    const [of, cols, n] = [9000, 64, 2100];
    const x = Float32Array.from({ length: n * cols }, () => r.normal());
    const dy = Float32Array.from({ length: n * cols }, () => r.normal());
    const rows = Int32Array.from({ length: n }, () => r.int(of));
    const run = (be: Backend, fused: boolean) =>
      withBackend(be, () =>
        tidy(() => {
          const xt = tensor(x, [n, cols]);
          xt.requiresGrad = true;
          const y = fused ? op.dropoutRows(xt, 0.3, 77, of, rows) : op.mul(
            xt,
            op.embedding(op.dropout(full([of, cols], 1), 0.3, 77, true), tensor(rows, [n], "i32")),
          );
          const out = y.toFloat32();
          backward(y, tensor(dy, [n, cols]), { release: true });
          const g = xt.grad!.toFloat32();
          xt.grad!.dispose();
          return [out, g];
        }));
    for (const be of [one!, two!]) {
      assertSameBits(run(be, true), run(be, false), `dropoutRows, ${be.threads} thread(s)`, [
        "y",
        "dx",
      ]);
    }
    withBackend(one!, () =>
      tidy(() => {
        const t = tensor(x.subarray(0, 2 * cols), [2, cols]);
        assert.throws(() => op.dropoutRows(t, 0.3, 1, of, Int32Array.of(0, of)), /outside/);
      }));
  },
});
