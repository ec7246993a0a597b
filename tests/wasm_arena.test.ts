/** The wasm tensor arena (size classes, deterministic reuse, growth) and kernel loading. */
import assert from "node:assert/strict";
import { Arena, classBytes, PAGE_BYTES } from "../core/backends/wasm/arena.ts";
import { kernelUrl, runtimeHasRelaxedSimd } from "../core/backends/wasm/kernels.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";

function memory(pages = 1): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: pages, maximum: 65536, shared: true });
}

Deno.test("arena size classes: 64-byte multiples, at most 25% (+64 B) over the request", () => {
  let prev = 0;
  for (let bytes = 1; bytes < 1 << 22; bytes = Math.ceil(bytes * 1.37) + 1) {
    const c = classBytes(bytes);
    assert.equal(c % 64, 0, `class of ${bytes}`);
    assert.ok(c >= bytes && c <= bytes * 1.25 + 64, `class of ${bytes} is ${c}`);
    assert.ok(c >= prev, "classes grow with the request");
    prev = c;
  }
  assert.equal(classBytes(0), 64);
  assert.equal(classBytes(4096), 4096);
  assert.equal(classBytes(4097), 5120);
});

Deno.test("arena: aligned blocks, LIFO reuse per class, same sequence gives same addresses", () => {
  const trace = () => {
    const arena = new Arena(memory(), PAGE_BYTES);
    const ptrs: number[] = [];
    const a = arena.alloc(100);
    const b = arena.alloc(5000);
    const c = arena.alloc(100);
    ptrs.push(a, b, c);
    arena.free(a, 100);
    arena.free(c, 90); // same class as 100
    ptrs.push(arena.alloc(70)); // takes c back (last freed)
    ptrs.push(arena.alloc(128)); // then a
    ptrs.push(arena.alloc(100)); // fresh block
    arena.free(b, 5000);
    ptrs.push(arena.alloc(4500)); // b's class (5120) again
    return { ptrs, inUse: arena.bytesInUse };
  };
  const t1 = trace();
  assert.deepEqual(t1, trace());
  const [a, b, c, c2, a2, d, b2] = t1.ptrs;
  for (const p of t1.ptrs) assert.equal(p % 64, 0);
  assert.equal(c2, c);
  assert.equal(a2, a);
  assert.ok(d > c && d !== a);
  assert.equal(b2, b);
  assert.equal(t1.inUse, 128 * 3 + 5120);
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
    be.gemm({
      a,
      b: a,
      c,
      m: 8,
      n: 8,
      k: 8,
      transA: false,
      transB: true,
      batch: 1,
      strideA: 0,
      strideB: 0,
      strideC: 0,
      aOffset: 0,
      bOffset: 0,
      cOffset: 0,
      alpha: 1,
      beta: 0,
    });
    results.push(be.download(c) as Float32Array);
  }
  for (let i = 0; i < 64; i++) assert.ok(Math.abs(results[0][i] - results[1][i]) < 1e-5);
  const defaultBackend = await WasmBackend.create({ threads: 1 });
  assert.equal(defaultBackend.variant, "relaxed");
});
