/** The wasm tensor arena (best fit, coalescing, deterministic reuse, growth) and kernel loading. */
import { gemmArgs } from "../core/backend.ts";
import assert from "node:assert/strict";
import { Arena, blockBytes, PAGE_BYTES } from "../core/backends/wasm/arena.ts";
import { kernelUrl, runtimeHasRelaxedSimd } from "../core/backends/wasm/kernels.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";

function memory(pages = 1): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: pages, maximum: 65536, shared: true });
}

Deno.test("arena: 64-byte blocks, best-fit reuse with splitting, same calls give same addresses", () => {
  assert.equal(blockBytes(0), 64);
  assert.equal(blockBytes(64), 64);
  assert.equal(blockBytes(65), 128);
  const trace = () => {
    const arena = new Arena(memory(), PAGE_BYTES);
    const a = arena.alloc(100); // 128
    const b = arena.alloc(5000); // 5056
    const c = arena.alloc(100); // 128
    const guard = arena.alloc(64); // keeps c off the top
    arena.free(b, 5000);
    const small = arena.alloc(1000); // best fit: b's hole, split
    const rest = arena.alloc(4000); // the rest of b's hole
    arena.free(a, 100);
    const again = arena.alloc(128); // exact fit: a's block
    return { ptrs: [a, b, c, guard, small, rest, again], inUse: arena.bytesInUse };
  };
  const t1 = trace();
  assert.deepEqual(t1, trace());
  const [a, b, c, , small, rest, again] = t1.ptrs;
  for (const p of t1.ptrs) assert.equal(p % 64, 0);
  assert.equal(small, b);
  assert.equal(rest, b + 1024);
  assert.ok(rest + 4032 <= c);
  assert.equal(again, a);
});

Deno.test("arena: freed neighbours coalesce, and a free run at the top returns to the bump region", () => {
  const arena = new Arena(memory(), PAGE_BYTES);
  const keep = arena.alloc(64);
  const start = arena.top;
  const blocks = [100, 3000, 64, 70000, 640].map((n) => [arena.alloc(n), n]);
  // Free in a scrambled order: the holes must merge into one and the top come back down.
  for (const i of [1, 3, 0, 4, 2]) arena.free(blocks[i][0], blocks[i][1]);
  assert.equal(arena.top, start);
  assert.equal(arena.freeBlocks, 0);
  // Varying shapes step after step do not grow the arena (the failure mode of size classes).
  for (let step = 0; step < 50; step++) {
    const live = Array.from({ length: 20 }, (_, i) => {
      const n = 1000 + ((step * 7919 + i * 104729) % 200000);
      return [arena.alloc(n), n];
    });
    for (const [p, n] of live.reverse()) arena.free(p, n);
  }
  assert.equal(arena.top, start);
  assert.equal(arena.bytesInUse, 64);
  arena.free(keep, 64);
});

Deno.test("arena: grows the memory on demand and refreshes its views", () => {
  const mem = memory(1);
  const arena = new Arena(mem, PAGE_BYTES);
  const p = arena.alloc(3 * PAGE_BYTES + 10);
  assert.ok(mem.buffer.byteLength >= p + 3 * PAGE_BYTES + 10);
  arena.f32[(p >> 2) + 3 * PAGE_BYTES / 4] = 1.5;
  assert.equal(new Float32Array(mem.buffer)[(p >> 2) + 3 * PAGE_BYTES / 4], 1.5);
});

Deno.test("wasm backend: data survives memory growth", async () => {
  const be = await WasmBackend.create({ threads: 1 });
  const small = be.upload(Float32Array.from([1, 2, 3]), "f32");
  const pages = be.memory.buffer.byteLength / PAGE_BYTES;
  const big = be.alloc(64 * PAGE_BYTES, "f32"); // 16 MiB of floats forces growth
  assert.ok(be.memory.buffer.byteLength / PAGE_BYTES > pages);
  be.fill(big, 2);
  assert.deepEqual(Array.from(be.download(small)), [1, 2, 3]);
  assert.deepEqual(Array.from(be.download(big, 64 * PAGE_BYTES - 2)), [2, 2]);
});

Deno.test("relaxed SIMD: the probe agrees with the committed relaxed build; both builds run", async () => {
  const relaxedBytes = await Deno.readFile(kernelUrl("relaxed"));
  const simdBytes = await Deno.readFile(kernelUrl("simd"));
  // f32x4.relaxed_madd in its final encoding is in the relaxed build only
  const hasMadd = (b: Uint8Array) =>
    b.some((v, i) => v === 0xfd && b[i + 1] === 0x85 && b[i + 2] === 0x02);
  assert.ok(hasMadd(relaxedBytes));
  assert.ok(!hasMadd(simdBytes));
  assert.equal(runtimeHasRelaxedSimd(), WebAssembly.validate(relaxedBytes));
  // Deno enables standard relaxed SIMD by default, so the fast build is the default here.
  assert.equal(runtimeHasRelaxedSimd(), true);
  assert.ok(WebAssembly.validate(simdBytes));
  const results: Float32Array[] = [];
  for (const variant of ["relaxed", "simd"] as const) {
    const be = await WasmBackend.create({ threads: 1, variant });
    assert.equal(be.variant, variant);
    const a = be.upload(Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)), "f32");
    const c = be.alloc(64, "f32");
    be.gemm(gemmArgs(a, a, c, 8, 8, 8, { transB: true }));
    results.push(be.download(c) as Float32Array);
  }
  for (let i = 0; i < 64; i++) assert.ok(Math.abs(results[0][i] - results[1][i]) < 1e-5);
  const defaultBackend = await WasmBackend.create({ threads: 1 });
  assert.equal(defaultBackend.variant, "relaxed");
});
