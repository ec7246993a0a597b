/**
 * `deno task bench lce [--rows R] [--items N] [--dim D] [--rounds K]`: the full cross-entropy over
 * an item table on the native backend's two kernel threads, as separate calls (the logits GEMM,
 * the cross-entropy rows keeping exponentials; the gradient rows and the two gradient GEMMs) and
 * fused (Backend.linearCrossEntropyKept and its Grad), medians of K rounds each. "bits" compares
 * the fused outputs with the separate calls' (loss parts, dh, dtable). Where the CPU has AVX-512
 * BF16, then the fused call with bf16 products (ceProducts=bf16) against the float32 one, with
 * the relative difference of their outputs. Defaults: a Beauty prefix step, [2048 x 64] against
 * [12102 x 64].
 *
 * `--block B` (below the item count): the chunked path instead, in blocks of B items, as separate
 * calls (per block the logits GEMM into a [R x B] scratch and the cross-entropy rows; in the
 * backward the logits again, the gradient rows and the two gradient GEMMs) and streamed
 * (Backend.linearCrossEntropyBlocks and its Grad), then the streamed call with bf16 products.
 * For a Beauty x10 prefix step: `--items 121010 --block 4096 --rounds 3`.
 */
import { parseArgs } from "node:util";
import { gemmArgs } from "../core/backend.ts";
import { NativeBackend } from "../core/backends/native.ts";
import { Rng } from "../core/random.ts";
import { medianMs } from "./measure.ts";

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "2048" },
    items: { type: "string", default: "12102" },
    dim: { type: "string", default: "64" },
    rounds: { type: "string", default: "9" },
    block: { type: "string", default: "0" },
  },
});
const [rows, items, d, rounds] = [values.rows, values.items, values.dim, values.rounds].map(Number);
const block = Number(values.block);
const be = await NativeBackend.open({ threads: 2 });
if ("unavailable" in be) throw new Error(`native backend: ${be.unavailable}`);
console.log(`backend: native (${be.description})`);
const nb: NativeBackend = be;
const rng = new Rng(1);
const h = be.upload(Float32Array.from({ length: rows * d }, () => rng.normal()), "f32");
const table = be.upload(Float32Array.from({ length: items * d }, () => 0.1 * rng.normal()), "f32");
const targets = be.upload(Int32Array.from({ length: rows }, () => rng.int(items)), "i32");
const w = be.upload(new Float32Array(rows).fill(1 / rows), "f32");
const median = (f: () => void): number => medianMs([f], rounds)[0];
if (block > 0 && block < items) {
  benchBlocks();
  be.dispose();
  Deno.exit(0);
}
const z = be.alloc(rows * items, "f32");
const [lse, picked, shift] = [0, 1, 2].map(() => be.alloc(rows, "f32"));
const dh = be.alloc(rows * d, "f32"), dtable = be.alloc(items * d, "f32");
const args = { h, table, targets, z, lse, picked, shift, rows, items, d };

const separateForward = () => {
  be.gemm(gemmArgs(h, table, z, rows, items, d, { transB: true }));
  be.crossEntropyBlock(z, targets, lse, picked, rows, items, 0, true, shift);
};
const separateBackward = () => {
  be.crossEntropyBlockGrad(z, targets, lse, w, rows, items, 0, shift);
  be.gemm(gemmArgs(z, table, dh, rows, d, items, {}));
  be.gemm(gemmArgs(z, h, dtable, items, d, rows, { transA: true }));
};
const fusedForward = () => {
  if (!be.linearCrossEntropyKept(args)) {
    throw new Error("not fused here: the C GEMM takes every product only with AVX-512");
  }
};
const fusedBackward = () => {
  if (!be.linearCrossEntropyKeptGrad({ ...args, w, dh, dtable })) throw new Error("not fused");
};
const outputs = () => [lse, picked, shift, dh, dtable].map((s) => be.download(s) as Float32Array);
const same = (a: Float32Array[], b: Float32Array[]) =>
  a.every((x, i) =>
    new Uint32Array(x.buffer).every((v, j) => v === new Uint32Array(b[i].buffer)[j])
  );

