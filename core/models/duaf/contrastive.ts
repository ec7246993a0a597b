/** InfoNCE over in-batch pairs (paper Eq. 19 and 22): row i of a and row i of b are positives. */
import * as op from "../../ops/mod.ts";
import { type Tensor, tensor } from "../../tensor.ts";

/** Mean CE of cos(a_i, b_j)/τ against the diagonal; `symmetric` averages both directions. */
export function infoNce(a: Tensor, b: Tensor, tau: number, symmetric = false): Tensor {
  const n = a.shape[0];
  const logits = op.scale(op.cosineSimilarity(a, b), 1 / tau);
  const labels = tensor(Int32Array.from({ length: n }, (_, i) => i), [n], "i32");
  const ab = op.crossEntropy(logits, labels);
  if (!symmetric) return ab;
  const ba = op.crossEntropy(op.transpose(logits, [1, 0]), labels);
  return op.scale(op.add(ab, ba), 0.5);
}
