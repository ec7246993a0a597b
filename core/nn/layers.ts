/** Basic layers with torch parameter layouts (Linear weight is [out, in]). */
import * as op from "../ops/mod.ts";
import type { Rng } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { constant, normal } from "./init.ts";
import { Module } from "./module.ts";

/** y = x W^T + b. Weights start N(0, std), biases 0 (RecBole's initializer_range style). */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    rng: Rng,
    opts: { bias?: boolean; std?: number } = {},
  ) {
    super();
    this.weight = this.param("weight", normal([outFeatures, inFeatures], opts.std ?? 0.02, rng));
    this.bias = opts.bias === false ? null : this.param("bias", constant([outFeatures], 0));
  }
  forward(x: Tensor): Tensor {
    return op.linear(x, this.weight, this.bias);
  }
}

export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(readonly count: number, readonly dim: number, rng: Rng, std = 0.02) {
    super();
    this.weight = this.param("weight", normal([count, dim], std, rng));
  }
  forward(idx: Tensor): Tensor {
    return op.embedding(this.weight, idx);
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly dim: number, readonly eps: number) {
    super();
    this.weight = this.param("weight", constant([dim], 1));
    this.bias = this.param("bias", constant([dim], 0));
  }
  forward(x: Tensor): Tensor {
    return op.layerNorm(x, this.weight, this.bias, this.eps);
  }
  /**
   * forward(x + residual), or with `drop` forward(dropout(x) + residual): the dropout and the sum
   * formed inside the layer norm where the backend fuses them.
   */
  addForward(x: Tensor, residual: Tensor, drop?: { p: number; seed: number }): Tensor {
    return op.addLayerNorm(x, residual, this.weight, this.bias, this.eps, drop);
  }
}
