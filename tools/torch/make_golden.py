#!/usr/bin/python3
"""Write the golden-parity fixtures in fixtures/golden/ from PyTorch.

    /usr/bin/python3 tools/torch/make_golden.py            # write all cases
    /usr/bin/python3 tools/torch/make_golden.py sasrec ops  # write some cases
    /usr/bin/python3 tools/torch/make_golden.py --check    # re-read and validate the files

Every case is computed twice from the same seeded float32 inputs: once in float32 (the stored
values) and once in float64. meta.f64_max_abs_diff[name] is max |f32 - f64| over each float tensor,
a measured floor for the tolerance a float32 implementation can be held to.

Formulas, layouts and names are documented in docs/golden.md. Needs torch (Debian python3-torch);
use /usr/bin/python3, not a pyenv python that lacks it.
"""

import argparse
import json
import math
import os
import subprocess
import sys
from collections import OrderedDict

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("make_golden.py needs PyTorch: apt-get install -y python3-torch, then run it with "
          "/usr/bin/python3", file=sys.stderr)
    sys.exit(2)

sys.dont_write_bytecode = True  # keep tools/torch/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sasrec_ref import SASRec, gelu  # noqa: E402
import difsr_ref  # noqa: E402
from lrurec_ref import LRURec, parallel_scan_left_padded  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "fixtures", "golden")
MAX_BYTES = 300 * 1024
TORCH_PACKAGE = None


# ----------------------------------------------------------------------------------------------
# helpers


def gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def randn(g, *shape, std=1.0, mean=0.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean


def leaf(x, dtype):
    return x.detach().to(dtype).clone().requires_grad_(True)


def grads(loss, named, retain=False):
    """d loss / d each tensor in `named` (OrderedDict name -> tensor); zeros where unused."""
    names = list(named.keys())
    gs = torch.autograd.grad(loss, [named[n] for n in names], retain_graph=retain,
                             allow_unused=True)
    out = OrderedDict()
    for n, g_ in zip(names, gs):
        out[n] = torch.zeros_like(named[n]) if g_ is None else g_
    return out


def long_tensors(*rows):
    """Each list as an int64 tensor (item sequences, lengths, targets)."""
    return [torch.tensor(r, dtype=torch.long) for r in rows]


def ends(*suffixes):
    return lambda name: name.endswith(suffixes)


def golden_init(model, g, norm=ends("LayerNorm.weight"), bias=ends(".bias"), bias_std=0.1,
                keep=lambda name: False):
    """Golden init (not the references'), so that every path carries signal: in
    named_parameters() order, drawn from `g`, norm weights 1 + 0.1 N(0,1), biases
    bias_std N(0,1), every other parameter 0.5 N(0,1); `keep` names keep their values."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if keep(name):
                continue
            if norm(name):
                p.copy_(1.0 + 0.1 * randn(g, *p.shape))
            elif bias(name):
                p.copy_(bias_std * randn(g, *p.shape))
            else:
                p.copy_(0.5 * randn(g, *p.shape))


def named_tensors(params):
    """A module's parameters, or a dict name -> leaf tensor as it is, as an OrderedDict."""
    if isinstance(params, torch.nn.Module):
        return OrderedDict(params.named_parameters())
    return params


def put_params(t, params, prefix=""):
    """t[prefix + name] = the value of every tensor in `params` (see named_tensors)."""
    for name, p in named_tensors(params).items():
        t[prefix + name] = p.detach()


def put_grads(t, loss, params, key="grad.", retain=False):
    """t[key + name] = d loss / d every tensor in `params` (see named_tensors), zeros where
    unused."""
    for name, g_ in grads(loss, named_tensors(params), retain).items():
        t[key + name] = g_


# ----------------------------------------------------------------------------------------------
# a) SASRec (RecBole 1.2.1)

SAS_CFG = OrderedDict(
    n_layers=2, n_heads=2, hidden_size=16, inner_size=32, max_seq_length=6, n_items=20,
    batch=3, hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
    attn_dropout_prob=0.0,
)
SAS_ITEM_SEQ = [[3, 7, 12, 7, 19, 1], [5, 11, 2, 16, 0, 0], [9, 0, 0, 0, 0, 0]]
SAS_ITEM_SEQ_LEN = [6, 4, 1]
SAS_POS_ITEMS = [4, 11, 19]
SAS_NEG_ITEMS = [8, 13, 5]


def build_sasrec(dtype):
    torch.manual_seed(0)  # module construction draws from the global generator; fixed anyway
    c = SAS_CFG
    model = SASRec(
        n_items=c["n_items"], max_seq_length=c["max_seq_length"], n_layers=c["n_layers"],
        n_heads=c["n_heads"], hidden_size=c["hidden_size"], inner_size=c["inner_size"],
        hidden_dropout_prob=0.0, attn_dropout_prob=0.0, hidden_act="gelu",
        layer_norm_eps=c["layer_norm_eps"],
    )
    golden_init(model, gen(1234))
    model = model.to(dtype)
    model.eval()  # dropout probabilities are 0 anyway
    return model


def attach_attention_trace(model, trace):
    """Record per-layer attention probabilities and attention-block outputs."""
    handles = []
    for i, layer in enumerate(model.trm_encoder.layer):
        mha = layer.multi_head_attention

        def hook_softmax(_m, _inp, out, i=i):
            trace[f"layer{i}.attn_probs"] = out

        def hook_mha(_m, _inp, out, i=i):
            trace[f"layer{i}.attn_output"] = out

        handles.append(mha.softmax.register_forward_hook(hook_softmax))
        handles.append(mha.register_forward_hook(hook_mha))
    return handles


def case_sasrec(dtype, loss_kind):
    model = build_sasrec(dtype)
    item_seq, item_seq_len, pos_items, neg_items = long_tensors(
        SAS_ITEM_SEQ, SAS_ITEM_SEQ_LEN, SAS_POS_ITEMS, SAS_NEG_ITEMS)

    trace = OrderedDict()
    handles = attach_attention_trace(model, trace)
    inner = OrderedDict()
    seq_output = model.forward(item_seq, item_seq_len, trace=inner)
    for h in handles:
        h.remove()

    t = OrderedDict()
    t["item_seq"] = item_seq
    t["item_seq_len"] = item_seq_len
    t["pos_items"] = pos_items
    if loss_kind == "bce":
        t["neg_items"] = neg_items
    put_params(t, model)
    t["attention_mask"] = inner["attention_mask"]
    t["input_emb"] = inner["input_emb"]
    for i in range(SAS_CFG["n_layers"]):
        t[f"layer{i}.attn_probs"] = trace[f"layer{i}.attn_probs"]
        t[f"layer{i}.attn_output"] = trace[f"layer{i}.attn_output"]
        t[f"layer{i}.output"] = inner[f"layer{i}_output"]
    t["seq_output"] = seq_output

    if loss_kind == "ce":
        loss, logits = model.ce_loss(seq_output, pos_items)
        t["logits"] = logits
    else:
        w = model.item_embedding.weight
        s_pos = (seq_output * w[pos_items]).sum(-1)
        s_neg = (seq_output * w[neg_items]).sum(-1)
        loss = (F.softplus(-s_pos) + F.softplus(s_neg)).mean()
        t["s_pos"] = s_pos
        t["s_neg"] = s_neg
    t["loss"] = loss
    put_grads(t, loss, model)

    meta = OrderedDict(SAS_CFG)
    meta.update(
        loss_type="CE" if loss_kind == "ce" else "BCE (paper Eq. 18)",
        padding_item=0,
        embedding_rows_include_padding=True,
        attention_mask="torch.where(tril(causal) & (item_seq != 0)[key], 0.0, -10000.0)",
        recbole_version="1.2.1",
        init="embeddings/linear weights N(0, 0.5^2); LayerNorm weights 1 + 0.1 N(0,1); "
             "all biases 0.1 N(0,1); item_embedding row 0 is random too (RecBole init also "
             "overwrites it)",
        layout="Linear weights [out, in] (y = x W^T + b); activations row-major [B, L, d]; "
               "attn_probs [B, n_heads, L_query, L_key]",
    )
    return meta, t


# ----------------------------------------------------------------------------------------------
# b) DuAF fusion (paper Eq. 3-8)

DUAF_T = [[0.0, 0.5, 0.5, 3.25, 7.0], [2.0, 2.0, 2.0, 9.5, 30.0]]


def duaf_forward(p):
    t = p["t"]
    B, L = t.shape
    dt = torch.cat([torch.zeros(B, 1, dtype=t.dtype), t[:, 1:] - t[:, :-1]], dim=1)  # [B,L]
    e_inter = torch.log(dt + 1.0).unsqueeze(-1) @ p["W1"].t() + p["b1"]  # [B,L,d_t]
    arg = t.unsqueeze(-1) * p["alpha"] + p["beta"]  # [B,L,d_t/2]
    e_ts = torch.stack([torch.sin(arg), torch.cos(arg)], dim=-1).reshape(B, L, -1)
    e_time = torch.cat([e_inter, e_ts], dim=-1) @ p["W2"].t() + p["b2"]  # [B,L,d]
    E = torch.stack([p["e_id"], p["e_text"], p["e_image"]], dim=2)  # [B,L,3,d]
    scores = (p["s_u"][:, None, None, :] * torch.tanh(E + e_time.unsqueeze(2))).sum(-1)
    omega = torch.softmax(scores, dim=-1)  # [B,L,3]
    h = (omega.unsqueeze(-1) * E).sum(dim=2)  # [B,L,d]
    return OrderedDict(dt=dt, e_inter=e_inter, e_ts=e_ts, e_time=e_time, scores=scores,
                       omega=omega, h=h)


def case_duaf(dtype):
    B, L, d, d_t = 2, 5, 8, 8
    g = gen(2024)
    raw = OrderedDict()
    raw["e_id"] = randn(g, B, L, d)
    raw["e_text"] = randn(g, B, L, d)
    raw["e_image"] = randn(g, B, L, d)
    raw["t"] = torch.tensor(DUAF_T, dtype=torch.float32)
    raw["s_u"] = randn(g, B, d)
    raw["W1"] = randn(g, d_t, 1, std=0.5)
    raw["b1"] = randn(g, d_t, std=0.1)
    raw["alpha"] = randn(g, d_t // 2, std=0.5)
    raw["beta"] = randn(g, d_t // 2)
    raw["W2"] = randn(g, d, 2 * d_t, std=0.5)
    raw["b2"] = randn(g, d, std=0.1)
    R = randn(g, B, L, d)
    Q = randn(g, B, L, 3)

    p = OrderedDict((k, leaf(v, dtype)) for k, v in raw.items())
    out = duaf_forward(p)
    loss = (out["h"] * R.to(dtype)).sum() + (out["omega"] * Q.to(dtype)).sum()

    t = OrderedDict()
    put_params(t, p)
    t["R"] = R
    t["Q"] = Q
    for k, v in out.items():
        t[k] = v
    t["loss"] = loss
    put_grads(t, loss, p)
    meta = OrderedDict(
        B=B, L=L, d=d, d_t=d_t, modality_order=["id", "text", "image"],
        time_unit="days", e_ts_layout="interleaved: e_ts[2k]=sin(alpha_k t+beta_k), "
        "e_ts[2k+1]=cos(alpha_k t+beta_k)",
        linear_convention="y = x W^T + b (W [out, in])",
        loss="sum(h * R) + sum(omega * Q)",
    )
    return meta, t


def case_duaf_projected(dtype):
    """fusionScore "projected": u = W_q [LN(q); LN(e_time)], k^m = W_k^m LN(e^m),
    omega = softmax_m <u, k^m> * scale / sqrt(d), h = sum_m omega^m e^m (per step)."""
    B, L, d, M = 2, 5, 8, 3
    g = gen(2025)
    names = ["id", "text", "image"]
    raw = OrderedDict()
    for n in names:
        raw["e_" + n] = randn(g, B, L, d)
    raw["q"] = randn(g, B, L, d, std=0.3)
    raw["e_time"] = randn(g, B, L, d, std=2.0)
    for n in ["query_norm", "time_norm", "key_norm"]:
        raw[f"fusion.{n}.weight"] = randn(g, d, std=0.2, mean=1.0)
        raw[f"fusion.{n}.bias"] = randn(g, d, std=0.1)
    raw["fusion.query.weight"] = randn(g, d, 2 * d, std=(2 * d) ** -0.5)
    raw["fusion.query.bias"] = randn(g, d, std=0.1)
    for n in names:
        raw[f"fusion.key_{n}.weight"] = randn(g, d, d, std=d ** -0.5)
        raw[f"fusion.key_{n}.bias"] = randn(g, d, std=0.1)
    R = randn(g, B, L, d)
    Q = randn(g, B, L, M)
    scale, eps = 2.0, 1e-12

    p = OrderedDict((k, leaf(v, dtype)) for k, v in raw.items())

    def ln(x, n):
        return torch.nn.functional.layer_norm(x, (d,), p[f"fusion.{n}.weight"],
                                              p[f"fusion.{n}.bias"], eps)

    u = torch.cat([ln(p["q"], "query_norm"), ln(p["e_time"], "time_norm")], -1) \
        @ p["fusion.query.weight"].t() + p["fusion.query.bias"]
    keys = torch.stack([ln(p["e_" + n], "key_norm") @ p[f"fusion.key_{n}.weight"].t()
                        + p[f"fusion.key_{n}.bias"] for n in names], dim=2)  # [B,L,M,d]
    scores = (keys * u.unsqueeze(2)).sum(-1) * (scale / d ** 0.5)
    omega = torch.softmax(scores, dim=-1)
    E = torch.stack([p["e_" + n] for n in names], dim=2)
    h = (omega.unsqueeze(-1) * E).sum(dim=2)
    loss = (h * R.to(dtype)).sum() + (omega * Q.to(dtype)).sum()

    t = OrderedDict()
    put_params(t, p)
    t["R"] = R
    t["Q"] = Q
    t["omega"] = omega
    t["h"] = h
    t["loss"] = loss
    put_grads(t, loss, p)
    meta = OrderedDict(B=B, L=L, d=d, scale=scale, eps=eps, modality_order=names,
                       linear_convention="y = x W^T + b (W [out, in])",
                       loss="sum(h * R) + sum(omega * Q)")
    return meta, t


# ----------------------------------------------------------------------------------------------
# c) MAT-MoE generator + critic (paper Eq. 9-16)


def lrelu(x):
    return F.leaky_relu(x, 0.2)


def moe_generator(p, n_experts):
    e_t, z = p["e_t"], p["z"]
    gate = torch.softmax(p["e_c"] @ p["Wg"].t() + p["bg"], dim=-1)  # [B,N]
    x = torch.cat([e_t, z], dim=-1)  # [B, d+dz]
    outs = []
    for i in range(n_experts):
        hdn = lrelu(x @ p[f"G.{i}.W1"].t() + p[f"G.{i}.b1"])
        outs.append(hdn @ p[f"G.{i}.W2"].t() + p[f"G.{i}.b2"])
    experts = torch.stack(outs, dim=1)  # [B,N,d]
    e_syn = (gate.unsqueeze(-1) * experts).sum(dim=1)
    return gate, experts, e_syn


def critic(p, e_t, e_v):
    hdn = lrelu(e_t @ p["D.W3"].t() + p["D.b3"])
    return (torch.cat([hdn, e_v], dim=-1) @ p["D.W4"].t() + p["D.b4"]).squeeze(-1)  # [B]


def case_mat_moe(dtype):
    B, d, dz, dc, N, H, Hd = 4, 8, 8, 4, 3, 16, 16
    g = gen(777)
    raw = OrderedDict()
    raw["e_t"] = randn(g, B, d)
    raw["e_v"] = randn(g, B, d)
    raw["e_c"] = randn(g, B, dc)
    raw["z"] = randn(g, B, dz)
    raw["eps"] = torch.rand(B, 1, generator=g, dtype=torch.float32)
    for i in range(N):
        raw[f"G.{i}.W1"] = randn(g, H, d + dz, std=0.5)
        raw[f"G.{i}.b1"] = randn(g, H, std=0.1)
        raw[f"G.{i}.W2"] = randn(g, d, H, std=0.5)
        raw[f"G.{i}.b2"] = randn(g, d, std=0.1)
    raw["Wg"] = randn(g, N, dc, std=0.5)
    raw["bg"] = randn(g, N, std=0.1)
    raw["D.W3"] = randn(g, Hd, d, std=0.5)
    raw["D.b3"] = randn(g, Hd, std=0.1)
    raw["D.W4"] = randn(g, 1, Hd + d, std=0.5)
    raw["D.b4"] = randn(g, 1, std=0.1)

    p = OrderedDict((k, leaf(v, dtype)) for k, v in raw.items())
    p["eps"].requires_grad_(False)
    gen_names = [k for k in p if k.startswith("G.")] + ["Wg", "bg"]
    critic_names = ["D.W3", "D.b3", "D.W4", "D.b4"]

    gate, experts, e_syn = moe_generator(p, N)
    d_real = critic(p, p["e_t"], p["e_v"])
    d_fake = critic(p, p["e_t"], e_syn)
    d_fake_det = critic(p, p["e_t"], e_syn.detach())

    loss_critic = -(F.logsigmoid(d_real) + F.logsigmoid(-d_fake_det)).mean()
    loss_gen = -F.logsigmoid(d_fake).mean()

    eps = p["eps"]
    x_hat = eps * p["e_v"] + (1.0 - eps) * e_syn  # depends on the generator
    d_hat = critic(p, p["e_t"], x_hat)
    (gx_logit,) = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
    gp_logit = ((gx_logit.norm(2, dim=1) - 1.0) ** 2).mean()
    (gx_sig,) = torch.autograd.grad(torch.sigmoid(d_hat).sum(), x_hat, create_graph=True)
    gp_sigmoid = ((gx_sig.norm(2, dim=1) - 1.0) ** 2).mean()

    t = OrderedDict()
    put_params(t, p)
    t["gate"] = gate
    t["experts"] = experts
    t["e_syn"] = e_syn
    t["D_real"] = d_real
    t["D_fake"] = d_fake
    t["x_hat"] = x_hat
    t["D_hat"] = d_hat
    t["dD_dxhat"] = gx_logit
    t["dsigD_dxhat"] = gx_sig
    t["gp_logit"] = gp_logit
    t["gp_sigmoid"] = gp_sigmoid
    t["loss_critic"] = loss_critic
    t["loss_gen"] = loss_gen

    sel = lambda names: OrderedDict((n, p[n]) for n in names)  # noqa: E731
    put_grads(t, loss_critic, sel(critic_names + ["e_t", "e_v"]), "grad_critic.", retain=True)
    put_grads(t, loss_gen, sel(gen_names + ["e_c", "e_t", "z"]), "grad_gen.", retain=True)
    put_grads(t, gp_logit, sel(critic_names), "grad_gp_logit.", retain=True)
    gp_sig_names = critic_names + gen_names + ["e_c", "e_t", "e_v", "z"]
    put_grads(t, gp_sigmoid, sel(gp_sig_names), "grad_gp_sigmoid.")

    meta = OrderedDict(
        B=B, d=d, z_dim=dz, category_dim=dc, n_experts=N, expert_hidden=H, critic_hidden=Hd,
        leaky_relu_slope=0.2, z_shared_by_experts=True,
        linear_convention="y = x W^T + b (W [out, in])",
        critic_input_order="[LeakyReLU(W3 e_t + b3); e_v] (hidden first, then the visual vector)",
        generator_input_order="[e_t; z]",
        x_hat="eps * e_v + (1 - eps) * e_syn (e_syn not detached)",
        gp_logit="mean_b (||dD/dx_hat_b||_2 - 1)^2",
        gp_sigmoid="mean_b (||sigmoid'(D_b) dD/dx_hat_b||_2 - 1)^2",
        loss_critic="-mean(log sigmoid(D_real) + log(1 - sigmoid(D_fake))), e_syn detached",
        loss_gen="-mean(log sigmoid(D_fake))",
        gp_logit_generator_grads="identically zero (dD/dx_hat = W4[:, Hd:] does not depend on "
                                 "x_hat), so not stored",
    )
    return meta, t


# ----------------------------------------------------------------------------------------------
# d) InfoNCE


def case_infonce(dtype):
    B, d, tau = 4, 8, 0.5
    g = gen(99)
    raw = OrderedDict(a=randn(g, B, d), b=randn(g, B, d))
    labels = torch.arange(B)

    def forward(p):
        an = F.normalize(p["a"], dim=-1, eps=1e-12)
        bn = F.normalize(p["b"], dim=-1, eps=1e-12)
        logits = an @ bn.t() / tau
        loss_ab = F.cross_entropy(logits, labels)
        loss_sym = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
        return logits, loss_ab, loss_sym

    p = OrderedDict((k, leaf(v, dtype)) for k, v in raw.items())
    logits, loss_ab, loss_sym = forward(p)
    t = OrderedDict()
    t["a"] = p["a"].detach()
    t["b"] = p["b"].detach()
    t["logits"] = logits
    t["loss_ab"] = loss_ab
    t["loss_sym"] = loss_sym
    put_grads(t, loss_ab, p, "grad_ab.", retain=True)
    put_grads(t, loss_sym, p, "grad_sym.")
    meta = OrderedDict(
        B=B, d=d, tau=tau, positives="diagonal (labels = arange(B))",
        logits="logits[i, j] = cos(a_i, b_j) / tau, cos via F.normalize(eps=1e-12)",
        loss_ab="cross_entropy(logits, arange(B)), mean over rows",
        loss_sym="0.5 * (CE(logits, arange) + CE(logits^T, arange))",
    )
    return meta, t


# ----------------------------------------------------------------------------------------------
# e) ops


def case_ops(dtype):
    g = gen(4242)
    t = OrderedDict()

    def vjp(name, fn, xs, extra=None):
        """Store inputs, y = fn(*xs), an upstream gradient gy, and grads of sum(y * gy)."""
        leaves = OrderedDict((k, leaf(v, dtype)) for k, v in xs.items())
        y = fn(*leaves.values())
        gy = randn(g, *y.shape)
        put_params(t, leaves, f"{name}.")
        t[f"{name}.y"] = y
        t[f"{name}.gy"] = gy
        loss = (y * gy.to(dtype)).sum()
        put_grads(t, loss, leaves, f"{name}.g")

    vjp("gelu", gelu, OrderedDict(x=randn(g, 3, 7, std=2.0)))

    ln_x = torch.cat([randn(g, 3, 6, std=2.0, mean=0.5), 1e-3 * randn(g, 1, 6)], dim=0)
    ln_w = 1.0 + 0.1 * randn(g, 6)
    ln_b = 0.1 * randn(g, 6)
    for tag, eps in (("layer_norm_eps1e-12", 1e-12), ("layer_norm_eps1e-5", 1e-5)):
        vjp(tag, lambda x, w, b, eps=eps: F.layer_norm(x, (6,), w, b, eps),
            OrderedDict(x=ln_x, weight=ln_w, bias=ln_b))

    vjp("log_softmax", lambda x: F.log_softmax(x, dim=-1), OrderedDict(x=randn(g, 3, 7, std=3.0)))

    sp_x = torch.tensor([-30.0, -20.5, -5.0, -1.0, -1e-3, 0.0, 0.7, 3.0, 19.5, 20.5, 30.0])
    vjp("softplus", F.softplus, OrderedDict(x=sp_x))

    lr_x = randn(g, 3, 7, std=2.0)
    lr_x[1, 3] = 0.0
    vjp("leaky_relu", lambda x: F.leaky_relu(x, 0.2), OrderedDict(x=lr_x))

    ce_logits = leaf(randn(g, 3, 7, std=2.0), dtype)
    ce_target = torch.tensor([2, 0, 6], dtype=torch.long)
    ce_loss = F.cross_entropy(ce_logits, ce_target)
    t["cross_entropy.logits"] = ce_logits.detach()
    t["cross_entropy.target"] = ce_target
    t["cross_entropy.loss"] = ce_loss
    t["cross_entropy.glogits"] = grads(ce_loss, OrderedDict(l=ce_logits))["l"]

    for tag, bias in (("gru", True), ("gru_nobias", False)):
        torch.manual_seed(5)
        gru = torch.nn.GRU(input_size=5, hidden_size=6, num_layers=1, bias=bias, batch_first=True)
        with torch.no_grad():
            for name, prm in gru.named_parameters():
                prm.copy_((0.1 if name.startswith("bias") else 0.5) * randn(g, *prm.shape))
        gru = gru.to(dtype)
        x = leaf(randn(g, 2, 4, 5), dtype)
        out, h_n = gru(x)
        R = randn(g, 2, 4, 6)
        loss = (out * R.to(dtype)).sum()
        t[f"{tag}.x"] = x.detach()
        put_params(t, gru, f"{tag}.")
        t[f"{tag}.output"] = out
        t[f"{tag}.h_n"] = h_n
        t[f"{tag}.R"] = R
        put_grads(t, loss, OrderedDict([("x", x)] + list(gru.named_parameters())), f"{tag}.grad.")

    meta = OrderedDict(
        convention="for op NAME: NAME.<input>, NAME.y = op(inputs), NAME.gy (upstream gradient), "
                   "NAME.g<input> = d sum(y * gy) / d input",
        gelu="x * 0.5 * (1 + erf(x / sqrt(2)))",
        layer_norm="over the last dim (6), biased variance; row 3 is 1e-3 N(0,1) (variance ~1e-6), "
                   "so eps 1e-12 and 1e-5 give visibly different results",
        softplus="torch default beta=1, threshold=20 (returns x where x > 20)",
        leaky_relu="slope 0.2; x[1,3] is exactly 0 and torch's gradient there is 0.2",
        cross_entropy="mean over the 3 rows; glogits = d loss / d logits",
        gru="torch.nn.GRU(5, 6, num_layers=1, batch_first=True), h0 = 0; gate order in "
            "weight_ih_l0/weight_hh_l0 rows: r, z, n; loss = sum(output * R)",
        gru_nobias="same with bias=False (RecBole GRU4Rec's setting)",
    )
    return meta, t


# ----------------------------------------------------------------------------------------------
# NOVA and DIF-SR (tools/torch/difsr_ref.py): every fusion, attributes category + text

SIDE_CFG = OrderedDict(
    n_layers=2, n_heads=2, hidden_size=8, inner_size=16, max_seq_length=6, n_items=20,
    n_categories=5, text_dim=3, attribute_hidden_size=4, batch=3, layer_norm_eps=1e-12,
    attributes=["category", "text"], lambdas=[3.0],
)
SIDE_ITEM_CATEGORY = [0, 1, 2, 3, 4, 1, 0, 2, 3, 4, 1, 2, 0, 3, 4, 1, 2, 3, 4, 0]


def case_side(dtype, kind):
    c = SIDE_CFG
    item_seq, item_seq_len, pos_items, item_category = long_tensors(
        SAS_ITEM_SEQ, SAS_ITEM_SEQ_LEN, SAS_POS_ITEMS, SIDE_ITEM_CATEGORY)
    text_table = randn(gen(99), c["n_items"], c["text_dim"])
    text_table[0] = 0.0
    text_table = text_table.to(dtype)
    t = OrderedDict(item_seq=item_seq, item_seq_len=item_seq_len, pos_items=pos_items,
                    item_category=item_category, text_table=text_table)
    for fusion in ("sum", "concat", "gate"):
        torch.manual_seed(0)
        args = dict(n_items=c["n_items"], max_len=c["max_seq_length"], n_layers=c["n_layers"],
                    heads=c["n_heads"], d=c["hidden_size"], inner=c["inner_size"],
                    attributes=c["attributes"], fusion=fusion, n_categories=c["n_categories"],
                    text_dim=c["text_dim"], eps=c["layer_norm_eps"])
        if kind == "difsr":
            model = difsr_ref.Difsr(width=c["attribute_hidden_size"], **args)
        else:
            model = difsr_ref.Nova(**args)
        golden_init(model, gen(1234))
        model = model.to(dtype)
        model.eval()
        seq_output = model(item_seq, item_seq_len, item_category, text_table)
        logits = torch.matmul(seq_output, model.item_embedding.weight.transpose(0, 1))
        loss = F.cross_entropy(logits, pos_items)
        put_params(t, model, f"{fusion}/")
        t[f"{fusion}/seq_output"] = seq_output
        if kind == "difsr":
            t[f"{fusion}/main_loss"] = loss
            attr = model.attribute_losses(seq_output, pos_items, item_category)
            t[f"{fusion}/attr_category"] = attr[0]
            loss = loss + c["lambdas"][0] * attr[0]
        t[f"{fusion}/loss"] = loss
        put_grads(t, loss, model, f"{fusion}/grad.")
    meta = OrderedDict(c)
    meta.update(
        variants="sum, concat, gate: tensors under '<fusion>/'",
        loss="CE over all items at the last position" + (
            " + lambdas[0] * attribute BCE (category; text has no attribute loss)"
            if kind == "difsr" else ""),
        init="embeddings/linear weights N(0, 0.5^2); LayerNorm weights 1 + 0.1 N(0,1); "
             "all biases 0.1 N(0,1)",
        item_category="category index of items 0..n_items-1 (0 = unknown / padding)",
        text_table="frozen text rows [n_items, text_dim], row 0 zero",
    )
    return meta, t


# BERT4Rec (RecBole 1.2): a fixed cloze mask, so the comparison draws no random numbers

B4R_MASK = 20  # the mask token id: RecBole's n_items (padding counted)
B4R_MASKED_SEQ = [[3, B4R_MASK, 12, 7, B4R_MASK, 1], [B4R_MASK, 11, 2, 16, 0, 0],
                  [9, B4R_MASK, 0, 0, 0, 0]]
B4R_MASKED_INDEX = [1, 4, 6, 13]  # flat positions in [3, 6]; row 1 is masked at position 0
B4R_MASKED_TARGETS = [7, 19, 5, 4]


def case_bert4rec(dtype):
    from bert4rec_ref import BERT4Rec

    torch.manual_seed(0)
    c = SAS_CFG
    model = BERT4Rec(
        n_items=c["n_items"], max_seq_length=c["max_seq_length"], n_layers=c["n_layers"],
        n_heads=c["n_heads"], hidden_size=c["hidden_size"], inner_size=c["inner_size"],
        hidden_dropout_prob=0.0, attn_dropout_prob=0.0, layer_norm_eps=c["layer_norm_eps"],
    )
    golden_init(model, gen(4321),
                norm=lambda name: name.endswith("LayerNorm.weight") or name == "output_ln.weight",
                bias=ends("bias"))
    model = model.to(dtype)
    model.eval()

    masked_seq, masked_index, masked_targets, item_seq, item_seq_len = long_tensors(
        B4R_MASKED_SEQ, B4R_MASKED_INDEX, B4R_MASKED_TARGETS, SAS_ITEM_SEQ, SAS_ITEM_SEQ_LEN)

    t = OrderedDict()
    t["masked_item_seq"] = masked_seq
    t["masked_index"] = masked_index
    t["masked_targets"] = masked_targets
    t["item_seq"] = item_seq
    t["item_seq_len"] = item_seq_len
    put_params(t, model)
    with torch.no_grad():
        scores, inference_seq = model.full_sort_predict(item_seq, item_seq_len)
    t["inference_seq"] = inference_seq
    t["scores"] = scores
    loss, masked_output = model.masked_loss(masked_seq, masked_index, masked_targets)
    t["masked_output"] = masked_output
    t["loss"] = loss
    put_grads(t, loss, model)

    meta = OrderedDict(SAS_CFG)
    meta.update(
        hidden_dropout_prob=0.0, attn_dropout_prob=0.0, mask_token=B4R_MASK,
        loss_type="CE over item rows 0..n_items-1 plus output_bias at masked_index, mean",
        attention_mask="torch.where((item_seq != 0)[key], 0.0, -10000.0) (bidirectional)",
        recbole_version="1.2",
        inference="mask token after the last item; the oldest item dropped only when the "
                  "history fills max_seq_length (inference_seq); scores [B, n_items]",
        init="weights N(0, 0.5^2); LayerNorm weights 1 + 0.1 N(0,1); biases (output_bias too) "
             "0.1 N(0,1)",
    )
    return meta, t


# ----------------------------------------------------------------------------------------------
# g) LRURec (Yue et al., WSDM 2024): forward, window CE loss, every parameter gradient

LRU_CFG = OrderedDict(n_items=20, hidden_size=8, n_blocks=2, batch=3, max_len=6, dropout=0.0)
LRU_ITEM_SEQ = [[3, 7, 12, 7, 19, 1], [5, 11, 2, 16, 0, 0], [9, 0, 0, 0, 0, 0]]
LRU_ITEM_SEQ_LEN = [6, 4, 1]
LRU_POSITION_TARGETS = [[7, 12, 7, 19, 1, 4], [11, 2, 16, 11, 0, 0], [19, 0, 0, 0, 0, 0]]


def build_lrurec(dtype):
    c = LRU_CFG
    model = LRURec(c["n_items"], c["hidden_size"], c["n_blocks"], generator=gen(77))
    # params_log keeps the reference's ring init.
    golden_init(model, gen(4321), norm=ends("layer_norm.weight"), bias=ends("bias"),
                keep=ends("params_log"))
    return model.to(dtype).eval()


def check_left_padded_scan(model, items, lengths):
    """The authors' masked scan on left-padded rows (to 8 = 2^3 steps) equals the loop."""
    layer = model.model.lru_blocks[0].lru_layer
    with torch.no_grad():
        lam, u = layer.lam_gamma_u(model.embedding(items))
        loop, h = [], torch.zeros_like(u[:, 0])
        for t in range(u.shape[1]):
            h = lam * h + u[:, t]
            loop.append(h)
        loop = torch.stack(loop, dim=1)
        b, length, c = u.shape
        padded = torch.full((b, 8, c), 3.0 + 1.0j, dtype=u.dtype)  # padding states must not leak
        mask = torch.zeros(b, 8, dtype=torch.bool)
        for r, n in enumerate(lengths):
            padded[r, 8 - n:] = u[r, :n]
            mask[r, 8 - n:] = True
        scan = parallel_scan_left_padded(padded, lam, mask)
        for r, n in enumerate(lengths):
            diff = (scan[r, 8 - n:] - loop[r, :n]).abs().max().item()
            assert diff < 1e-4 * (1 + loop[r, :n].abs().max().item()), diff


def case_lrurec(dtype):
    model = build_lrurec(dtype)
    items, lengths, targets = long_tensors(LRU_ITEM_SEQ, LRU_ITEM_SEQ_LEN, LRU_POSITION_TARGETS)
    check_left_padded_scan(model, items, LRU_ITEM_SEQ_LEN)

    trace = OrderedDict()
    h = model.encode(items, trace)
    seq_output = h[torch.arange(h.shape[0]), lengths - 1]
    at = targets > 0
    loss = F.cross_entropy(model.scores(h[at]), targets[at])

    t = OrderedDict()
    t["item_seq"] = items
    t["item_seq_len"] = lengths
    t["position_targets"] = targets
    put_params(t, model)
    for k, v in trace.items():
        t[k] = v
    t["seq_output"] = seq_output
    t["scores"] = model.scores(seq_output)
    t["loss"] = loss
    put_grads(t, loss, model)

    meta = OrderedDict(LRU_CFG)
    meta.update(
        loss_type="CE over all items (row 0 included) at every position with a target, mean",
        recurrence="h_t = lambda h_{t-1} + gamma (B x_t + b), h_{-1} = 0, by a plain loop; "
                   "lambda = exp(-exp(nu_log) + i exp(theta_log)); y = Re(C h + b_C)",
        params_log="rows nu_log, theta_log, gamma_log [3, 2d]; the reference's init "
                   "(r in [0.8, 0.99], theta in [0, 2 pi))",
        init="other weights 0.5 N(0,1); LayerNorm weights 1 + 0.1 N(0,1); biases 0.1 N(0,1)",
        layout="Linear weights [out, in]; block outputs [B, L, d]; scores at the last position",
    )
    return meta, t


# ----------------------------------------------------------------------------------------------
# h) TedRec (Xu et al., CIKM 2024): torch.fft rfft / irfft, forward, CE loss, every gradient

TED_CFG = OrderedDict(SAS_CFG, text_dim=10, n_exps=3, temperature=0.07, adaptor_dropout_prob=0.0)


def dft_tensors(dtype, t):
    """rfft / irfft along the last axis (even and odd n, norms ortho and backward), and the
    gradient of sum(irfft(X) * w) w.r.t. Re X and Im X (DC and Nyquist imaginary parts set)."""
    g = gen(99)
    for n in (6, 7):
        x = randn(g, 2, 3, n).to(dtype)
        spec_re = randn(g, 2, 3, n // 2 + 1).to(dtype)
        spec_im = randn(g, 2, 3, n // 2 + 1).to(dtype)
        w = randn(g, 2, 3, n).to(dtype)
        t[f"dft{n}.x"] = x
        t[f"dft{n}.spec_re"] = spec_re
        t[f"dft{n}.spec_im"] = spec_im
        t[f"dft{n}.w"] = w
        for norm in ("ortho", "backward"):
            X = torch.fft.rfft(x, dim=-1, norm=norm)
            t[f"dft{n}.rfft_{norm}_re"] = X.real.contiguous()
            t[f"dft{n}.rfft_{norm}_im"] = X.imag.contiguous()
            re, im = leaf(spec_re, dtype), leaf(spec_im, dtype)
            y = torch.fft.irfft(torch.complex(re, im), n=n, dim=-1, norm=norm)
            t[f"dft{n}.irfft_{norm}"] = y
            gre, gim = torch.autograd.grad((y * w).sum(), [re, im])
            t[f"dft{n}.irfft_{norm}_grad_re"] = gre
            t[f"dft{n}.irfft_{norm}_grad_im"] = gim


def case_tedrec(dtype):
    from tedrec_ref import TedRec

    c = TED_CFG
    torch.manual_seed(0)
    model = TedRec(
        n_items=c["n_items"], max_seq_length=c["max_seq_length"], text_dim=c["text_dim"],
        n_exps=c["n_exps"], adaptor_dropout_prob=0.0, temperature=c["temperature"],
        n_layers=c["n_layers"], n_heads=c["n_heads"], hidden_size=c["hidden_size"],
        inner_size=c["inner_size"], hidden_dropout_prob=0.0, attn_dropout_prob=0.0,
        hidden_act="gelu", layer_norm_eps=c["layer_norm_eps"],
    )
    g = gen(2468)
    golden_init(model, g, bias=ends("bias"))
    model = model.to(dtype)
    text_table = randn(g, c["n_items"], c["text_dim"])
    text_table[0] = 0.0  # padding row, as the reference's plm_embedding
    text_table[13] = 0.0  # an item without text
    text_table = text_table.to(dtype)
    item_seq, item_seq_len, pos_items = long_tensors(SAS_ITEM_SEQ, SAS_ITEM_SEQ_LEN, SAS_POS_ITEMS)
    gate_noise = randn(g, c["batch"], c["max_seq_length"], c["n_exps"]).to(dtype)

    t = OrderedDict()
    t["item_seq"] = item_seq
    t["item_seq_len"] = item_seq_len
    t["pos_items"] = pos_items
    t["text_table"] = text_table
    t["gate_noise"] = gate_noise
    put_params(t, model)
    model.eval()
    with torch.no_grad():
        trace = OrderedDict()
        eval_out = model.encode(item_seq, item_seq_len, text_table, trace=trace)
        for k, v in trace.items():
            t["eval." + k] = v
        t["eval.seq_output"] = eval_out
        t["eval.scores"] = model.full_sort_predict(eval_out)
    # Training mode (dropout 0): the noisy gating with the fixed draws.
    model.train()
    trace = OrderedDict()
    seq_output = model.encode(item_seq, item_seq_len, text_table, gate_noise, trace)
    loss = model.ce_loss(seq_output, pos_items)
    for k, v in trace.items():
        t[k] = v
    t["seq_output"] = seq_output
    t["loss"] = loss
    put_grads(t, loss, model)
    dft_tensors(dtype, t)

    meta = OrderedDict(TED_CFG)
    meta.update(
        reference="github.com/Sherry-XLL/TedRec tedrec.py (on RecBole 1.2.1 SASRec)",
        fft="torch.fft.rfft / irfft along the sequence axis, norm ortho, n = max_seq_length",
        loss_type="CE over all items (row 0 included) of cos(seq_output, item) / temperature",
        training="eval.* without gate noise; the rest in training mode (dropout 0) with "
                 "softmax(x w_gate + gate_noise * (softplus(x w_noise) + 0.01)) as the gates",
        init="weights N(0, 0.5^2); LayerNorm weights 1 + 0.1 N(0,1); biases 0.1 N(0,1); "
             "text_table N(0,1) with rows 0 and 13 zero",
        dft="dft{n}.*: rfft and irfft of [2, 3, n] along the last axis; *_grad_re/im = "
            "d sum(irfft(X) * w) / d Re X, Im X",
    )
    return meta, t


# ----------------------------------------------------------------------------------------------
# M3SRec (Bian et al., CIKM 2023) as core/models/m3srec.ts: MoE adaptors, MoE fusion, CE + aux

M3S_CFG = OrderedDict(n_items=20, hidden_size=8, n_layers=1, n_heads=2, inner_size=16,
                      max_seq_length=6, layer_norm_eps=1e-12, experts=3, text_dim=5,
                      image_dim=7, aux_weight=0.5, temperature=0.2)
M3S_TEXT_MISSING = [0, 7]  # item 7 has no text (padding row 0 too)
M3S_IMAGE_MISSING = [0, 2, 11, 16]  # target 11 has no image: it drops out of the image term


def case_m3srec(dtype):
    from m3srec_ref import M3SRec

    c = M3S_CFG
    n = c["n_items"]
    g = gen(31)
    features = OrderedDict(text=randn(g, n, c["text_dim"]).to(dtype),
                           image=randn(g, n, c["image_dim"]).to(dtype))
    present = OrderedDict()
    for m, missing in (("text", M3S_TEXT_MISSING), ("image", M3S_IMAGE_MISSING)):
        mask = torch.ones(n, dtype=dtype)
        mask[missing] = 0.0
        present[m] = mask
    torch.manual_seed(0)
    model = M3SRec(n, c["max_seq_length"], c["n_layers"], c["n_heads"], c["hidden_size"],
                   c["inner_size"], c["experts"],
                   OrderedDict(text=c["text_dim"], image=c["image_dim"]), c["layer_norm_eps"])
    golden_init(model, gen(1234))
    model = model.to(dtype)
    model.eval()
    item_seq, item_seq_len, pos_items = long_tensors(SAS_ITEM_SEQ, SAS_ITEM_SEQ_LEN, SAS_POS_ITEMS)
    seq_output, main, aux, loss = model.loss(item_seq, item_seq_len, pos_items, features,
                                             present, c["aux_weight"], c["temperature"])
    t = OrderedDict(item_seq=item_seq, item_seq_len=item_seq_len, pos_items=pos_items,
                    text_table=features["text"], image_table=features["image"],
                    text_present=present["text"], image_present=present["image"])
    put_params(t, model)
    t["seq_output"] = seq_output
    t["main_loss"] = main
    t["aux_loss"] = aux
    t["loss"] = loss
    put_grads(t, loss, model)
    meta = OrderedDict(c)
    meta.update(
        loss="CE over all items at the last position against the fused table + aux_weight * "
             "sum over text, image of InfoNCE(cos(s_u, a^m_target) / temperature) over rows "
             "whose target has modality m",
        missing="rows with *_present 0 are zeroed after the adaptor",
        init="embeddings/linear weights, w_gate N(0, 0.5^2); LayerNorm weights 1 + 0.1 N(0,1); "
             "all biases (whitening biases too) 0.1 N(0,1)",
        dropout="0 (eval mode)",
    )
    return meta, t


# ----------------------------------------------------------------------------------------------
# IISAN (Fu et al., SIGIR 2024): cached layer states of two modalities with different layer
# counts and widths, item table, sequence output, CE loss, every parameter gradient

IISAN_CFG = OrderedDict(n_items=20, hidden_size=8, n_layers=1, n_heads=2, inner_size=16,
                        max_seq_length=6, layer_norm_eps=1e-12, image_widths=[4, 6, 5],
                        text_widths=[3, 5], side_dim=6, adapter_down=3, activation="relu",
                        gate_temperature=0.1)


def case_iisan(dtype):
    from iisan_ref import IISAN

    c = IISAN_CFG
    n = c["n_items"]
    g = gen(97)
    image = randn(g, n, sum(c["image_widths"]))
    text = randn(g, n, sum(c["text_widths"]))
    image[0] = 0.0
    text[0] = 0.0
    image, text = image.to(dtype), text.to(dtype)
    torch.manual_seed(0)
    model = IISAN(n, c["max_seq_length"], c["n_layers"], c["n_heads"], c["hidden_size"],
                  c["inner_size"], c["layer_norm_eps"], c["image_widths"], c["text_widths"],
                  c["side_dim"], c["adapter_down"], c["activation"], c["gate_temperature"])
    # Gate logits drawn as biases (logits / 0.1: gates well inside (0, 1)).
    golden_init(model, gen(4321), bias=lambda name: ".gates." in name or name.endswith(".bias"))
    model = model.to(dtype)
    model.eval()
    item_seq, item_seq_len, pos_items = long_tensors(SAS_ITEM_SEQ, SAS_ITEM_SEQ_LEN, SAS_POS_ITEMS)
    table, seq_output, loss = model.loss(item_seq, item_seq_len, pos_items, image, text)
    t = OrderedDict(item_seq=item_seq, item_seq_len=item_seq_len, pos_items=pos_items,
                    image_layers=image, text_layers=text)
    put_params(t, model)
    t["item_table"] = table
    t["seq_output"] = seq_output
    t["loss"] = loss
    put_grads(t, loss, model)
    meta = OrderedDict(c)
    meta.update(
        loss="CE over all items at the last position against the item table",
        inter="max(K) steps; step k takes layer floor(k K_m / K) of each modality",
        init="weights N(0, 0.5^2); gate logits 0.1 N(0,1); LayerNorm weights 1 + 0.1 N(0,1); "
             "biases 0.1 N(0,1); layer rows N(0,1), row 0 = 0",
        dropout="0 (eval mode)",
        reference="GAIR-Lab/IISAN Code_Cached (tools/torch/iisan_ref.py)",
    )
    return meta, t


# ----------------------------------------------------------------------------------------------
# writing

# ----------------------------------------------------------------------------------------------
# h) UniSRec (Hou et al., KDD 2022): transductive fine-tuning loss, pre-training loss (both with
#    their gate noise given), every parameter gradient, and eval scores

UNI_CFG = OrderedDict(n_items=20, plm_size=6, hidden_size=16, inner_size=32, n_layers=2,
                      n_heads=2, max_seq_length=6, n_exps=3, temperature=0.07, lam=0.5,
                      layer_norm_eps=1e-12)
UNI_ITEM_SEQ = [[3, 7, 12, 7, 19, 1], [5, 11, 2, 16, 0, 0], [9, 0, 0, 0, 0, 0],
                [6, 2, 8, 0, 0, 0]]
UNI_ITEM_SEQ_LEN = [6, 4, 1, 3]
UNI_POS_ITEMS = [4, 11, 4, 19]
UNI_ITEM_SEQ_AUG = [[3, 12, 19, 1, 0, 0], [5, 2, 16, 0, 0, 0], [9, 0, 0, 0, 0, 0],
                    [6, 8, 0, 0, 0, 0]]
UNI_ITEM_SEQ_LEN_AUG = [4, 3, 1, 2]
UNI_BATCH = (UNI_ITEM_SEQ, UNI_ITEM_SEQ_LEN, UNI_POS_ITEMS, UNI_ITEM_SEQ_AUG, UNI_ITEM_SEQ_LEN_AUG)


def case_unisrec(dtype):
    from unisrec_ref import UniSRec

    c = UNI_CFG
    g = gen(2468)
    plm = randn(g, c["n_items"], c["plm_size"])
    plm[0] = 0.0  # the padding row, as the reference's PLM table
    plm = plm.to(dtype)
    kw = dict(n_layers=c["n_layers"], n_heads=c["n_heads"], hidden_size=c["hidden_size"],
              inner_size=c["inner_size"], hidden_dropout_prob=0.0, attn_dropout_prob=0.0,
              layer_norm_eps=c["layer_norm_eps"], n_exps=c["n_exps"], adaptor_dropout_prob=0.0,
              temperature=c["temperature"], lam=c["lam"])
    torch.manual_seed(0)
    ft = UniSRec(c["n_items"], c["max_seq_length"], plm, "transductive_ft", **kw)
    golden_init(ft, g, bias_std=0.3,
                bias=lambda name: name.endswith(".bias") or name.startswith("moe_adaptor.w_"))
    ft = ft.to(dtype)
    pre = UniSRec(c["n_items"], c["max_seq_length"], plm, "pretrain", **kw).to(dtype)
    pre.load_state_dict(ft.state_dict(), strict=False)

    b, L, e = len(UNI_ITEM_SEQ), c["max_seq_length"], c["n_exps"]
    item_seq, item_seq_len, pos_items, seq_aug, len_aug = long_tensors(*UNI_BATCH)
    noise = OrderedDict(
        noise_seq=randn(g, b * L, e), noise_table=randn(g, c["n_items"], e),
        pre_noise_seq=randn(g, b * L, e), pre_noise_pos=randn(g, b, e),
        pre_noise_aug=randn(g, b * L, e))
    noise = OrderedDict((k, v.to(dtype)) for k, v in noise.items())

    t = OrderedDict()
    t["plm_embedding"] = plm
    t["item_seq"] = item_seq
    t["item_seq_len"] = item_seq_len
    t["pos_items"] = pos_items
    t["item_seq_aug"] = seq_aug
    t["item_seq_len_aug"] = len_aug
    t.update(noise)
    put_params(t, ft)
    ft.eval()
    with torch.no_grad():
        t["scores"] = ft.full_sort_predict(item_seq, item_seq_len)
    ft.train()
    loss, seq_output, logits = ft.finetune_loss(item_seq, item_seq_len, pos_items,
                                                noise["noise_seq"], noise["noise_table"])
    t["seq_output"] = seq_output
    t["logits"] = logits
    t["loss"] = loss
    put_grads(t, loss, ft)
    pre.train()
    total, seq_item, seq_seq = pre.pretrain_loss(
        item_seq, item_seq_len, pos_items, seq_aug, len_aug, noise["pre_noise_seq"],
        noise["pre_noise_pos"], noise["pre_noise_aug"])
    t["pre.seq_item"] = seq_item
    t["pre.seq_seq"] = seq_seq
    t["pre.loss"] = total
    put_grads(t, total, pre, "pre.grad.")

    meta = OrderedDict(UNI_CFG)
    meta.update(
        batch=b, hidden_dropout_prob=0.0, attn_dropout_prob=0.0, adaptor_dropout_prob=0.0,
        train_stage="transductive_ft (loss, grad.*, scores); pretrain (pre.*)",
        noise="gate noise N(0,1) given: noise_seq [B*L, n_exps] then noise_table for the "
              "fine-tuning loss; pre_noise_seq, pre_noise_pos, pre_noise_aug for pre-training",
        reference="RUCAIBox/UniSRec unisrec.py (tools/torch/unisrec_ref.py)",
        init="weights N(0, 0.5^2); LayerNorm weights 1 + 0.1 N(0,1); biases, w_gate, w_noise "
             "0.3 N(0,1); plm_embedding N(0,1) with row 0 = 0",
    )
    return meta, t


# ----------------------------------------------------------------------------------------------
# i) MISSRec (Wang et al., ACM MM 2023): transductive fine-tuning loss (fused text/image/ID
#    logits + gamma * interest regulariser), pre-training loss with a given item-drop view, every
#    parameter gradient; interests given; the encoder/decoder checked against torch.nn.Transformer

MIS_CFG = OrderedDict(n_items=20, text_dim=6, img_dim=5, hidden_size=8, inner_size=16,
                      n_layers=2, n_heads=2, max_seq_length=6, temperature=0.07, lam=0.5,
                      gamma=0.1, layer_norm_eps=1e-12, n_interests=7)
MIS_IMAGE_MISSING = [2, 9, 16]


def case_missrec(dtype):
    from missrec_ref import MISSRec, to_torch_transformer

    c = MIS_CFG
    n = c["n_items"]
    torch.set_default_dtype(dtype)
    try:
        g = gen(97)
        text = randn(g, n, c["text_dim"]).to(dtype)
        img = randn(g, n, c["img_dim"]).to(dtype)
        text[0] = 0.0
        img[0] = 0.0
        img[MIS_IMAGE_MISSING] = 0.0  # the reference's empty rows; the TS side zero-fills by mask
        img_present = torch.ones(n, dtype=torch.long)
        img_present[MIS_IMAGE_MISSING] = 0
        centroids = randn(g, c["n_interests"] + 1, c["hidden_size"]).to(dtype)
        centroids[0] = 0.0
        gi = torch.Generator().manual_seed(5)
        text_lookup = torch.randint(1, c["n_interests"] + 1, (n,), generator=gi)
        img_lookup = torch.randint(1, c["n_interests"] + 1, (n,), generator=gi)
        text_lookup[0] = 0
        img_lookup[0] = 0
        lookups = [text_lookup, img_lookup]

        def build(transductive):
            torch.manual_seed(0)
            m = MISSRec(n, c["max_seq_length"], c["n_layers"], c["n_heads"], c["hidden_size"],
                        c["inner_size"], c["text_dim"], c["img_dim"], c["layer_norm_eps"],
                        transductive)
            golden_init(m, gen(4321), norm=ends("LayerNorm.weight", "_norm.weight"),
                        bias=lambda name: name.endswith(".bias") or name == "fusion_factor",
                        bias_std=0.3)
            return m.to(dtype)

        item_seq, item_seq_len, pos_items, aug_seq, aug_len = long_tensors(*UNI_BATCH)

        model = build(True)
        trace = {}
        s, logits, main, reg, loss = model.finetune_loss(
            item_seq, item_seq_len, pos_items, text, img, centroids, lookups, c["temperature"],
            c["gamma"], trace)
        # The decoder stack equals the reference's torch.nn.Transformer (encoder + decoder).
        trm = to_torch_transformer(model, c["n_heads"], c["inner_size"], c["layer_norm_eps"])
        trm.train()
        with torch.no_grad():
            mem = trm.encoder(trace["tokens"], src_key_padding_mask=trace["ids"] == 0)
            out = trm.decoder(trace["dec_in"], mem, tgt_key_padding_mask=item_seq == 0,
                              memory_key_padding_mask=trace["ids"] == 0)
        tol = 1e-4 if dtype == torch.float32 else 1e-9
        assert (mem - trace["memory"]).abs().max() < tol, "encoder differs from nn.Transformer"
        assert (out - trace["hidden"]).abs().max() < tol, "decoder differs from nn.Transformer"

        t = OrderedDict(item_seq=item_seq, item_seq_len=item_seq_len, pos_items=pos_items,
                        text_table=text, image_table=img, image_present=img_present,
                        interest_centroids=centroids, text_interest=text_lookup,
                        image_interest=img_lookup, interest_ids=trace["ids"])
        put_params(t, model)
        t["seq_output"] = s
        t["logits"] = logits
        t["main_loss"] = main
        t["interest_reg"] = reg
        t["loss"] = loss
        put_grads(t, loss, model)

        pre = build(False)
        pre.load_state_dict({k: v for k, v in model.state_dict().items()
                             if not k.startswith("item_embedding.")})
        seq_item, seq_seq, regs, pre_loss = pre.pretrain_loss(
            item_seq, item_seq_len, pos_items, aug_seq, aug_len, text, img, centroids, lookups,
            c["temperature"], c["lam"], c["gamma"])
        t["aug_seq"] = aug_seq
        t["aug_len"] = aug_len
        t["pre.seq_item"] = seq_item
        t["pre.seq_seq"] = seq_seq
        t["pre.interest_reg"] = regs
        t["pre.loss"] = pre_loss
        put_grads(t, pre_loss, pre, "pre.grad.")
    finally:
        torch.set_default_dtype(torch.float32)
    meta = OrderedDict(c)
    meta.update(
        loss="fine-tuning: CE(((s.norm(E_id)^T) + 2 * sum_m softmax_m(l_m * f) l_m) / 3 / tau) + "
             "gamma * R; pre-training (no ID table, same weights but item_embedding): "
             "CE(fused in-batch logits / tau) + lam * CE(s s_aug^T / tau) + gamma * (R + R_aug)",
        interests="centroids (row 0 padding) and per-modality lookups given; interest_ids are "
                  "each row's sorted unique lookups, 0-padded",
        missing="image rows in image_present 0 are zero (the reference's empty rows)",
        reference="gimpong/MM23-MISSRec missrec.py (tools/torch/missrec_ref.py)",
        init="weights N(0, 0.5^2); LayerNorm weights 1 + 0.1 N(0,1); biases and fusion_factor "
             "0.3 N(0,1)",
        dropout="0",
    )
    return meta, t


CASES = OrderedDict(
    sasrec=lambda dt: case_sasrec(dt, "ce"),
    sasrec_bce=lambda dt: case_sasrec(dt, "bce"),
    duaf_weights=case_duaf,
    duaf_projected=case_duaf_projected,
    mat_moe=case_mat_moe,
    infonce=case_infonce,
    ops=case_ops,
    nova=lambda dt: case_side(dt, "nova"),
    difsr=lambda dt: case_side(dt, "difsr"),
    lrurec=case_lrurec,
    bert4rec=case_bert4rec,
    unisrec=case_unisrec,
    tedrec=case_tedrec,
    m3srec=case_m3srec,
    missrec=case_missrec,
    iisan=case_iisan,
)


def torch_package_version():
    """Debian package version of python3-torch when installed from apt (best effort)."""
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-torch"],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def fmt_f32(v):
    v = float(v)
    if not math.isfinite(v):
        raise ValueError("non-finite value in a golden tensor")
    s = "%.9g" % v
    return s


def encode(t):
    t = t.detach()
    if t.dtype in (torch.int64, torch.int32, torch.bool):
        flat = t.to(torch.int64).reshape(-1).tolist()
        return "i32", [int(x) for x in flat]
    flat = t.to(torch.float32).reshape(-1).tolist()
    return "f32", flat


def write_case(name):
    meta32, t32 = CASES[name](torch.float32)
    _, t64 = CASES[name](torch.float64)
    assert list(t32.keys()) == list(t64.keys())
    diffs = OrderedDict()
    for k in t32:
        a, b = t32[k].detach(), t64[k].detach()
        if a.is_floating_point():
            diffs[k] = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    meta = OrderedDict(case=name)
    meta.update(meta32)
    meta["torch_version"] = torch.__version__
    meta["torch_package"] = TORCH_PACKAGE
    meta["generator"] = "tools/torch/make_golden.py"
    meta["dtype_note"] = "computed in float32; values written with 9 significant digits"
    meta["f64_max_abs_diff"] = OrderedDict((k, float("%.3g" % v)) for k, v in diffs.items())

    lines = ['{"meta": ' + json.dumps(meta) + ',', ' "tensors": {']
    items = list(t32.items())
    for i, (k, v) in enumerate(items):
        dtype, flat = encode(v)
        data = ",".join(fmt_f32(x) for x in flat) if dtype == "f32" else ",".join(map(str, flat))
        sep = "," if i + 1 < len(items) else ""
        lines.append('  %s: {"shape": %s, "dtype": "%s", "data": [%s]}%s' % (
            json.dumps(k), json.dumps(list(v.shape)), dtype, data, sep))
    lines.append("}}")
    text = "\n".join(lines) + "\n"
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, name + ".json")
    with open(path, "w") as f:
        f.write(text)
    size = len(text.encode())
    if size > MAX_BYTES:
        raise SystemExit(f"{path}: {size} bytes exceeds {MAX_BYTES}")
    worst = max(diffs.values()) if diffs else 0.0
    print(f"{name}: {len(items)} tensors, {size} bytes, max |f32-f64| {worst:.3g}", file=sys.stderr)


def check_case(name):
    path = os.path.join(OUT_DIR, name + ".json")
    with open(path) as f:
        doc = json.load(f)
    for k, v in doc["tensors"].items():
        n = 1
        for s in v["shape"]:
            n *= s
        if len(v["data"]) != n:
            raise SystemExit(f"{path}: tensor {k}: {len(v['data'])} values for shape {v['shape']}")
        if v["dtype"] not in ("f32", "i32"):
            raise SystemExit(f"{path}: tensor {k}: bad dtype {v['dtype']}")
    print(f"{name}: ok ({len(doc['tensors'])} tensors)", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cases", nargs="*", help="subset of: " + ", ".join(CASES))
    ap.add_argument("--check", action="store_true", help="validate existing files only")
    args = ap.parse_args()
    names = args.cases or list(CASES)
    for n in names:
        if n not in CASES:
            raise SystemExit(f"unknown case {n!r}; known: {', '.join(CASES)}")
    global TORCH_PACKAGE
    TORCH_PACKAGE = torch_package_version()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for n in names:
        if args.check:
            check_case(n)
        else:
            write_case(n)


if __name__ == "__main__":
    main()
