/**
 * torch.nn.GRU (batch_first, unidirectional, h0 = 0) composed from differentiable ops, with
 * torch's parameter names and gate layout so PyTorch state dicts load unchanged.
 *
 * weight_ih_l{k} [3H, I] and weight_hh_l{k} [3H, H] hold the gates as row blocks r, z, n:
 *   r  = σ(W_ir x + b_ir + W_hr h + b_hr)
 *   z  = σ(W_iz x + b_iz + W_hz h + b_hz)
 *   n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
 *   h' = (1 - z) ⊙ n + z ⊙ h
 * The input projection of every step is one matmul per layer; only the hidden projection runs
 * inside the time loop.
 */
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import { type Tensor, zeros } from "../tensor.ts";
import { uniform } from "./init.ts";
import { Module } from "./module.ts";

export interface GruConfig {
  inputSize: number;
  hiddenSize: number;
  numLayers: number;
  /** torch's `bias` flag: false drops all four bias vectors (RecBole GRU4Rec's setting). */
  bias: boolean;
}

export interface GruOutput {
  /** Last layer's hidden state at every step: [B, L, H]. */
  output: Tensor;
  /** Every layer's final hidden state: [numLayers, B, H] (torch's h_n). */
  hidden: Tensor;
}

/**
 * One GRU layer over x [B, L, I]; biases may be null. Returns the states of every step
 * [B, L, H] and the final state [B, H].
 */
export function gruLayer(
  x: Tensor,
  wIh: Tensor,
  wHh: Tensor,
  bIh: Tensor | null,
  bHh: Tensor | null,
): { output: Tensor; last: Tensor } {
  const [b, l] = x.shape;
  const h3 = wIh.shape[0];
  const hs = h3 / 3;
  let gi = op.matmul(x, wIh, false, true); // [B, L, 3H]
  if (bIh) gi = op.add(gi, bIh);
  let h = zeros([b, hs]);
  const steps: Tensor[] = [];
  for (let t = 0; t < l; t++) {
    const giT = op.reshape(op.slice(gi, 1, t, 1), [b, h3]);
    let gh = op.matmul(h, wHh, false, true); // [B, 3H]
    if (bHh) gh = op.add(gh, bHh);
    // r and z share one sigmoid over their adjacent row blocks.
    const rz = op.sigmoid(op.add(op.slice(giT, 1, 0, 2 * hs), op.slice(gh, 1, 0, 2 * hs)));
    const r = op.slice(rz, 1, 0, hs);
    const z = op.slice(rz, 1, hs, hs);
    const n = op.tanh(op.add(op.slice(giT, 1, 2 * hs, hs), op.mul(r, op.slice(gh, 1, 2 * hs, hs))));
    // (1 - z) n + z h, written with one fewer op.
    h = op.add(n, op.mul(z, op.sub(h, n)));
    steps.push(op.reshape(h, [b, 1, hs]));
  }
  return { output: op.concat(steps, 1), last: h };
}

export class Gru extends Module {
  readonly layers: { wIh: Tensor; wHh: Tensor; bIh: Tensor | null; bHh: Tensor | null }[] = [];

  /** Weights and biases start U(-1/√H, 1/√H), torch's nn.GRU initialisation. */
  constructor(readonly cfg: GruConfig, rng: Rng) {
    super();
    const h = cfg.hiddenSize;
    const bound = 1 / Math.sqrt(h);
    for (let k = 0; k < cfg.numLayers; k++) {
      const inSize = k === 0 ? cfg.inputSize : h;
      // Registration order is torch's named_parameters order: weight_ih, weight_hh, bias_ih, bias_hh.
      const wIh = this.param(`weight_ih_l${k}`, uniform([3 * h, inSize], bound, rng));
      const wHh = this.param(`weight_hh_l${k}`, uniform([3 * h, h], bound, rng));
      const bIh = cfg.bias ? this.param(`bias_ih_l${k}`, uniform([3 * h], bound, rng)) : null;
      const bHh = cfg.bias ? this.param(`bias_hh_l${k}`, uniform([3 * h], bound, rng)) : null;
      this.layers.push({ wIh, wHh, bIh, bHh });
    }
  }

  /** x [B, L, inputSize] (batch first). */
  forward(x: Tensor): GruOutput {
    let h = x;
    const finals: Tensor[] = [];
    for (const layer of this.layers) {
      const { output, last } = gruLayer(h, layer.wIh, layer.wHh, layer.bIh, layer.bHh);
      h = output;
      finals.push(op.reshape(last, [1, ...last.shape]));
    }
    return { output: h, hidden: op.concat(finals, 0) };
  }
}
