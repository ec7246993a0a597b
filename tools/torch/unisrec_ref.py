"""Reference UniSRec in PyTorch, written after the authors' code (github.com/RUCAIBox/UniSRec:
unisrec.py, data/transform.py, props/UniSRec.yaml) on the RecBole 1.2 SASRec of sasrec_ref.py.

Differences that only make the reference deterministic for a fixture:
  - the gate noise N(0, 1) of the noisy gating is an argument (`noise`) instead of
    torch.randn_like inside the layer, so both sides can use the same draws;
  - the pre-training's augmented view (item_seq_aug, item_seq_len_aug, its text vectors) is an
    argument instead of being drawn in the data loader.

Parameter names follow the reference (state_dict keys identical): item_embedding.weight
(transductive fine-tuning only), position_embedding.weight, trm_encoder.*, LayerNorm.*,
moe_adaptor.w_gate, moe_adaptor.w_noise, moe_adaptor.experts.{k}.bias,
moe_adaptor.experts.{k}.lin.weight.

Importing this module requires torch; callers check for it first.
"""

import torch
from torch import nn
import torch.nn.functional as F

from sasrec_ref import SASRec, TransformerEncoder


class PWLayer(nn.Module):
    """(dropout(x) - b) W: parametric whitening, W without bias."""

    def __init__(self, input_size, output_size, dropout=0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(input_size))
        self.lin = nn.Linear(input_size, output_size, bias=False)
        nn.init.normal_(self.lin.weight, std=0.02)

    def forward(self, x):
        return self.lin(self.dropout(x) - self.bias)


class MoEAdaptorLayer(nn.Module):
    def __init__(self, n_exps, layers, dropout=0.0, noise=True):
        super().__init__()
        self.n_exps = n_exps
        self.noisy_gating = noise
        self.experts = nn.ModuleList([PWLayer(layers[0], layers[1], dropout) for _ in range(n_exps)])
        self.w_gate = nn.Parameter(torch.zeros(layers[0], n_exps))
        self.w_noise = nn.Parameter(torch.zeros(layers[0], n_exps))

    def gates(self, x, noise):
        logits = x @ self.w_gate
        if self.noisy_gating and self.training:
            std = F.softplus(x @ self.w_noise) + 1e-2
            logits = logits + noise.reshape(logits.shape) * std
        return F.softmax(logits, dim=-1)

    def forward(self, x, noise=None):
        g = self.gates(x, noise)
        out = torch.cat([e(x).unsqueeze(-2) for e in self.experts], dim=-2)
        return (g.unsqueeze(-1) * out).sum(dim=-2)


class UniSRec(nn.Module):
    def __init__(self, n_items, max_seq_length, plm_embedding, train_stage, n_layers=2,
                 n_heads=2, hidden_size=64, inner_size=256, hidden_dropout_prob=0.5,
                 attn_dropout_prob=0.5, layer_norm_eps=1e-12, n_exps=8,
                 adaptor_dropout_prob=0.2, temperature=0.07, lam=1e-3):
        super().__init__()
        assert train_stage in ("pretrain", "inductive_ft", "transductive_ft")
        self.train_stage = train_stage
        self.temperature = temperature
        self.lam = lam
        if train_stage == "transductive_ft":
            self.item_embedding = nn.Embedding(n_items, hidden_size, padding_idx=0)
        else:
            self.item_embedding = None
        self.position_embedding = nn.Embedding(max_seq_length, hidden_size)
        self.trm_encoder = TransformerEncoder(n_layers, n_heads, hidden_size, inner_size,
                                              hidden_dropout_prob, attn_dropout_prob, "gelu",
                                              layer_norm_eps)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout_prob)
        self.plm_embedding = plm_embedding  # frozen [n_items, plm_size], a plain tensor
        self.moe_adaptor = MoEAdaptorLayer(n_exps, [plm_embedding.shape[1], hidden_size],
                                           adaptor_dropout_prob)

    def forward(self, item_seq, item_emb, item_seq_len):
        position_ids = torch.arange(item_seq.size(1), dtype=torch.long).unsqueeze(0)
        x = item_emb + self.position_embedding(position_ids.expand_as(item_seq))
        if self.train_stage == "transductive_ft":
            x = x + self.item_embedding(item_seq)
        x = self.dropout(self.LayerNorm(x))
        mask = SASRec.get_attention_mask(item_seq).to(x.dtype)
        out = self.trm_encoder(x, mask, output_all_encoded_layers=True)[-1]
        return SASRec.gather_indexes(out, item_seq_len - 1)

    def _contrast(self, seq_output, other, same_pos_id):
        pos = torch.exp((seq_output * other).sum(dim=1, keepdim=True) / self.temperature)
        neg = torch.matmul(seq_output, other.transpose(0, 1)) / self.temperature
        neg = torch.where(same_pos_id, torch.zeros((), dtype=neg.dtype), neg)
        neg = torch.exp(neg).sum(dim=1)
        return (-torch.log(pos / neg)).mean()

    def pretrain_loss(self, item_seq, item_seq_len, pos_id, item_seq_aug, item_seq_len_aug,
                      noise_seq, noise_pos, noise_aug):
        emb = self.moe_adaptor(self.plm_embedding[item_seq], noise_seq)
        seq_output = F.normalize(self.forward(item_seq, emb, item_seq_len), dim=1)
        same = pos_id.unsqueeze(1) == pos_id.unsqueeze(0)
        same = torch.logical_xor(same, torch.eye(pos_id.shape[0], dtype=torch.bool))
        pos_emb = F.normalize(self.moe_adaptor(self.plm_embedding[pos_id], noise_pos), dim=1)
        seq_item = self._contrast(seq_output, pos_emb, same)
        emb_aug = self.moe_adaptor(self.plm_embedding[item_seq_aug], noise_aug)
        aug = F.normalize(self.forward(item_seq_aug, emb_aug, item_seq_len_aug), dim=1)
        seq_seq = self._contrast(seq_output, aug, same)
        return seq_item + self.lam * seq_seq, seq_item, seq_seq

    def item_table(self, noise=None):
        v = self.moe_adaptor(self.plm_embedding, noise)
        if self.train_stage == "transductive_ft":
            v = v + self.item_embedding.weight
        return v

    def finetune_loss(self, item_seq, item_seq_len, pos_items, noise_seq, noise_table):
        emb = self.moe_adaptor(self.plm_embedding[item_seq], noise_seq)
        seq_output = F.normalize(self.forward(item_seq, emb, item_seq_len), dim=1)
        table = F.normalize(self.item_table(noise_table), dim=1)
        logits = torch.matmul(seq_output, table.transpose(0, 1)) / self.temperature
        return F.cross_entropy(logits, pos_items), seq_output, logits

    def full_sort_predict(self, item_seq, item_seq_len):
        emb = self.moe_adaptor(self.plm_embedding[item_seq])
        seq_output = F.normalize(self.forward(item_seq, emb, item_seq_len), dim=-1)
        table = F.normalize(self.item_table(), dim=-1)
        return torch.matmul(seq_output, table.transpose(0, 1))
