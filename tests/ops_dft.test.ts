/**
 * The DFT-as-matmul helpers (core/ops/dft.ts): finite-difference gradients, a direct O(n^2)
 * DFT in float64, and torch.fft's rfft / irfft (values and irfft's gradient) from the tedrec
 * golden fixture, for even n (a Nyquist bin) and odd n.
 */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import * as op from "../core/ops/mod.ts";
import { backward, tensor, tidy, withBackend } from "../core/tensor.ts";
import { Rng } from "../core/random.ts";
import { loadGolden } from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";
import { f64, gradCheck } from "./helpers/gradcheck.ts";

Deno.test("gradcheck: rfft, irfft and the complex product", () => {
  for (const n of [6, 7]) {
    const k = op.rfftBins(n);
    for (const norm of ["ortho", "backward", "forward"] as const) {
      gradCheck(`rfft re ${n} ${norm}`, [{ shape: [2, 3, n] }], ([x]) => op.rfft(x, norm).re);
      gradCheck(`rfft im ${n} ${norm}`, [{ shape: [2, 3, n] }], ([x]) => op.rfft(x, norm).im);
      gradCheck(
        `irfft ${n} ${norm}`,
        [{ shape: [2, 3, k] }, { shape: [2, 3, k] }],
        ([re, im]) => op.irfft({ re, im }, n, norm),
      );
    }
    gradCheck(
      `filter ${n}`,
      [{ shape: [2, 3, n] }, { shape: [2, 3, n] }, { shape: [3, k] }, { shape: [3, k] }],
      ([a, b, wr, wi]) => {
        const fa = op.rfft(a, "ortho");
        const mixed = op.complexMul(op.complexMul(fa, op.rfft(b, "ortho")), { re: wr, im: wi });
        return op.irfft(mixed, n, "ortho");
      },
    );
  }
});

/** Σ_t x_t e^{-2πikt/n} for k = 0..n/2, in float64. */
function directRfft(x: number[]): { re: number[]; im: number[] } {
  const n = x.length;
  const re: number[] = [];
  const im: number[] = [];
  for (let k = 0; k <= Math.floor(n / 2); k++) {
    let r = 0;
    let i = 0;
    for (let t = 0; t < n; t++) {
      r += x[t] * Math.cos((2 * Math.PI * k * t) / n);
      i -= x[t] * Math.sin((2 * Math.PI * k * t) / n);
    }
    re.push(r);
    im.push(i);
  }
  return { re, im };
}

Deno.test("dft: rfft equals a direct float64 DFT; irfft inverts it (every norm)", () => {
  const rng = new Rng(3);
  withBackend(f64, () => {
    for (const n of [1, 2, 5, 8, 50]) {
      const x = Array.from({ length: 4 * n }, () => rng.normal());
      tidy(() => {
        for (const norm of ["backward", "ortho", "forward"] as const) {
          const s = norm === "backward" ? 1 : norm === "ortho" ? 1 / Math.sqrt(n) : 1 / n;
          const spec = op.rfft(tensor(x, [4, n]), norm);
          const re = spec.re.toArray();
          const im = spec.im.toArray();
          const k = op.rfftBins(n);
          for (let r = 0; r < 4; r++) {
            const want = directRfft(x.slice(r * n, (r + 1) * n));
            assertClose(
              `re n=${n} ${norm}`,
              re.slice(r * k, (r + 1) * k),
              want.re.map((v) => v * s),
              1e-6,
              1e-6,
            );
            assertClose(
              `im n=${n} ${norm}`,
              im.slice(r * k, (r + 1) * k),
              want.im.map((v) => v * s),
              1e-6,
              1e-6,
            );
          }
          const back = op.irfft(spec, n, norm).toArray();
          assertClose(`round trip n=${n} ${norm}`, back, x, 1e-6, 1e-6);
        }
      });
    }
  });
});

Deno.test("dft: rfft, irfft and irfft's gradient match torch.fft (golden)", () => {
  const g = loadGolden("tedrec");
  const t = (name: string) => g.tensors[name];
  withBackend(new JsBackend(), () => {
    for (const n of [6, 7]) {
      for (const norm of ["ortho", "backward"] as const) {
        tidy(() => {
          const x = t(`dft${n}.x`);
          const spec = op.rfft(tensor(x.data, x.shape), norm);
          assertClose(`rfft re ${n}`, spec.re.toFloat32(), t(`dft${n}.rfft_${norm}_re`).data);
          assertClose(`rfft im ${n}`, spec.im.toFloat32(), t(`dft${n}.rfft_${norm}_im`).data);
          const sr = t(`dft${n}.spec_re`);
          const re = tensor(sr.data, sr.shape);
          const im = tensor(t(`dft${n}.spec_im`).data, sr.shape);
          re.requiresGrad = true;
          im.requiresGrad = true;
          const y = op.irfft({ re, im }, n, norm);
          assertClose(`irfft ${n} ${norm}`, y.toFloat32(), t(`dft${n}.irfft_${norm}`).data);
          const w = t(`dft${n}.w`);
          backward(op.sum(op.mul(y, tensor(w.data, w.shape))));
          assertClose(
            `grad re ${n}`,
            re.grad!.toFloat32(),
            t(`dft${n}.irfft_${norm}_grad_re`).data,
          );
          const gim = im.grad!.toFloat32();
          assertClose(`grad im ${n}`, gim, t(`dft${n}.irfft_${norm}_grad_im`).data);
          // The DC bin's imaginary part (and the Nyquist bin's for even n) has no effect.
          const k = op.rfftBins(n);
          for (let r = 0; r < gim.length / k; r++) {
            assert.equal(gim[r * k], 0);
            if (n % 2 === 0) assert.equal(gim[r * k + k - 1], 0);
          }
        });
      }
    }
  });
});
