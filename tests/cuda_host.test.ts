/**
 * The cuda backend's host side on a machine without a GPU: the binding opens the no-op stand-in
 * built from the same header (ffi/cuda/null_shim.c, host memory, kernels that do nothing), moves
 * bytes through real pointers and offsets, and a DuAF-MAT training step queues its whole work
 * without reading anything back. A read is a wait for the device: on the GPU it leaves the card
 * idle while the host prepares the rest of the step.
 *
 * Needs a C compiler (cc or $CC); without one the tests are ignored and the reason is printed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildNullShim } from "../ffi/cuda/build.ts";
import { CudaBackend, openCudaShim } from "../core/backends/cuda.ts";
import { Adam } from "../core/optim/adam.ts";
import { Rng } from "../core/random.ts";
import { LossLog } from "../core/train/loss_log.ts";
import { backward, tidy, withBackend } from "../core/tensor.ts";
import { batch, itemSide, model } from "./helpers/tiny_duaf.ts";

const dir = await Deno.makeTempDir({ prefix: "duaf-null-shim-" });
let backend: CudaBackend | null = null;
let why = "";
try {
  const lib = openCudaShim(await buildNullShim({ out: join(dir, "libduaf_null.so"), quiet: true }));
  if ("unavailable" in lib) why = lib.unavailable;
  else backend = new CudaBackend(lib);
} catch (e) {
  why = e instanceof Error ? e.message : String(e);
}
if (!backend) console.log(`cuda host tests ignored: ${why}`);
const ignore = backend === null;

/** Counts the calls that wait for the device. */
function countReads(be: CudaBackend): { reads: () => number } {
  let n = 0;
  const download = be.download.bind(be);
  const sumSquares = be.sumSquares.bind(be);
  be.download = (...a) => (n++, download(...a));
  be.sumSquares = (...a) => (n++, sumSquares(...a));
  return { reads: () => n };
}

Deno.test({
  name: "cuda host: uploads and downloads go through real pointers and element offsets",
  ignore,
  fn() {
    const be = backend!;
    const f = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5);
    const i32 = Int32Array.from({ length: 77 }, (_, i) => -i);
    const sf = be.upload(f, "f32");
    const si = be.upload(i32, "i32");
    assert.deepEqual(be.download(sf), f);
    assert.deepEqual(be.download(sf, 999, 1), f.subarray(999));
    assert.deepEqual(be.download(sf, 123, 400), f.subarray(123, 523));
    assert.deepEqual(be.download(si, 70), i32.subarray(70));
    const live = be.poolStats().live;
    be.free(sf);
    be.free(si);
    assert.equal(be.poolStats().live, live - 2);
    assert.throws(() => be.download(sf), /use of freed storage/);
  },
});

Deno.test({
  name: "cuda host: DuAF-MAT training steps read nothing back from the device",
  ignore,
  fn() {
    const be = backend!;
    withBackend(be, () => {
      const rng = new Rng(8);
      const m = model({ criticSteps: 2 }, itemSide(rng, true));
      const opt = new Adam(m.trainableParameters(), { lr: 1e-3, weightDecay: 0 });
      const log = new LossLog();
      const { reads } = countReads(be);
      for (let step = 0; step < 3; step++) {
        const b = batch(rng);
        const ctx = { training: true, rng };
        log.beginStep();
        tidy(() => {
          const out = m.loss(b, ctx);
          log.addWeighted(out.parts, 1);
          backward(out.total, undefined, { release: true });
        });
        tidy(() => {
          opt.step();
          opt.zeroGrad();
        });
        const extra = m.afterStep(b, ctx);
        log.addStep(extra);
        for (const t of Object.values(extra)) t.dispose();
      }
      assert.equal(reads(), 0, "device reads during the steps");
      const sums: Record<string, number> = {};
      log.drainInto(sums);
      assert.equal(reads(), 1, "the log reads once");
      assert.ok("main" in sums && "critic" in sums, `logged parts: ${Object.keys(sums)}`);
      log.dispose();
    });
  },
});

addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
