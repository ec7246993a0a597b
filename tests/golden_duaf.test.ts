/** Golden parity of DuAF's time embedding and fusion, MAT-MoE and InfoNCE against PyTorch. */
import assert from "node:assert/strict";
import { JsBackend } from "../core/backends/js.ts";
import { fuseModalities, ProjectedFusion } from "../core/models/duaf/fusion.ts";
import { Critic, criticLoss, generatorLoss, MoeGenerator } from "../core/models/duaf/mat_moe.ts";
import { infoNce } from "../core/models/duaf/contrastive.ts";
import { TimeEmbedding } from "../core/models/duaf/time_embedding.ts";
import * as op from "../core/ops/mod.ts";
import { Rng } from "../core/random.ts";
import { assign, backward, type Tensor, tensor, tidy, withBackend } from "../core/tensor.ts";
import { loadGolden } from "./golden.ts";
import { assertClose } from "./helpers/assert_close.ts";

type Golden = ReturnType<typeof loadGolden>;

function input(g: Golden, name: string): Tensor {
  const t = tensor(g.tensors[name].data, g.tensors[name].shape);
  t.requiresGrad = true;
  return t;
}

function set(t: Tensor, g: Golden, name: string): void {
  assign(t, Float32Array.from(g.tensors[name].data));
}

function check(name: string, t: Tensor | null, g: Golden, key: string, rtol = 1e-4): void {
  assert.ok(t, `${name}: no gradient`);
  assertClose(name, t!.toFloat32(), g.tensors[key].data, rtol, 1e-5);
}

Deno.test("golden: DuAF time embedding, modality weights and fused output match PyTorch", () => {
  const g = loadGolden("duaf_weights");
  withBackend(new JsBackend(), () => {
    const te = new TimeEmbedding(8, 8, new Rng(1), 0.02);
    set(te.interval.weight, g, "W1");
    set(te.interval.bias!, g, "b1");
    set(te.alpha, g, "alpha");
    set(te.beta, g, "beta");
    set(te.combine.weight, g, "W2");
    set(te.combine.bias!, g, "b2");
    const mods = ["e_id", "e_text", "e_image"].map((n) => input(g, n));
    const su = input(g, "s_u");
    const t = tensor(g.tensors.t.data, g.tensors.t.shape);
    const gaps = tensor(g.tensors.dt.data, g.tensors.dt.shape);
    tidy(() => {
      const { inter, ts, time } = te.forward(t, gaps);
      check("e_inter", inter, g, "e_inter");
      check("e_ts", ts, g, "e_ts");
      check("e_time", time, g, "e_time");
      const { h, omega } = fuseModalities(mods, time, su);
      check("omega", omega, g, "omega");
      check("h", h, g, "h");
      const loss = op.add(
        op.sum(op.mul(h, tensor(g.tensors.R.data, g.tensors.R.shape))),
        op.sum(op.mul(omega, tensor(g.tensors.Q.data, g.tensors.Q.shape))),
      );
      assertClose("loss", [loss.item()], g.tensors.loss.data);
      backward(loss);
    });
    ["e_id", "e_text", "e_image"].forEach((n, i) =>
      check(`grad.${n}`, mods[i].grad, g, `grad.${n}`, 1e-3)
    );
    check("grad.s_u", su.grad, g, "grad.s_u", 1e-3);
    check("grad.W1", te.interval.weight.grad, g, "grad.W1", 1e-3);
    check("grad.b1", te.interval.bias!.grad, g, "grad.b1", 1e-3);
    check("grad.alpha", te.alpha.grad, g, "grad.alpha", 1e-3);
    check("grad.beta", te.beta.grad, g, "grad.beta", 1e-3);
    check("grad.W2", te.combine.weight.grad, g, "grad.W2", 1e-3);
    check("grad.b2", te.combine.bias!.grad, g, "grad.b2", 1e-3);
  });
});

Deno.test("golden: DuAF's projected fusion score (query/key projections) matches PyTorch", () => {
  const g = loadGolden("duaf_projected");
  const m = g.meta as Record<string, number>;
  withBackend(new JsBackend(), () => {
    const fusion = new ProjectedFusion(m.d, ["id", "text", "image"], new Rng(1), m.eps);
    const params = fusion.namedParameters();
    assert.equal(params.length, 14);
    for (const [name, p] of params) set(p, g, `fusion.${name}`);
    const mods = ["e_id", "e_text", "e_image"].map((n) => input(g, n));
    const q = input(g, "q");
    const eTime = input(g, "e_time");
    tidy(() => {
      const { h, omega } = fusion.forward(mods, eTime, q, m.scale);
      check("omega", omega, g, "omega");
      check("h", h, g, "h");
      const loss = op.add(
        op.sum(op.mul(h, tensor(g.tensors.R.data, g.tensors.R.shape))),
        op.sum(op.mul(omega, tensor(g.tensors.Q.data, g.tensors.Q.shape))),
      );
      assertClose("loss", [loss.item()], g.tensors.loss.data);
      backward(loss);
    });
    ["e_id", "e_text", "e_image"].forEach((n, i) =>
      check(`grad.${n}`, mods[i].grad, g, `grad.${n}`, 1e-3)
    );
    check("grad.q", q.grad, g, "grad.q", 1e-3);
    check("grad.e_time", eTime.grad, g, "grad.e_time", 1e-3);
    for (const [name, p] of params) check(`grad.${name}`, p.grad, g, `grad.fusion.${name}`, 1e-3);
  });
});

