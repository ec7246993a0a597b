"""Reference NOVA and DIF-SR in PyTorch for the golden fixtures (fixtures/golden/{nova,difsr}.json).

DIF-SR follows the authors' RecBole model (AIM-SE/DIF-SR: recbole/model/sequential_recommender/
sasrecd.py, recbole/model/layers.py DIFMultiHeadAttention / DIFTransformerEncoder /
VanillaAttention): input LN(E_id) then dropout; per layer separate query/key projections for the
item stream, the position embedding and each attribute embedding; score matrices fused by sum,
concat (Linear over the concatenated key axes, order attributes, item, position) or gate
(VanillaAttention over the streams); values from the item stream; loss CE + sum_j lambda_j *
mean BCE-with-logits(ap_j(seq_output), one_hot(attribute of the target))[:, 1:].

NOVA (Liu et al., AAAI 2021) as core/models/nova.ts describes it: R = F(E_id, P, A_1..A_m) with
F sum / concat (Linear) / gate (sum of sigmoid(f w) f); Q, K from LN(R), V from the item stream
LN(E_id); R enters every layer unchanged.

Parameter names equal core/models/{nova,difsr}.ts namedParameters(). Differences from the
authors' code, matching ours: attribute tables are parameters (the reference keeps them in plain
dicts), the item table has no padding_idx, attributes are one category index per item (an
nn.Embedding) or a Linear projection of a frozen text row, and only categorical attributes get
an attribute-prediction head.
"""

import copy
import math

import torch
from torch import nn

from sasrec_ref import FeedForward


def attention_mask(item_seq):
    ext = (item_seq != 0).unsqueeze(1).unsqueeze(2)
    ext = torch.tril(ext.expand((-1, -1, item_seq.size(-1), -1)))
    return torch.where(ext, 0.0, -10000.0)


