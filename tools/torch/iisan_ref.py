"""Reference IISAN in PyTorch for the golden fixture (fixtures/golden/iisan.json).

Written after the authors' cached IISAN (github.com/GAIR-Lab/IISAN, Code_Cached/model/model.py
IISANAdaptedMModel, modules.py AdapterBlock) with the adaptations core/models/iisan.ts documents:
each cached layer k of modality m is projected to the side width (x^m_k = P^m_k h^m_k); per
modality an intra-modal side network s_k = A_k(a_k x_k + (1 - a_k) s_{k-1}), s_0 = 0,
a_k = sigmoid(gate_k / T); the inter-modal side network u_k = A_k(u_{k-1} + b_k x^image_j +
(1 - b_k) x^text_j) over max(K_image, K_text) steps, layer j = floor(k K_m / K) of each modality;
each output through fc then fc_down; the item embedding com_dense([image; text; mm]); the RecBole
SASRec encoder of sasrec_ref.py over that item table plus positions; CE over all items.

State_dict names equal core/models/iisan.ts's namedParameters().
"""

import torch
import torch.nn.functional as F
from torch import nn

from sasrec_ref import TransformerEncoder, encode_last


class AdapterBlock(nn.Module):
    def __init__(self, dim, down, act):
        super().__init__()
        self.fc_down = nn.Linear(dim, down)
        self.fc_up = nn.Linear(down, dim)
        self.act = nn.GELU() if act == "gelu" else nn.ReLU()

    def forward(self, x):
        return self.fc_up(self.act(self.fc_down(x))) + x


class LayerProjection(nn.Module):
    def __init__(self, widths, side):
        super().__init__()
        self.widths = list(widths)
        self.proj = nn.ModuleList([nn.Linear(w, side) for w in widths])

    def forward(self, table):
        return [p(x) for p, x in zip(self.proj, torch.split(table, self.widths, dim=1))]


class IntraSan(nn.Module):
    def __init__(self, steps, side, down, d, act):
        super().__init__()
        self.adapters = nn.ModuleList([AdapterBlock(side, down, act) for _ in range(steps)])
        self.gates = nn.ParameterList([nn.Parameter(torch.zeros(1)) for _ in range(steps)])
        self.fc = nn.Linear(side, side)
        self.fc_down = nn.Linear(side, d)

    def forward(self, xs, temperature):
        s = torch.zeros_like(xs[0])
        for adapter, gate, x in zip(self.adapters, self.gates, xs):
            a = torch.sigmoid(gate / temperature)
            s = adapter(a * x + (1 - a) * s)
        return self.fc_down(self.fc(s))


class InterSan(nn.Module):
    def __init__(self, steps, side, down, d, act):
        super().__init__()
        self.steps = steps
        self.adapters = nn.ModuleList([AdapterBlock(side, down, act) for _ in range(steps)])
        self.gates = nn.ParameterList([nn.Parameter(torch.zeros(1)) for _ in range(steps)])
        self.fc = nn.Linear(side, side)
        self.fc_down = nn.Linear(side, d)

    def forward(self, image, text, temperature):
        u = torch.zeros_like(image[0])
        for k, (adapter, gate) in enumerate(zip(self.adapters, self.gates)):
            b = torch.sigmoid(gate / temperature)
            xi = image[k * len(image) // self.steps]
            xt = text[k * len(text) // self.steps]
            u = adapter(u + b * xi + (1 - b) * xt)
        return self.fc_down(self.fc(u))


class IISAN(nn.Module):
    def __init__(self, n_items, max_len, n_layers, heads, d, inner, eps, image_widths,
                 text_widths, side, down, act, gate_temperature):
        super().__init__()
        self.temperature = gate_temperature
        self.position_embedding = nn.Embedding(max_len, d)
        self.image_proj = LayerProjection(image_widths, side)
        self.image_san = IntraSan(len(image_widths), side, down, d, act)
        self.text_proj = LayerProjection(text_widths, side)
        self.text_san = IntraSan(len(text_widths), side, down, d, act)
        self.mm_san = InterSan(max(len(image_widths), len(text_widths)), side, down, d, act)
        self.com_dense = nn.Linear(3 * d, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.trm_encoder = TransformerEncoder(n_layers, heads, d, inner, 0.0, 0.0, "gelu", eps)

    def item_table(self, image_layers, text_layers):
        xi = self.image_proj(image_layers)
        xt = self.text_proj(text_layers)
        parts = [self.image_san(xi, self.temperature), self.text_san(xt, self.temperature),
                 self.mm_san(xi, xt, self.temperature)]
        return self.com_dense(torch.cat(parts, dim=1))

    def forward(self, item_seq, item_seq_len, table):
        return encode_last(self, table[item_seq], item_seq, item_seq_len)

    def loss(self, item_seq, item_seq_len, pos_items, image_layers, text_layers):
        table = self.item_table(image_layers, text_layers)
        seq_output = self.forward(item_seq, item_seq_len, table)
        return table, seq_output, F.cross_entropy(seq_output @ table.t(), pos_items)
