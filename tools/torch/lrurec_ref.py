"""Reference LRURec in PyTorch, written from the authors' model/lru.py (github.com/yueqirex/LRURec).

The recurrence is computed by its definition, a plain loop h_t = lambda * h_{t-1} + u_t in complex
arithmetic, so the golden fixture checks duaf's Toeplitz-matmul formulation against it.
`parallel_scan_left_padded` re-does the authors' masked log-depth scan on left-padded input; the
golden case asserts it gives the loop's values at every valid position (the padding argument in
core/models/lrurec.ts).

Parameter names are duaf's (core/models/lrurec.ts): the reference's complex in_proj / out_proj are
stored as real pairs in_proj_re / in_proj_im (weight, bias) and out_proj_re (weight, bias) /
out_proj_im (weight; the imaginary output bias never reaches Re(.)). A checkpoint of the authors'
code maps onto these names by taking .real / .imag.

Importing this module requires torch; callers check for it first.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F


class LRULayer(nn.Module):
    def __init__(self, d, dropout, r_min=0.8, r_max=0.99, generator=None):
        super().__init__()
        c = 2 * d
        u1 = torch.rand(c, generator=generator)
        u2 = torch.rand(c, generator=generator)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
        theta_log = torch.log(u2 * 2 * math.pi)
        r = torch.exp(-torch.exp(nu_log))
        gamma_log = torch.log(torch.sqrt(1 - r ** 2))
        self.params_log = nn.Parameter(torch.stack((nu_log, theta_log, gamma_log)))
        self.in_proj_re = nn.Linear(d, c)
        self.in_proj_im = nn.Linear(d, c)
        self.out_proj_re = nn.Linear(c, d)
        self.out_proj_im = nn.Linear(c, d, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(d)

    def lam_gamma_u(self, x):
        nu, theta, gamma = torch.exp(self.params_log)
        lam = torch.exp(torch.complex(-nu, theta))
        u = torch.complex(self.in_proj_re(x), self.in_proj_im(x)) * gamma
        return lam, u

    def out(self, h, x):
        y = self.out_proj_re(h.real) - self.out_proj_im(h.imag)  # Re(C h + b_C)
        return self.layer_norm(self.dropout(y) + x)

    def forward(self, x):
        lam, u = self.lam_gamma_u(x)
        h = torch.zeros_like(u[:, 0])
        hs = []
        for t in range(x.shape[1]):
            h = lam * h + u[:, t]
            hs.append(h)
        return self.out(torch.stack(hs, dim=1), x)


def parallel_scan_left_padded(u, lam, mask):
    """The authors' scan: u [B, L, C] complex, L a power of two, mask [B, L] (False = padding).
    At level i, the second half of every block of 2^i steps adds lam^(1..2^(i-1)) times the last
    state of the first half, unless that position is padding."""
    b, length, c = u.shape
    h = u
    lam_pows = lam.unsqueeze(0)  # [1, C]: lam^1
    levels = int(math.log2(length))
    for i in range(1, levels + 1):
        blk = 2 ** i
        half = blk // 2
        if i > 1:
            lam_pows = torch.cat((lam_pows, lam_pows * lam_pows[-1]), 0)
        hb = h.reshape(b * length // blk, blk, c)
        mb = mask.reshape(b * length // blk, blk)
        h1, h2 = hb[:, :half], hb[:, half:]
        carry = h1[:, -1:] * mb[:, half - 1:half].unsqueeze(-1)
        h = torch.cat([h1, h2 + lam_pows * carry], dim=1).reshape(b, length, c)
    return h


class PositionwiseFeedForward(nn.Module):
    def __init__(self, d, dropout):
        super().__init__()
        self.w_1 = nn.Linear(d, 4 * d)
        self.w_2 = nn.Linear(4 * d, d)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, x):
        h = self.dropout(F.gelu(self.w_1(x)))  # torch's GELU: the exact (erf) form
        return self.layer_norm(self.dropout(self.w_2(h)) + x)


class LRUBlock(nn.Module):
    def __init__(self, d, dropout, attn_dropout, generator=None):
        super().__init__()
        self.lru_layer = LRULayer(d, attn_dropout, generator=generator)
        self.feed_forward = PositionwiseFeedForward(d, dropout)

    def forward(self, x):
        return self.feed_forward(self.lru_layer(x))


class LRUEmbedding(nn.Module):
    def __init__(self, n_rows, d, dropout):
        super().__init__()
        self.token = nn.Embedding(n_rows, d)
        self.layer_norm = nn.LayerNorm(d)
        self.embed_dropout = nn.Dropout(dropout)

    def forward(self, items):
        return self.layer_norm(self.embed_dropout(self.token(items)))


class LRUModel(nn.Module):
    def __init__(self, n_rows, d, n_blocks, dropout, attn_dropout, generator=None):
        super().__init__()
        self.lru_blocks = nn.ModuleList(
            [LRUBlock(d, dropout, attn_dropout, generator) for _ in range(n_blocks)])
        self.bias = nn.Parameter(torch.zeros(n_rows))


class LRURec(nn.Module):
    """n_items counts the padding row 0 (embedding rows), as SASRec's reference here."""

    def __init__(self, n_items, d, n_blocks, dropout=0.0, attn_dropout=0.0, generator=None):
        super().__init__()
        self.embedding = LRUEmbedding(n_items, d, dropout)
        self.model = LRUModel(n_items, d, n_blocks, dropout, attn_dropout, generator)

    def encode(self, items, trace=None):
        x = self.embedding(items)
        for i, block in enumerate(self.model.lru_blocks):
            x = block(x)
            if trace is not None:
                trace[f"block{i}.output"] = x
        return x

    def scores(self, h):
        return h @ self.embedding.token.weight.t() + self.model.bias