def split_heads(x, heads):
    b, l, d = x.shape
    return x.view(b, l, heads, d // heads).permute(0, 2, 1, 3)


class AttributeEmbedding(nn.Module):
    def __init__(self, kind, width, n_categories, text_dim):
        super().__init__()
        self.kind = kind
        if kind == "category":
            self.embedding = nn.Embedding(n_categories, width)
        else:
            self.projection = nn.Linear(text_dim, width)

    def forward(self, item_seq, item_category, text_table):
        if self.kind == "category":
            return self.embedding(item_category[item_seq])
        return self.projection(text_table[item_seq])


class ValueAttentionMixin:
    def attend(self, scores, h, mask):
        b, l, d = h.shape
        scores = scores / math.sqrt(d // self.heads) + mask
        probs = self.attn_dropout(torch.softmax(scores, dim=-1))
        v = split_heads(self.value(h), self.heads)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(b, l, d)
        out = self.out_dropout(self.dense(ctx))
        return self.LayerNorm(out + h)


class NovaAttention(nn.Module, ValueAttentionMixin):
    def __init__(self, heads, d, hidden_dropout, attn_dropout, eps):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.dense = nn.Linear(d, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.out_dropout = nn.Dropout(hidden_dropout)

    def forward(self, h, fused, mask):
        q = split_heads(self.query(fused), self.heads)
        k = split_heads(self.key(fused), self.heads)
        return self.attend(torch.matmul(q, k.transpose(-1, -2)), h, mask)


class VanillaAttention(nn.Module):
    def __init__(self, hidden_dim, attn_dim):
        super().__init__()
        self.projection = nn.Sequential(nn.Linear(hidden_dim, attn_dim), nn.ReLU(True),
                                        nn.Linear(attn_dim, 1))

    def forward(self, x):
        weights = torch.softmax(self.projection(x).squeeze(-1), dim=-1)
        return (x * weights.unsqueeze(-1)).sum(dim=-2)


class DifAttention(nn.Module, ValueAttentionMixin):
    def __init__(self, heads, d, attr_dims, fusion, max_len, hidden_dropout, attn_dropout, eps):
        super().__init__()
        self.heads = heads
        self.fusion = fusion
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.query_p = nn.Linear(d, d)
        self.key_p = nn.Linear(d, d)
        self.query_layers = nn.ModuleList([nn.Linear(a, a) for a in attr_dims])
        self.key_layers = nn.ModuleList([nn.Linear(a, a) for a in attr_dims])
        if fusion == "concat":
            self.fusion_layer = nn.Linear(max_len * (2 + len(attr_dims)), max_len)
        elif fusion == "gate":
            self.fusion_layer = VanillaAttention(max_len, max_len)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.dense = nn.Linear(d, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.out_dropout = nn.Dropout(hidden_dropout)

    def scores(self, q, k, x):
        return torch.matmul(split_heads(q(x), self.heads),
                            split_heads(k(x), self.heads).transpose(-1, -2))

    def forward(self, h, pos, attrs, mask):
        item = self.scores(self.query, self.key, h)
        position = self.scores(self.query_p, self.key_p, pos)
        table = [self.scores(q, k, a) for q, k, a in zip(self.query_layers, self.key_layers, attrs)]
        if self.fusion == "sum":
            s = item + position
            for t in table:
                s = s + t
        elif self.fusion == "concat":
            s = self.fusion_layer(torch.cat(table + [item, position], dim=-1))
        else:
            s = self.fusion_layer(torch.stack(table + [item, position], dim=-2))
        return self.attend(s, h, mask)


class Layer(nn.Module):
    def __init__(self, attention, d, inner, hidden_dropout, eps):
        super().__init__()
        self.multi_head_attention = attention
        self.feed_forward = FeedForward(d, inner, hidden_dropout, "gelu", eps)

    def forward(self, h, *side):
        return self.feed_forward(self.multi_head_attention(h, *side))


class Encoder(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layer = nn.ModuleList(layers)


class SideModel(nn.Module):
    """Shared parts: embeddings, attribute tables, the final LayerNorm, gather."""

    def __init__(self, n_items, max_len, d, attributes, width, n_categories, text_dim):
        super().__init__()
        self.item_embedding = nn.Embedding(n_items, d)
        self.position_embedding = nn.Embedding(max_len, d)
        self.attribute_embeddings = nn.ModuleList(
            [AttributeEmbedding(a, width, n_categories, text_dim) for a in attributes])

    def embed(self, item_seq, item_category, text_table):
        pos_ids = torch.arange(item_seq.size(1)).unsqueeze(0).expand_as(item_seq)
        item = self.item_embedding(item_seq)
        pos = self.position_embedding(pos_ids)
        attrs = [a(item_seq, item_category, text_table) for a in self.attribute_embeddings]
        return item, pos, attrs

    @staticmethod
    def gather(h, item_seq_len):
        idx = (item_seq_len - 1).view(-1, 1, 1).expand(-1, -1, h.shape[-1])
        return h.gather(dim=1, index=idx).squeeze(1)


class Nova(SideModel):
    def __init__(self, n_items, max_len, n_layers, heads, d, inner, attributes, fusion,
                 n_categories, text_dim, eps=1e-12, hidden_dropout=0.0, attn_dropout=0.0):
        super().__init__(n_items, max_len, d, attributes, d, n_categories, text_dim)
        self.fusion = fusion
        n = len(attributes) + 2
        if fusion == "concat":
            self.concat_layer = nn.Linear(n * d, d)
        elif fusion == "gate":
            self.gate = nn.Linear(d, 1, bias=False)
        layer = Layer(NovaAttention(heads, d, hidden_dropout, attn_dropout, eps), d, inner,
                      hidden_dropout, eps)
        self.trm_encoder = Encoder([copy.deepcopy(layer) for _ in range(n_layers)])
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(hidden_dropout)

    def fuse(self, features):
        if self.fusion == "sum":
            return sum(features[1:], features[0])
        if self.fusion == "concat":
            return self.concat_layer(torch.cat(features, dim=-1))
        stack = torch.stack(features, dim=-2)  # [B, L, n, d]
        return (torch.sigmoid(self.gate(stack)) * stack).sum(dim=-2)

    def forward(self, item_seq, item_seq_len, item_category, text_table):
        item, pos, attrs = self.embed(item_seq, item_category, text_table)
        fused = self.dropout(self.LayerNorm(self.fuse([item, pos] + attrs)))
        h = self.dropout(self.LayerNorm(item))
        mask = attention_mask(item_seq).to(h.dtype)
        for layer in self.trm_encoder.layer:
            h = layer(h, fused, mask)
        return self.gather(h, item_seq_len)


class Difsr(SideModel):
    def __init__(self, n_items, max_len, n_layers, heads, d, inner, attributes, width, fusion,
                 n_categories, text_dim, eps=1e-12, hidden_dropout=0.0, attn_dropout=0.0):
        super().__init__(n_items, max_len, d, attributes, width, n_categories, text_dim)
        self.attributes = attributes
        attention = DifAttention(heads, d, [width] * len(attributes), fusion, max_len,
                                 hidden_dropout, attn_dropout, eps)
        layer = Layer(attention, d, inner, hidden_dropout, eps)
        self.trm_encoder = Encoder([copy.deepcopy(layer) for _ in range(n_layers)])
        self.ap = nn.ModuleList(
            [nn.Linear(d, n_categories) for a in attributes if a == "category"])
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(hidden_dropout)

    def forward(self, item_seq, item_seq_len, item_category, text_table):
        item, pos, attrs = self.embed(item_seq, item_category, text_table)
        h = self.dropout(self.LayerNorm(item))
        mask = attention_mask(item_seq).to(h.dtype)
        for layer in self.trm_encoder.layer:
            h = layer(h, pos, attrs, mask)
        return self.gather(h, item_seq_len)

    def attribute_losses(self, seq_output, pos_items, item_category):
        """Per categorical attribute: mean BCE-with-logits over classes 1.. (as the reference)."""
        out = []
        n_categories = self.ap[0].out_features if len(self.ap) else 0
        labels = nn.functional.one_hot(item_category[pos_items], n_categories).to(seq_output.dtype)
        for ap in self.ap:
            loss = nn.functional.binary_cross_entropy_with_logits(
                ap(seq_output), labels, reduction="none")
            out.append(loss[:, 1:].mean())
        return out
