/**
 * `deno task bench lce [--rows R] [--items N] [--dim D] [--rounds K]`: the full cross-entropy over
 * an item table on the native backend's two kernel threads, as separate calls (the logits GEMM,
 * the cross-entropy rows keeping exponentials; the gradient rows and the two gradient GEMMs) and
 * fused (Backend.linearCrossEntropyKept and its Grad), medians of K rounds each. "bits" compares
 * the fused outputs with the separate calls' (loss parts, dh, dtable). Where the CPU has AVX-512
 * BF16, then the fused call with bf16 products (ceProducts=bf16) against the float32 one, with
 * the relative difference of their outputs. Defaults: a Beauty prefix step, [2048 x 64] against
 * [12102 x 64].
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
  },
});
const [rows, items, d, rounds] = [values.rows, values.items, values.dim, values.rounds].map(Number);
const be = await NativeBackend.open({ threads: 2 });
if ("unavailable" in be) throw new Error(`native backend: ${be.unavailable}`);
console.log(`backend: native (${be.description})`);
const rng = new Rng(1);
const h = be.upload(Float32Array.from({ length: rows * d }, () => rng.normal()), "f32");
const table = be.upload(Float32Array.from({ length: items * d }, () => 0.1 * rng.normal()), "f32");
const targets = be.upload(Int32Array.from({ length: rows }, () => rng.int(items)), "i32");
const w = be.upload(new Float32Array(rows).fill(1 / rows), "f32");
const z = be.alloc(rows * items, "f32");
const [lse, picked, shift] = [0, 1, 2].map(() => be.alloc(rows, "f32"));
const dh = be.alloc(rows * d, "f32"), dtable = be.alloc(items * d, "f32");
const args = { h, table, targets, z, lse, picked, shift, rows, items, d };

const median = (f: () => void): number => medianMs([f], rounds)[0];
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
