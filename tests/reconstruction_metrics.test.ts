// The reconstruction metrics on vectors whose answers are known by hand.
import assert from "node:assert/strict";
import { reconstructionMetrics } from "../core/eval/reconstruction.ts";

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-6, `${a} != ${b}`);

Deno.test("reconstruction metrics: centred cosines and error ratios against the mean guess", () => {
  // Two hidden items in 2-d; the visible items average to (1, 1).
  const m = reconstructionMetrics({
    dim: 2,
    items: new Int32Array([5, 7]),
    real: new Float32Array([2, 1, 1, 3]),
    // Item 5: exactly its real vector. Item 7: the mirror of its departure from the centre.
    filled: new Float32Array([2, 1, 1, -1]),
    meanOfVisible: new Float32Array([1, 1]),
    textNeighbour: new Float32Array([1, 1, 1, 2]),
  });
  assert.equal(m["recon.items"], 2);
  // Plain cosines: (1 + (1 - 3) / (sqrt2 * sqrt10)) / 2.
  close(m["recon.filled"], (1 - 2 / Math.sqrt(20)) / 2);
  close(m["recon.meanOfVisible"], (3 / Math.sqrt(10) + 4 / Math.sqrt(20)) / 2);
  // Centred: item 5 points the real way (1), item 7 the opposite way (-1).
  close(m["recon.centred.filled"], 0);
  // The text neighbour of item 5 is the centre itself (cosine 0), of item 7 the real direction.
  close(m["recon.centred.textNeighbour"], 0.5);
  // Squared errors: filled 0 and 16, the mean guess 1 and 4, the text neighbour 1 and 1.
  close(m["recon.errorVsMean.filled"], 16 / 5);
  close(m["recon.errorVsMean.textNeighbour"], 2 / 5);
});