separateForward();
separateBackward();
const want = outputs();
fusedForward();
fusedBackward();
const bits = same(outputs(), want) ? "same" : "DIFFERENT";
// Each backward reads the forward's exponentials: time the separate one on a fresh forward each
// round (the forward's time subtracted).
const sf = median(separateForward);
const sfb = median(() => (separateForward(), separateBackward()));
const ff = median(fusedForward);
const ffb = median(() => (fusedForward(), fusedBackward()));
console.log(
  `| [${rows} x ${d}] against [${items} x ${d}], two threads | separate ms | fused ms | fused / separate | bits |`,
);
console.log("|---|---|---|---|---|");
console.log(
  `| forward | ${sf.toFixed(2)} | ${ff.toFixed(2)} | ${(ff / sf).toFixed(2)}x | ${bits} |`,
);
console.log(
  `| backward | ${(sfb - sf).toFixed(2)} | ${(ffb - ff).toFixed(2)} | ${
    ((ffb - ff) / (sfb - sf)).toFixed(2)
  }x | ${bits} |`,
);
// The bf16 products (ceProducts=bf16) against the fused float32 call, where the CPU has them; the
// largest relative difference of dh and dtable from the float32 ones, and its loss's.
if (be.productsBf16) {
  const bf = { ...args, bf16: true };
  const bfForward = () => be.linearCrossEntropyKept(bf);
  const bfBackward = () => be.linearCrossEntropyKeptGrad({ ...bf, w, dh, dtable });
  fusedForward();
  fusedBackward();
  const f32 = outputs();
  bfForward();
  bfBackward();
  const b16 = outputs();
  const relDiff = (i: number) => {
    let num = 0, den = 0;
    for (let j = 0; j < f32[i].length; j++) {
      num += (b16[i][j] - f32[i][j]) ** 2;
      den += f32[i][j] ** 2;
    }
    return Math.sqrt(num / den).toExponential(1);
  };
  const bff = median(bfForward);
  const bffb = median(() => (bfForward(), bfBackward()));
  console.log("");
  console.log(
    "| bf16 products (ceProducts=bf16) | fused float32 ms | fused bf16 ms | bf16 / float32 | relative difference |",
  );
  console.log("|---|---|---|---|---|");
  console.log(
    `| forward | ${ff.toFixed(2)} | ${bff.toFixed(2)} | ${(bff / ff).toFixed(2)}x | lse ${
      relDiff(0)
    } |`,
  );
  console.log(
    `| backward | ${(ffb - ff).toFixed(2)} | ${(bffb - bff).toFixed(2)} | ${
      ((bffb - bff) / (ffb - ff)).toFixed(2)
    }x | dh ${relDiff(3)}, dtable ${relDiff(4)} |`,
  );
}
be.dispose();

/** The chunked path: separate calls against the streamed ones, then the streamed bf16 call. */
function benchBlocks(): void {
  const z = nb.alloc(rows * block, "f32");
  const [lse, picked] = [0, 1].map(() => nb.alloc(rows, "f32"));
  const dh = nb.alloc(rows * d, "f32"), dtable = nb.alloc(items * d, "f32");
  const blocks = Array.from({ length: Math.ceil(items / block) }, (_, i) => i * block);
  const logits = (j0: number, cols: number) =>
    nb.gemm(gemmArgs(h, table, z, rows, cols, d, { transB: true, bOffset: j0 * d }));
  const separateForward = () => {
    for (const j0 of blocks) {
      const cols = Math.min(block, items - j0);
      logits(j0, cols);
      nb.crossEntropyBlock(z, targets, lse, picked, rows, cols, j0, j0 === 0);
    }
  };
  const separateBackward = () => {
    for (const j0 of blocks) {
      const cols = Math.min(block, items - j0);
      logits(j0, cols);
      nb.crossEntropyBlockGrad(z, targets, lse, w, rows, cols, j0);
      nb.gemm(gemmArgs(z, table, dh, rows, d, cols, { bOffset: j0 * d, beta: j0 === 0 ? 0 : 1 }));
      nb.gemm(gemmArgs(z, h, dtable, cols, d, rows, { transA: true, cOffset: j0 * d }));
    }
  };
  const args = { h, table, targets, lse, picked, rows, items, d, block };
  const grads = { w, dh, dtable };
  const streamed = (bf16: boolean) => ({
    forward: () => {
      if (!nb.linearCrossEntropyBlocks({ ...args, bf16 })) {
        throw new Error("not streamed here: the C GEMM takes every product only with AVX-512");
      }
    },
    backward: () => {
      if (!nb.linearCrossEntropyBlocksGrad({ ...args, ...grads, bf16 })) throw new Error("refused");
    },
  });
  const outputs = () => [lse, picked, dh, dtable].map((s) => nb.download(s) as Float32Array);
  separateForward();
  separateBackward();
  const want = outputs();
  const fp32 = streamed(false);
  fp32.forward();
  fp32.backward();
  const got = outputs();
  const bits =
    got.every((x, i) =>
        new Uint32Array(x.buffer).every((v, j) => v === new Uint32Array(want[i].buffer)[j])
      )
      ? "same"
      : "DIFFERENT";
  const time = (f: { forward: () => void; backward: () => void }) => {
    const fw = median(f.forward);
    return [fw, median(f.backward)];
  };
  const [sf, sb] = time({ forward: separateForward, backward: separateBackward });
  const [ff, fb] = time(fp32);
  console.log(
    `| [${rows} x ${d}] against [${items} x ${d}] in blocks of ${block}, two threads | separate ms | streamed ms | streamed / separate | bits |`,
  );
  console.log("|---|---|---|---|---|");
  console.log(
    `| forward | ${sf.toFixed(1)} | ${ff.toFixed(1)} | ${(ff / sf).toFixed(2)}x | ${bits} |`,
  );
  console.log(
    `| backward | ${sb.toFixed(1)} | ${fb.toFixed(1)} | ${(fb / sb).toFixed(2)}x | ${bits} |`,
  );
  if (!nb.productsBf16) return;
  const [bf, bb] = time(streamed(true));
  console.log("");
  console.log("| streamed, bf16 products | float32 ms | bf16 ms | bf16 / float32 |");
  console.log("|---|---|---|---|");
  console.log(`| forward | ${ff.toFixed(1)} | ${bf.toFixed(1)} | ${(bf / ff).toFixed(2)}x |`);
  console.log(`| backward | ${fb.toFixed(1)} | ${bb.toFixed(1)} | ${(bb / fb).toFixed(2)}x |`);
}
