"""Reference TedRec in PyTorch, written from the authors' tedrec.py (github.com/Sherry-XLL/TedRec).

TedRec is RecBole's SASRec (sasrec_ref.SASRec here) with its input embedding replaced by the
frequency-domain fusion of the item-ID sequence and the text sequence (torch.fft, norm "ortho",
over all max_seq_length positions, padding included), the text coming from frozen features
through a mixture-of-experts adaptor whose experts subtract a per-position bias. Loss: CE over
cos(seq_output, item_embedding) / temperature.

The adaptor's noisy gating draws torch.randn_like in training; here the noise is an argument
(`gate_noise`), so the golden case fixes it and duaf's model is fed the same draws.

Parameter names are the reference's state_dict keys; the frozen plm_embedding is passed in as
a plain tensor (`text_table`), not a parameter.

Importing this module requires torch; callers check for it first.
"""

import torch
from torch import nn
import torch.nn.functional as F

from sasrec_ref import SASRec


class DTRLayer(nn.Module):
    """One expert: lin(dropout(x) - bias), bias [1, max_seq_length, input_size]."""

    def __init__(self, input_size, output_size, dropout, max_seq_length):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.bias = nn.Parameter(torch.zeros(1, max_seq_length, input_size))
        self.lin = nn.Linear(input_size, output_size, bias=False)
        self.lin.weight.data.normal_(mean=0.0, std=0.02)

    def forward(self, x):
        return self.lin(self.dropout(x) - self.bias)


class MoEAdaptorLayer(nn.Module):
    def __init__(self, n_exps, layers, dropout, max_seq_length, noise=True):
        super().__init__()
        self.n_exps = n_exps
        self.noisy_gating = noise
        self.experts = nn.ModuleList(
            [DTRLayer(layers[0], layers[1], dropout, max_seq_length) for _ in range(n_exps)])
        self.w_gate = nn.Parameter(torch.zeros(layers[0], n_exps))
        self.w_noise = nn.Parameter(torch.zeros(layers[0], n_exps))

    def gates(self, x, gate_noise=None):
        clean = x @ self.w_gate
        if self.noisy_gating and self.training:
            std = F.softplus(x @ self.w_noise) + 1e-2
            eps = torch.randn_like(clean) if gate_noise is None else gate_noise
            return F.softmax(clean + eps * std, dim=-1)
        return F.softmax(clean, dim=-1)

    def forward(self, x, gate_noise=None):
        g = self.gates(x, gate_noise)
        outs = torch.cat([e(x).unsqueeze(-2) for e in self.experts], dim=-2)  # [B, L, E, d]
        return (g.unsqueeze(-1) * outs).sum(dim=-2)


class TedRec(SASRec):
    def __init__(self, n_items, max_seq_length, text_dim, n_exps=8, adaptor_dropout_prob=0.2,
                 temperature=0.07, **sasrec_kwargs):
        super().__init__(n_items, max_seq_length, **sasrec_kwargs)
        h = self.item_embedding.weight.shape[1]
        self.temperature = temperature
        self.item_gating = nn.Linear(h, 1)
        self.fusion_gating = nn.Linear(h, 1)
        self.moe_adaptor = MoEAdaptorLayer(n_exps, [text_dim, h], adaptor_dropout_prob,
                                           max_seq_length)
        self.complex_weight = nn.Parameter(
            torch.randn(1, max_seq_length // 2 + 1, h, 2, dtype=torch.float32) * 0.02)
        self.item_gating.weight.data.normal_(mean=0, std=0.02)
        self.fusion_gating.weight.data.normal_(mean=0, std=0.02)

    def contextual_convolution(self, item_emb, feature_emb, trace=None):
        n = feature_emb.shape[1]
        feature_fft = torch.fft.rfft(feature_emb, dim=1, norm="ortho")
        item_fft = torch.fft.rfft(item_emb, dim=1, norm="ortho")
        w = torch.view_as_complex(self.complex_weight)
        item_conv = torch.fft.irfft(item_fft * w, n=n, dim=1, norm="ortho")
        fusion_conv = torch.fft.irfft(feature_fft * item_fft, n=n, dim=1, norm="ortho")
        if trace is not None:
            trace["item_conv"] = item_conv
            trace["fusion_conv"] = fusion_conv
        return 2 * (item_conv * torch.sigmoid(self.item_gating(item_conv))
                    + fusion_conv * torch.sigmoid(self.fusion_gating(fusion_conv)))

    def encode(self, item_seq, item_seq_len, text_table, gate_noise=None, trace=None):
        text_emb = self.moe_adaptor(F.embedding(item_seq, text_table), gate_noise)
        pos = self.position_embedding(
            torch.arange(item_seq.size(1), device=item_seq.device).unsqueeze(0).expand_as(item_seq))
        fused = self.contextual_convolution(self.item_embedding(item_seq), text_emb, trace)
        x = self.dropout(self.LayerNorm(fused + pos))
        mask = self.get_attention_mask(item_seq).to(x.dtype)
        out = self.trm_encoder(x, mask, output_all_encoded_layers=True)[-1]
        if trace is not None:
            trace["text_emb"] = text_emb
            trace["fused"] = fused
        return self.gather_indexes(out, item_seq_len - 1)

    def ce_loss(self, seq_output, pos_items):
        s = F.normalize(seq_output, dim=1)
        e = F.normalize(self.item_embedding.weight, dim=1)
        return F.cross_entropy(s @ e.t() / self.temperature, pos_items)

    def full_sort_predict(self, seq_output):
        return F.normalize(seq_output, dim=-1) @ F.normalize(self.item_embedding.weight, dim=-1).t()
