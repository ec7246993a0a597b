/**
 * op.linearCrossEntropy with ceProducts "bf16" (the native backend's C kernels on a CPU with
 * AVX-512 BF16): the loss and both gradients against a float64 reference of the same arithmetic
 * (each product's operands rounded to bfloat16), much closer to it than the float32 products
 * are; the same bits on one kernel thread and two, with a gradient and without; shapes with odd
 * rows, items and widths (the pairs' padding), two of the kernels' 256-item slices and a target
 * outside the table; one block of all items (the kept exponentials) and several (streamed); and
 * the clear refusal where the bf16 products cannot run.
 *
 * Where the CPU has AMX the products run on its tiles (the backend's description says so); a
 * second process repeats the checks with DUAF_CPU_AMX=off, on the AVX-512 BF16 instruction.
 *
 * A finite-difference check does not apply to the bf16 products themselves (their operands are
 * rounded to 8 significant bits, so the loss is a step function at that scale); the float32
 * path's checks are in ops_linear_ce.test.ts, and this file checks the bf16 gradients against
 * the exact gradient of the rounded arithmetic.
 */
import assert from "node:assert/strict";
import type { Backend } from "../core/backend.ts";
import { NativeBackend } from "../core/backends/native.ts";
import { WasmBackend } from "../core/backends/wasm/wasm_backend.ts";
import { UsageError } from "../core/errors.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { backward, noGrad, tensor, tidy, withBackend } from "../core/tensor.ts";

const opened = await NativeBackend.open({ threads: 1 });
const native = "unavailable" in opened ? null : opened;
const openedTwo = await NativeBackend.open({ threads: 2 });
const nativeTwo = "unavailable" in openedTwo ? null : openedTwo;
const hasBf16 = native?.productsBf16 === true && nativeTwo?.productsBf16 === true;
const wasm = await WasmBackend.create();

/** x rounded to bfloat16 (nearest, ties to even), as the instruction converts. */
function bf16(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  const r = (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
  return new Float32Array(new Uint32Array([r >>> 0]).buffer)[0];
}

function problem(seed: number, rows: number, items: number, d: number) {
  const r = new Rng(seed);
  const h = Float32Array.from({ length: rows * d }, () => r.normal());
  const table = Float32Array.from({ length: items * d }, () => r.normal() * 0.5);
  const targets = Int32Array.from({ length: rows }, () => r.int(items));
  targets[rows - 1] = items - 1;
  return { h, table, targets, rows, items, d };
}
type Problem = ReturnType<typeof problem>;

interface Result {
  loss: number;
  dh: Float64Array | Float32Array;
  dt: Float64Array | Float32Array;
}

/** Mean CE and its gradients with every product on bf16 operands, in float64 otherwise. */
function reference(p: Problem): Result {
  const { rows, items, d } = p;
  const h = p.h.map(bf16), e = p.table.map(bf16);
  const dh = new Float64Array(rows * d), dt = new Float64Array(items * d);
  let loss = 0;
  const z = new Float64Array(items);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let j = 0; j < items; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += h[r * d + k] * e[j * d + k];
      z[j] = s;
      max = Math.max(max, s);
    }
    let sum = 0;
    for (let j = 0; j < items; j++) sum += Math.exp(z[j] - max);
    const lse = max + Math.log(sum);
    loss += (lse - z[p.targets[r]]) / rows;
    for (let j = 0; j < items; j++) {
      const g = bf16((Math.exp(z[j] - lse) - (j === p.targets[r] ? 1 : 0)) / rows);
      if (g === 0) continue;
      for (let k = 0; k < d; k++) {
        dh[r * d + k] += g * e[j * d + k];
        dt[j * d + k] += g * h[r * d + k];
      }
    }
  }
  return { loss, dh, dt };
}

