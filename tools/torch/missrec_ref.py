"""Reference MISSRec in PyTorch for the golden fixture (fixtures/golden/missrec.json).

After gimpong/MM23-MISSRec missrec.py / model_utils.py (seq_mm_fusion "add", item_mm_fusion
"dynamic_shared"), module for module as core/models/missrec.ts, with the same state_dict names as
its namedParameters(): the reference's nn.Transformer (post-LN, n_layers/2 encoder and decoder
layers, final encoder and decoder LayerNorms, no causal masks) is written with RecBole-named
attention blocks; `to_torch_transformer` copies the weights into a torch.nn.Transformer so the
golden case checks the two agree. Interests (centroids and lookups) are inputs here: the
reference's k-means runs in its trainer, outside the differentiated step.
"""

import torch
import torch.nn.functional as F
from torch import nn

from sasrec_ref import FeedForward, MultiHeadAttention, TransformerEncoder


class CrossAttention(MultiHeadAttention):
    def forward(self, x, memory, mask):
        q = self.transpose_for_scores(self.query(x)).permute(0, 2, 1, 3)
        k = self.transpose_for_scores(self.key(memory)).permute(0, 2, 3, 1)
        v = self.transpose_for_scores(self.value(memory)).permute(0, 2, 1, 3)
        probs = self.attn_dropout(self.softmax(torch.matmul(q, k) / self.sqrt_attention_head_size + mask))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        ctx = ctx.view(*(ctx.size()[:-2] + (self.all_head_size,)))
        return self.LayerNorm(self.out_dropout(self.dense(ctx)) + x)


class DecoderLayer(nn.Module):
    def __init__(self, heads, d, inner, eps):
        super().__init__()
        self.self_attention = MultiHeadAttention(heads, d, 0.0, 0.0, eps)
        self.cross_attention = CrossAttention(heads, d, 0.0, 0.0, eps)
        self.feed_forward = FeedForward(d, inner, 0.0, "gelu", eps)

    def forward(self, x, memory, self_mask, mem_mask):
        return self.feed_forward(self.cross_attention(self.self_attention(x, self_mask), memory, mem_mask))


def key_padding(ids):
    return ((ids == 0).to(torch.get_default_dtype()) * -10000.0)[:, None, None, :]


