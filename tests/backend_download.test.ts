// download(..., into): a block loop reads every block into one host buffer.
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";

const wasm = await WasmBackend.create({ threads: 1 });

Deno.test("download into a reused buffer: its prefix, the same values; wrong buffers refused", () => {
  for (const be of [new JsBackend(), wasm]) {
    const s = be.upload(Float32Array.from([1, 2, 3, 4, 5, 6]), "f32");
    const buf = new Float32Array(8).fill(-1);
    const got = be.download(s, 2, 3, buf);
    assert.deepEqual(Array.from(got), [3, 4, 5], be.name);
    assert.equal(got.buffer, buf.buffer, `${be.name}: no new array`);
    assert.deepEqual(Array.from(buf), [3, 4, 5, -1, -1, -1, -1, -1]);
    assert.throws(() => be.download(s, 0, 6, new Float32Array(5)), /cannot take 6 f32/);
    assert.throws(() => be.download(s, 0, 2, new Int32Array(4)), /Int32Array of 4/);
    const i = be.upload(Int32Array.from([7, 8]), "i32");
    assert.deepEqual(Array.from(be.download(i, 0, 2, new Int32Array(2))), [7, 8]);
  }
});
