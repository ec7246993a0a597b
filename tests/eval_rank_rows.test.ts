// Backend ranking (rankRows) against the host's rankOf: ties, NaN scores, excluded columns, the
// target among the excluded, tails of every width, and bad indices refused.
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { rankOf } from "../core/eval/metrics.ts";
import { Rng } from "../core/random.ts";

const wasm = await WasmBackend.create({ threads: 1 });

Deno.test("rankRows equals rankOf on every backend that has it", () => {
  const r = new Rng(7);
  for (const cols of [1, 2, 3, 4, 5, 7, 8, 9, 63, 130]) {
    const rows = 6;
    // Few distinct values, so ties are common; a NaN here and there.
    const x = Float32Array.from(
      { length: rows * cols },
      () => r.uniform() < 0.05 ? NaN : Math.floor(r.uniform() * 5),
    );
    const targets = Int32Array.from({ length: rows }, () => r.int(cols));
    const excluded = Array.from({ length: rows }, (_, row) => {
      const s = new Set<number>([0]);
      for (let k = 0; k < 3; k++) s.add(r.int(cols));
      if (row === 1) s.add(targets[row]); // the target is never subtracted
      return s;
    });
    const want = Int32Array.from(
      { length: rows },
      (_, row) => rankOf(x, row * cols, cols, targets[row], excluded[row]),
    );
    const offsets = new Int32Array(rows + 1);
    const cs: number[] = [];
    excluded.forEach((s, row) => {
      cs.push(...s);
      offsets[row + 1] = cs.length;
    });
    for (const be of [new JsBackend(), wasm]) {
      const out = be.alloc(rows, "i32");
      be.rankRows!(
        be.upload(x, "f32"),
        be.upload(targets, "i32"),
        be.upload(offsets, "i32"),
        be.upload(Int32Array.from(cs), "i32"),
        out,
        rows,
        cols,
      );
      assert.deepEqual(be.download(out), want, `${be.name} cols=${cols}`);
    }
  }
});

Deno.test("rankRows refuses a target or an excluded column outside the row", () => {
  const x = wasm.upload(new Float32Array(8), "f32");
  const out = wasm.alloc(2, "i32");
  const offsets = wasm.upload(Int32Array.from([0, 1, 2]), "i32");
  assert.throws(
    () =>
      wasm.rankRows(
        x,
        wasm.upload(Int32Array.from([1, 4]), "i32"),
        offsets,
        wasm.upload(Int32Array.from([0, 0]), "i32"),
        out,
        2,
        4,
      ),
    /target.*index 4 at position 1/,
  );
  assert.throws(
    () =>
      wasm.rankRows(
        x,
        wasm.upload(Int32Array.from([1, 2]), "i32"),
        offsets,
        wasm.upload(Int32Array.from([0, 9]), "i32"),
        out,
        2,
        4,
      ),
    /excluded columns: index 9/,
  );
});