/** Loss and gradients in blocks of `block` items (default: one block of all, the kept path). */
function step(
  be: Backend,
  p: Problem,
  products: op.CeProducts,
  grad = true,
  block = p.items,
): Result {
  return withBackend(be, () =>
    tidy(() => {
      const h = tensor(p.h, [p.rows, p.d]);
      const table = tensor(p.table, [p.items, p.d]);
      const targets = tensor(p.targets, [p.rows], "i32");
      if (!grad) {
        const loss = noGrad(() => op.linearCrossEntropy(h, table, targets, block, products));
        return { loss: loss.item(), dh: new Float32Array(0), dt: new Float32Array(0) };
      }
      h.requiresGrad = true;
      table.requiresGrad = true;
      const loss = op.linearCrossEntropy(h, table, targets, block, products);
      backward(loss);
      const out = { loss: loss.item(), dh: h.grad!.toFloat32(), dt: table.grad!.toFloat32() };
      h.grad!.dispose();
      table.grad!.dispose();
      return out;
    }));
}

/** ||got - want|| / ||want||. */
function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num / den);
}

// Odd rows and items (a pair padded at the end of each), two item blocks of the kernels' 256,
// an odd width, and rows enough for the two threads' halves.
const SHAPES: [number, number, number, number][] = [
  [1, 13, 301, 20],
  [2, 64, 700, 7],
  [3, 150, 257, 64],
];
/** Item blocks per shape: one of all items (the kept path), and blocks that are streamed: one
 * odd and not a multiple of the 256-item slices, one of a slice and a part. */
const BLOCKS = (items: number) => [items, 99, 300].filter((b, i) => i === 0 || b < items);

Deno.test({
  name: "linearCrossEntropy bf16: the rounded arithmetic's loss and gradients, far from float32's",
  ignore: !hasBf16,
  fn() {
    for (const [seed, rows, items, d] of SHAPES) {
      const p = problem(seed, rows, items, d);
      const want = reference(p);
      for (const block of BLOCKS(items)) {
        const got = step(native!, p, "bf16", true, block);
        const fp32 = step(native!, p, "fp32", true, block);
        const what = `[${rows} x ${d}] against ${items} items in blocks of ${block}`;
        assert.ok(Math.abs(got.loss - want.loss) < 1e-5 * want.loss, `${what}: loss`);
        for (const key of ["dh", "dt"] as const) {
          const e = relError(got[key], want[key]);
          const e32 = relError(fp32[key], want[key]);
          // Float32 sums in another order leave ~1e-7 (seen: 6e-8 to 9e-7); products on float32
          // operands differ from the reference by ~2e-3.
          assert.ok(e < 1e-5, `${what}: ${key} ${e} from the bf16 reference`);
          assert.ok(e32 > 1e-4, `${what}: ${key} float32 ${e32} vs bf16 ${e}: the bf16 path ran`);
        }
      }
    }
  },
});

Deno.test({
  name:
    "linearCrossEntropy bf16: the same bits on one kernel thread and two, with a gradient or without",
  ignore: !hasBf16,
  fn() {
    for (const [seed, rows, items, d] of SHAPES) {
      const p = problem(seed, rows, items, d);
      for (const block of BLOCKS(items)) {
        const one = step(native!, p, "bf16", true, block);
        const two = step(nativeTwo!, p, "bf16", true, block);
        assert.equal(two.loss, one.loss);
        assert.deepEqual(two.dh, one.dh);
        assert.deepEqual(two.dt, one.dt);
        assert.equal(step(nativeTwo!, p, "bf16", false, block).loss, one.loss);
      }
    }
  },
});

/** Where the products run on AMX tiles, the AVX-512 BF16 tile is checked in a second process. */
const onAmx = hasBf16 && native!.description.includes("bf16 products on AMX tiles");

Deno.test({
  name: "linearCrossEntropy bf16: with DUAF_CPU_AMX=off, the same checks on AVX-512 BF16",
  ignore: !onAmx,
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "test",
        "-A",
        "--filter",
        "/rounded arithmetic|same bits/",
        new URL(import.meta.url).pathname,
      ],
      env: { DUAF_CPU_AMX: "off", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /ok \| 2 passed \| 0 failed/, text);
  },
});

Deno.test("linearCrossEntropy bf16: refused in one line where it cannot run", () => {
  const p = problem(4, 8, 40, 8);
  assert.throws(
    () => step(wasm, p, "bf16"),
    (e: unknown) =>
      e instanceof UsageError && /ceProducts=bf16 needs the native backend/.test(e.message),
  );
  assert.throws(
    () => step(wasm, p, "bf16", true, 16),
    (e: unknown) =>
      e instanceof UsageError && /ceProducts=bf16 needs the native backend/.test(e.message),
  );
});
