"""Reference M3SRec in PyTorch for the golden fixture (fixtures/golden/m3srec.json).

Module for module as core/models/m3srec.ts (same state_dict names as its namedParameters()):
per content modality a MoE adaptor (UniSRec's MoEAdaptorLayer without noisy gating: experts
W_k (dropout(x) - b_k), gate softmax(x w_gate)), missing rows zeroed after the adaptor; an
item-level MoE fusion over [E_id; a_text; a_image] (Linear experts, Linear gate, softmax); the
RecBole SASRec encoder over the fused table plus positions; scores s_u . e_i; loss CE + lambda *
sum over modalities of InfoNCE(cos / tau) between s_u and the target's adapted vector, over rows
whose target has that modality.
"""

import torch
import torch.nn.functional as F
from torch import nn

from sasrec_ref import TransformerEncoder, encode_last


class WhiteningExpert(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(in_dim))
        self.lin = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x):
        return self.lin(x - self.bias)


class MoeAdaptor(nn.Module):
    def __init__(self, in_dim, out_dim, n_exps, dropout):
        super().__init__()
        self.experts = nn.ModuleList([WhiteningExpert(in_dim, out_dim) for _ in range(n_exps)])
        self.w_gate = nn.Parameter(torch.zeros(in_dim, n_exps))
        self.dropout = nn.Dropout(dropout)

    def gate(self, x):
        return torch.softmax(x @ self.w_gate, dim=-1)

    def forward(self, x):
        dropped = self.dropout(x)
        outs = torch.stack([e(dropped) for e in self.experts], dim=-2)  # [n, K, d]
        return (self.gate(x).unsqueeze(-1) * outs).sum(dim=-2)


class MoeFusion(nn.Module):
    def __init__(self, in_dim, out_dim, n_exps):
        super().__init__()
        self.experts = nn.ModuleList([nn.Linear(in_dim, out_dim) for _ in range(n_exps)])
        self.gate = nn.Linear(in_dim, n_exps)

    def forward(self, c):
        outs = torch.stack([e(c) for e in self.experts], dim=-2)
        return (torch.softmax(self.gate(c), dim=-1).unsqueeze(-1) * outs).sum(dim=-2)


class M3SRec(nn.Module):
    def __init__(self, n_items, max_len, n_layers, heads, d, inner, n_exps, feature_dims, eps,
                 adaptor_dropout=0.0):
        super().__init__()
        self.item_embedding = nn.Embedding(n_items, d)
        self.position_embedding = nn.Embedding(max_len, d)
        self.modalities = list(feature_dims)
        for name, dim in feature_dims.items():
            self.add_module(f"{name}_adaptor", MoeAdaptor(dim, d, n_exps, adaptor_dropout))
        self.fusion = MoeFusion((1 + len(feature_dims)) * d, d, n_exps)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.trm_encoder = TransformerEncoder(n_layers, heads, d, inner, 0.0, 0.0, "gelu", eps)

    def tables(self, features, present):
        adapted = {m: getattr(self, f"{m}_adaptor")(features[m]) * present[m].unsqueeze(-1)
                   for m in self.modalities}
        c = torch.cat([self.item_embedding.weight] + [adapted[m] for m in self.modalities], dim=-1)
        return adapted, self.fusion(c)

    def forward(self, item_seq, item_seq_len, table):
        return encode_last(self, table[item_seq], item_seq, item_seq_len)

    def loss(self, item_seq, item_seq_len, pos_items, features, present, aux_weight, tau):
        adapted, fused = self.tables(features, present)
        seq_output = self.forward(item_seq, item_seq_len, fused)
        main = F.cross_entropy(seq_output @ fused.t(), pos_items)
        aux = torch.zeros((), dtype=seq_output.dtype)
        for m in self.modalities:
            rows = present[m][pos_items] > 0
            a = F.normalize(seq_output[rows], dim=-1, eps=1e-12)
            b = F.normalize(adapted[m][pos_items[rows]], dim=-1, eps=1e-12)
            aux = aux + F.cross_entropy(a @ b.t() / tau, torch.arange(int(rows.sum())))
        return seq_output, main, aux, main + aux_weight * aux
