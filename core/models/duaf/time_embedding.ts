/**
 * DuAF's time embedding (paper Eq. 3-6): an interval part W1·log(Δt+1)+b1, a learnable
 * sinusoidal timestamp part e_ts[2k] = sin(α_k t + β_k), e_ts[2k+1] = cos(α_k t + β_k), and
 * their combination e_time = W2 [e_inter; e_ts] + b2. Times are in days since the dataset's first
 * interaction, so float32 keeps sub-hour precision and α spans periods from a day to decades.
 */
import { Linear } from "../../nn/layers.ts";
import { Module } from "../../nn/module.ts";
import * as op from "../../ops/mod.ts";
import type { Rng } from "../../random.ts";
import { type Tensor, tensor } from "../../tensor.ts";

/** Δt per step (Δt_1 = 0; 0 on padding), from right-padded [B, L] times in days. */
export function timeGaps(
  times: Float32Array,
  lengths: Int32Array,
  b: number,
  l: number,
): Float32Array {
  const gaps = new Float32Array(b * l);
  for (let r = 0; r < b; r++) {
    for (let i = 1; i < lengths[r]; i++) {
      gaps[r * l + i] = Math.max(0, times[r * l + i] - times[r * l + i - 1]);
    }
  }
  return gaps;
}

export class TimeEmbedding extends Module {
  readonly interval: Linear;
  readonly alpha: Tensor;
  readonly beta: Tensor;
  readonly combine: Linear;

  constructor(readonly timeDim: number, readonly dim: number, rng: Rng, std: number) {
    super();
    const k = timeDim / 2;
    this.interval = this.child("interval", new Linear(1, timeDim, rng, { std }));
    // Frequencies 2π/P with periods P from 1 day to ~30 years, geometrically spaced (learnable).
    const alpha = Float32Array.from(
      { length: k },
      (_, i) => (2 * Math.PI) / Math.pow(10950, i / Math.max(1, k - 1)),
    );
    this.alpha = this.param("alpha", tensor(alpha, [k]));
    this.beta = this.param("beta", tensor(new Float32Array(k), [k]));
    this.combine = this.child("combine", new Linear(2 * timeDim, dim, rng, { std }));
  }

  /** t and gaps are [B, L] (days); returns the three embeddings, each [B, L, ·]. */
  forward(t: Tensor, gaps: Tensor): { inter: Tensor; ts: Tensor; time: Tensor } {
    const [b, l] = t.shape;
    const k = this.timeDim / 2;
    const inter = this.interval.forward(op.log(op.addScalar(op.reshape(gaps, [b, l, 1]), 1)));
    const angle = op.add(op.mul(op.reshape(t, [b, l, 1]), this.alpha), this.beta);
    const pair = op.concat([
      op.reshape(op.sin(angle), [b, l, k, 1]),
      op.reshape(op.cos(angle), [b, l, k, 1]),
    ], 3);
    const ts = op.reshape(pair, [b, l, 2 * k]);
    const time = this.combine.forward(op.concat([inter, ts], 2));
    return { inter, ts, time };
  }
}
