/**
 * MAT-MoE (paper Eq. 9-16): a mixture of generator experts that synthesises an item's visual
 * embedding from its text embedding and noise, routed by the item's category, and a critic that
 * tells real (text, visual) pairs from generated ones.
 *
 *   G_i(e_t, z) = W2 LeakyReLU(W1 [e_t; z] + b1) + b2,  z ~ N(0, I)
 *   g = softmax(W_g e_c + b_g),  e_syn = Σ_i g_i G_i(e_t, z)
 *   D(e_t, e_v) = W4 [LeakyReLU(W3 e_t + b3); e_v] + b4
 *
 * Gradient penalty. D's logit is linear in e_v, so ∂D/∂e_v = W4_v (the e_v block of W4) for every
 * interpolate x̂. We penalise the logit, WGAN-GP style: (||W4_v|| - 1)^2, which keeps the critic
 * 1-Lipschitz in e_v without any double-backward. The sigmoid variant, mean (σ'(D(x̂))·||W4_v|| - 1)^2,
 * is available too, but since σ' <= 1/4 its target pushes ||W4_v|| >= 4, i.e. it rewards a steep
 * critic. Both closed forms are checked against torch's double-backward (fixtures/golden/mat_moe.json).
 */
import { Embedding, Linear } from "../../nn/layers.ts";
import { Module, ModuleList } from "../../nn/module.ts";
import * as op from "../../ops/mod.ts";
import type { Rng } from "../../random.ts";
import { type Tensor, tensor } from "../../tensor.ts";

const SLOPE = 0.2;

export interface MatMoeConfig {
  dim: number;
  noiseDim: number;
  experts: number;
  expertHidden: number;
  categories: number;
  categoryDim: number;
  criticHidden: number;
  initStd: number;
}

class Expert extends Module {
  readonly w1: Linear;
  readonly w2: Linear;
  constructor(cfg: MatMoeConfig, rng: Rng) {
    super();
    this.w1 = this.child(
      "W1",
      new Linear(cfg.dim + cfg.noiseDim, cfg.expertHidden, rng, { std: cfg.initStd }),
    );
    this.w2 = this.child("W2", new Linear(cfg.expertHidden, cfg.dim, rng, { std: cfg.initStd }));
  }
  forward(x: Tensor): Tensor {
    return this.w2.forward(op.leakyRelu(this.w1.forward(x), SLOPE));
  }
}

/** The generator side: experts, category embeddings and the router. */
export class MoeGenerator extends Module {
  readonly experts: ModuleList<Expert>;
  readonly categoryEmbedding: Embedding;
  readonly router: Linear;
  constructor(readonly cfg: MatMoeConfig, rng: Rng) {
    super();
    this.experts = this.child(
      "experts",
      new ModuleList(Array.from({ length: cfg.experts }, () => new Expert(cfg, rng))),
    );
    this.categoryEmbedding = this.child(
      "category_embedding",
      new Embedding(cfg.categories, cfg.categoryDim, rng, cfg.initStd),
    );
    this.router = this.child(
      "router",
      new Linear(cfg.categoryDim, cfg.experts, rng, { std: cfg.initStd }),
    );
  }

  /** Standard-normal noise [n, noiseDim] from the run's Rng. */
  noise(n: number, rng: Rng): Tensor {
    const z = new Float32Array(n * this.cfg.noiseDim);
    for (let i = 0; i < z.length; i++) z[i] = rng.normal();
    return tensor(z, [n, this.cfg.noiseDim]);
  }

  /** e_syn [n, d] and the routing weights g [n, experts] from e_t [n, d], z, e_c [n, dc]. */
  mix(eT: Tensor, z: Tensor, eC: Tensor): { eSyn: Tensor; gate: Tensor } {
    const n = eT.shape[0];
    const gate = op.softmax(this.router.forward(eC));
    const x = op.concat([eT, z], 1);
    const outs = this.experts.items.map((e) => op.reshape(e.forward(x), [n, 1, this.cfg.dim]));
    const stacked = op.concat(outs, 1); // [n, N, d]
    const eSyn = op.sum(op.mul(stacked, op.reshape(gate, [n, this.cfg.experts, 1])), 1);
    return { eSyn, gate };
  }

  /** Generates for item categories (int32 [n]). */
  generate(eT: Tensor, categories: Tensor, rng: Rng): Tensor {
    return this.mix(eT, this.noise(eT.shape[0], rng), this.categoryEmbedding.forward(categories))
      .eSyn;
  }
}

export class Critic extends Module {
  readonly w3: Linear;
  readonly w4: Linear;
  constructor(readonly cfg: MatMoeConfig, rng: Rng) {
    super();
    this.w3 = this.child("W3", new Linear(cfg.dim, cfg.criticHidden, rng, { std: cfg.initStd }));
    this.w4 = this.child(
      "W4",
      new Linear(cfg.criticHidden + cfg.dim, 1, rng, { std: cfg.initStd }),
    );
  }

  /** D's logit [n] for pairs (e_t, e_v), both [n, d]. */
  logit(eT: Tensor, eV: Tensor): Tensor {
    const hidden = op.leakyRelu(this.w3.forward(eT), SLOPE);
    return op.reshape(this.w4.forward(op.concat([hidden, eV], 1)), [eT.shape[0]]);
  }

  /** ||W4_v||: the norm of ∂D/∂e_v, the same at every input. */
  visualGradNorm(): Tensor {
    const wv = op.slice(this.w4.weight, 1, this.cfg.criticHidden, this.cfg.dim);
    return op.sqrt(op.sum(op.square(wv)));
  }

  /** Eq. 16 in closed form on interpolates x̂ = ε e_v + (1-ε) e_syn (ε [n, 1]). */
  gradientPenalty(
    on: "logit" | "sigmoid",
    eT: Tensor,
    eV: Tensor,
    eSyn: Tensor,
    eps: Tensor,
  ): Tensor {
    const norm = this.visualGradNorm();
    if (on === "logit") return op.square(op.addScalar(norm, -1));
    const xHat = op.add(op.mul(eV, eps), op.mul(eSyn, op.addScalar(op.neg(eps), 1)));
    const s = op.sigmoid(this.logit(eT, xHat));
    const slope = op.mul(s, op.addScalar(op.neg(s), 1)); // σ'(D)
    return op.mean(op.square(op.addScalar(op.mul(slope, norm), -1)));
  }
}

/** -mean(log σ(D_real) + log(1 - σ(D_fake))) (Eq. 14, critic side). */
export function criticLoss(dReal: Tensor, dFake: Tensor): Tensor {
  return op.bceWithLogits(dReal, dFake);
}

/** -mean(log σ(D_fake)) (Eq. 14, non-saturating generator side). */
export function generatorLoss(dFake: Tensor): Tensor {
  return op.mean(op.softplus(op.neg(dFake)));
}