class MISSRec(nn.Module):
    def __init__(self, n_items, max_len, n_layers, heads, d, inner, text_dim, img_dim, eps,
                 transductive=True):
        super().__init__()
        if transductive:
            self.item_embedding = nn.Embedding(n_items, d)
        else:
            self.item_embedding = None
        self.position_embedding = nn.Embedding(max_len, d)
        self.text_adaptor = nn.Linear(text_dim, d)
        self.img_adaptor = nn.Linear(img_dim, d)
        self.fusion_factor = nn.Parameter(torch.zeros(1))
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.trm_encoder = TransformerEncoder(n_layers // 2, heads, d, inner, 0.0, 0.0, "gelu", eps)
        self.encoder_norm = nn.LayerNorm(d, eps=eps)
        self.trm_decoder = nn.ModuleList([DecoderLayer(heads, d, inner, eps) for _ in range(n_layers // 2)])
        self.decoder_norm = nn.LayerNorm(d, eps=eps)
        self.d = d

    def interest_tokens(self, item_seq, lookups):
        all_ids = torch.cat([lk[item_seq] for lk in lookups], dim=-1)
        rows = [r.unique() for r in all_ids]  # sorted, as torch.unique
        return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=0)

    def encode(self, item_seq, item_seq_len, content, centroids, lookups, trace=None):
        ids = self.interest_tokens(item_seq, lookups)
        mem_mask = key_padding(ids)
        memory = self.encoder_norm(self.trm_encoder(centroids[ids], mem_mask, output_all_encoded_layers=False)[-1])
        w = (ids != 0).to(memory.dtype).unsqueeze(-1).mean(1, keepdim=True)  # [B, 1, 1]
        pooled = (memory * w).sum(1)
        reg = (pooled * pooled).sum() / pooled.shape[1]
        pos = self.position_embedding(torch.arange(item_seq.size(1)))
        x = content + pos
        if self.item_embedding is not None:
            x = x + self.item_embedding(item_seq)
        h = self.LayerNorm(x)
        self_mask = key_padding(item_seq)
        for layer in self.trm_decoder:
            h = layer(h, memory, self_mask, mem_mask)
        h = self.decoder_norm(h)
        if trace is not None:
            trace.update(ids=ids, tokens=centroids[ids], dec_in=self.LayerNorm(x), memory=memory, hidden=h)
        s = h[torch.arange(h.size(0)), item_seq_len - 1]
        return F.normalize(s, dim=1), reg

    def content(self, item_seq, text, img, text_override=None):
        t = text_override if text_override is not None else text[item_seq]
        return self.text_adaptor(t) + self.img_adaptor(img[item_seq])

    def fused_logits(self, s, text_rows, img_rows, with_id):
        lt = s @ F.normalize(self.text_adaptor(text_rows), dim=1).T
        lv = s @ F.normalize(self.img_adaptor(img_rows), dim=1).T
        stack = torch.stack([lt, lv], dim=-1)
        agg = (stack * torch.softmax(stack * self.fusion_factor, dim=-1)).sum(-1)
        if with_id:
            agg = (s @ F.normalize(self.item_embedding.weight, dim=1).T + agg * 2) / 3
        return agg

    def finetune_loss(self, item_seq, item_seq_len, pos_items, text, img, centroids, lookups,
                      tau, gamma, trace=None):
        s, reg = self.encode(item_seq, item_seq_len, self.content(item_seq, text, img), centroids,
                             lookups, trace)
        logits = self.fused_logits(s, text, img, True) / tau
        main = F.cross_entropy(logits, pos_items)
        return s, logits, main, reg, main + gamma * reg

    def pretrain_loss(self, item_seq, item_seq_len, pos_items, aug_seq, aug_len, text, img,
                      centroids, lookups, tau, lam, gamma):
        s, reg = self.encode(item_seq, item_seq_len, self.content(item_seq, text, img), centroids, lookups)
        labels = torch.arange(s.size(0))
        seq_item = F.cross_entropy(self.fused_logits(s, text[pos_items], img[pos_items], False) / tau, labels)
        s_aug, reg_aug = self.encode(aug_seq, aug_len, self.content(aug_seq, text, img), centroids, lookups)
        seq_seq = F.cross_entropy(s @ s_aug.T / tau, labels)
        return seq_item, seq_seq, reg + reg_aug, seq_item + lam * seq_seq + gamma * (reg + reg_aug)


def to_torch_transformer(model, heads, inner, eps):
    """A torch.nn.Transformer (the reference's trm_model) with this model's encoder/decoder weights."""
    d = model.d
    n = len(model.trm_decoder)
    t = nn.Transformer(d_model=d, nhead=heads, num_encoder_layers=n, num_decoder_layers=n,
                       dim_feedforward=inner, dropout=0.0, activation="gelu", layer_norm_eps=eps,
                       batch_first=True, norm_first=False).to(model.LayerNorm.weight.dtype)

    def attn(dst, src):
        dst.in_proj_weight.copy_(torch.cat([src.query.weight, src.key.weight, src.value.weight]))
        dst.in_proj_bias.copy_(torch.cat([src.query.bias, src.key.bias, src.value.bias]))
        dst.out_proj.weight.copy_(src.dense.weight)
        dst.out_proj.bias.copy_(src.dense.bias)

    def ln(dst, src):
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)

    def ff(dst, src, norm):
        dst.linear1.weight.copy_(src.dense_1.weight)
        dst.linear1.bias.copy_(src.dense_1.bias)
        dst.linear2.weight.copy_(src.dense_2.weight)
        dst.linear2.bias.copy_(src.dense_2.bias)
        ln(norm, src.LayerNorm)

    with torch.no_grad():
        for dst, src in zip(t.encoder.layers, model.trm_encoder.layer):
            attn(dst.self_attn, src.multi_head_attention)
            ln(dst.norm1, src.multi_head_attention.LayerNorm)
            ff(dst, src.feed_forward, dst.norm2)
        ln(t.encoder.norm, model.encoder_norm)
        for dst, src in zip(t.decoder.layers, model.trm_decoder):
            attn(dst.self_attn, src.self_attention)
            ln(dst.norm1, src.self_attention.LayerNorm)
            attn(dst.multihead_attn, src.cross_attention)
            ln(dst.norm2, src.cross_attention.LayerNorm)
            ff(dst, src.feed_forward, dst.norm3)
        ln(t.decoder.norm, model.decoder_norm)
    return t