function matMoe(g: Golden) {
  const m = g.meta as Record<string, number>;
  const cfg = {
    dim: m.d,
    noiseDim: m.z_dim,
    experts: m.n_experts,
    expertHidden: m.expert_hidden,
    categories: 2,
    categoryDim: m.category_dim,
    criticHidden: m.critic_hidden,
    initStd: 0.02,
  };
  const gen = new MoeGenerator(cfg, new Rng(1));
  const critic = new Critic(cfg, new Rng(2));
  gen.experts.items.forEach((e, i) => {
    set(e.w1.weight, g, `G.${i}.W1`);
    set(e.w1.bias!, g, `G.${i}.b1`);
    set(e.w2.weight, g, `G.${i}.W2`);
    set(e.w2.bias!, g, `G.${i}.b2`);
  });
  set(gen.router.weight, g, "Wg");
  set(gen.router.bias!, g, "bg");
  set(critic.w3.weight, g, "D.W3");
  set(critic.w3.bias!, g, "D.b3");
  set(critic.w4.weight, g, "D.W4");
  set(critic.w4.bias!, g, "D.b4");
  const criticParams: [string, Tensor][] = [
    ["D.W3", critic.w3.weight],
    ["D.b3", critic.w3.bias!],
    ["D.W4", critic.w4.weight],
    ["D.b4", critic.w4.bias!],
  ];
  const genParams: [string, Tensor][] = [
    ...gen.experts.items.flatMap((e, i): [string, Tensor][] => [
      [`G.${i}.W1`, e.w1.weight],
      [`G.${i}.b1`, e.w1.bias!],
      [`G.${i}.W2`, e.w2.weight],
      [`G.${i}.b2`, e.w2.bias!],
    ]),
    ["Wg", gen.router.weight],
    ["bg", gen.router.bias!],
  ];
  return { gen, critic, criticParams, genParams };
}

function zeroGrads(ps: [string, Tensor][]): void {
  for (const [, p] of ps) if (p.grad) p.backend.fill(p.grad.storage, 0);
}

Deno.test("golden: MAT-MoE generator, critic losses and closed-form gradient penalties match PyTorch", () => {
  const g = loadGolden("mat_moe");
  withBackend(new JsBackend(), () => {
    const { gen, critic, criticParams, genParams } = matMoe(g);
    const [eT, eV, eC, z, eps] = ["e_t", "e_v", "e_c", "z", "eps"].map((n) =>
      tensor(g.tensors[n].data, g.tensors[n].shape)
    );
    // Forward values.
    tidy(() => {
      const { eSyn, gate } = gen.mix(eT, z, eC);
      check("gate", gate, g, "gate");
      check("e_syn", eSyn, g, "e_syn");
      check("D_real", critic.logit(eT, eV), g, "D_real");
      check("D_fake", critic.logit(eT, eSyn), g, "D_fake");
      assertClose(
        "gp_logit",
        [critic.gradientPenalty("logit", eT, eV, eSyn, eps).item()],
        g.tensors.gp_logit.data,
      );
      assertClose(
        "gp_sigmoid",
        [critic.gradientPenalty("sigmoid", eT, eV, eSyn, eps).item()],
        g.tensors.gp_sigmoid.data,
      );
    });
    // Critic loss gradients (e_syn detached).
    tidy(() => {
      const eSyn = tidy(() => gen.mix(eT, z, eC).eSyn);
      const fake = tensor(eSyn.toFloat32(), eSyn.shape);
      const loss = criticLoss(critic.logit(eT, eV), critic.logit(eT, fake));
      assertClose("loss_critic", [loss.item()], g.tensors.loss_critic.data);
      backward(loss);
    });
    for (const [n, p] of criticParams) {
      check(`grad_critic.${n}`, p.grad, g, `grad_critic.${n}`, 1e-3);
    }
    zeroGrads(criticParams);
    // Generator loss gradients.
    tidy(() => {
      const loss = generatorLoss(critic.logit(eT, gen.mix(eT, z, eC).eSyn));
      assertClose("loss_gen", [loss.item()], g.tensors.loss_gen.data);
      backward(loss);
    });
    for (const [n, p] of genParams) check(`grad_gen.${n}`, p.grad, g, `grad_gen.${n}`, 1e-3);
    zeroGrads(criticParams);
    zeroGrads(genParams);
    // Gradient-penalty gradients: the closed forms against torch's double backward.
    for (const on of ["logit", "sigmoid"] as const) {
      tidy(() => backward(critic.gradientPenalty(on, eT, eV, gen.mix(eT, z, eC).eSyn, eps)));
      for (const [n, p] of criticParams) {
        const key = `grad_gp_${on}.${n}`;
        check(key, p.grad, g, key, 1e-3);
      }
      if (on === "sigmoid") {
        for (const [n, p] of genParams) {
          check(`grad_gp_sigmoid.${n}`, p.grad, g, `grad_gp_sigmoid.${n}`, 1e-3);
        }
      }
      zeroGrads(criticParams);
      zeroGrads(genParams);
    }
  });
});

Deno.test("golden: InfoNCE (one-way and symmetric) matches PyTorch", () => {
  const g = loadGolden("infonce");
  const tau = (g.meta as Record<string, number>).tau;
  withBackend(new JsBackend(), () => {
    for (const [kind, key] of [["ab", "loss_ab"], ["sym", "loss_sym"]] as const) {
      const a = input(g, "a");
      const b = input(g, "b");
      tidy(() => {
        const loss = infoNce(a, b, tau, kind === "sym");
        assertClose(key, [loss.item()], g.tensors[key].data);
        backward(loss);
      });
      check(`grad_${kind}.a`, a.grad, g, `grad_${kind}.a`, 1e-3);
      check(`grad_${kind}.b`, b.grad, g, `grad_${kind}.b`, 1e-3);
    }
  });
});
