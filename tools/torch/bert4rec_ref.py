"""Reference BERT4Rec in PyTorch, following RecBole 1.2's model.

Sources followed (RecBole 1.2):
  recbole/model/sequential_recommender/bert4rec.py   (BERT4Rec: bidirectional encoder,
                                                      output_ffn -> GELU -> output_ln head,
                                                      output_bias, CE at masked positions)
  recbole/model/layers.py                            (the encoder, shared with sasrec_ref.py)

Parameter names are RecBole's (and duaf's core/models/bert4rec.ts): item_embedding.weight
(n_items + 1 rows: padding 0, items, the mask token n_items), position_embedding.weight,
trm_encoder.*, LayerNorm.*, output_ffn.*, output_ln.*, output_bias (n_items entries, padding
included). n_items counts the padding item 0, as RecBole's dataset.num(ITEM_ID) does.

Inference here appends the mask token after the last item and drops the oldest item only when
the history already fills max_seq_length (duaf's rule; RecBole drops it always).

Importing this module requires torch; callers check for it first.
"""

import torch
from torch import nn
import torch.nn.functional as F

from sasrec_ref import SequentialEncoder, gelu


class BERT4Rec(SequentialEncoder):
    def __init__(self, n_items, max_seq_length, n_layers=2, n_heads=2, hidden_size=64,
                 inner_size=256, hidden_dropout_prob=0.2, attn_dropout_prob=0.2,
                 hidden_act="gelu", layer_norm_eps=1e-12, initializer_range=0.02):
        super().__init__(n_items + 1, max_seq_length, n_layers, n_heads, hidden_size,
                         inner_size, hidden_dropout_prob, attn_dropout_prob, hidden_act,
                         layer_norm_eps, initializer_range)
        self.n_items = n_items
        self.mask_token = n_items
        self.output_ffn = nn.Linear(hidden_size, hidden_size)
        self.output_ln = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.output_bias = nn.Parameter(torch.zeros(n_items))
        self.apply(self._init_weights)

    @staticmethod
    def get_attention_mask(item_seq):
        # RecBole get_attention_mask(bidirectional=True): padding keys only.
        ext = (item_seq != 0).unsqueeze(1).unsqueeze(2)  # [B,1,1,L]
        return torch.where(ext, 0.0, -10000.0)

    def forward(self, item_seq):
        """Output-layer states of every position [B, L, H]."""
        h = self.encode(item_seq)[2][-1]
        return self.output_ln(gelu(self.output_ffn(h)))

    def logits(self, seq_output):
        # Rows 0 .. n_items - 1 of the table (the mask token is never a candidate), plus bias.
        table = self.item_embedding.weight[: self.n_items]
        return torch.matmul(seq_output, table.transpose(0, 1)) + self.output_bias

    def masked_loss(self, masked_item_seq, masked_index, masked_targets):
        """CE at flat positions masked_index of [B, L] (mean over them)."""
        out = self.forward(masked_item_seq)
        flat = out.reshape(-1, out.size(-1))[masked_index]
        return F.cross_entropy(self.logits(flat), masked_targets), flat

    def inference_seq(self, item_seq, item_seq_len):
        rows = []
        for seq, n in zip(item_seq.tolist(), item_seq_len.tolist()):
            s = seq[:n] + [self.mask_token]
            s = s[-self.max_seq_length:]
            rows.append(s + [0] * (min(item_seq.size(1) + 1, self.max_seq_length) - len(s)))
        return torch.tensor(rows, dtype=torch.long)

    def full_sort_predict(self, item_seq, item_seq_len):
        seq = self.inference_seq(item_seq, item_seq_len)
        out = self.forward(seq)
        last = (seq != 0).sum(1) - 1
        return self.logits(out[torch.arange(seq.size(0)), last]), seq
