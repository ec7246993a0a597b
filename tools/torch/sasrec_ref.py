"""Reference SASRec in PyTorch, written to match RecBole 1.2.1 exactly.

Sources followed (RecBole 1.2.1):
  recbole/model/sequential_recommender/sasrec.py   (SASRec)
  recbole/model/layers.py                          (TransformerEncoder, TransformerLayer,
                                                    MultiHeadAttention, FeedForward)
  recbole/model/abstract_recommender.py            (SequentialRecommender.get_attention_mask,
                                                    gather_indexes)

Module and parameter names are RecBole's, so `state_dict()` keys are identical to a RecBole
SASRec checkpoint's: item_embedding.weight, position_embedding.weight,
trm_encoder.layer.{i}.multi_head_attention.{query,key,value,dense,LayerNorm}.{weight,bias},
trm_encoder.layer.{i}.feed_forward.{dense_1,dense_2,LayerNorm}.{weight,bias},
LayerNorm.{weight,bias}.

Importing this module requires torch; callers check for it first.
"""

import copy
import math

import torch
from torch import nn
import torch.nn.functional as F


def gelu(x):
    # RecBole FeedForward.gelu: the exact (erf) form.
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class MultiHeadAttention(nn.Module):
    def __init__(self, n_heads, hidden_size, hidden_dropout_prob, attn_dropout_prob,
                 layer_norm_eps):
        super().__init__()
        if hidden_size % n_heads != 0:
            raise ValueError("hidden_size must be a multiple of n_heads")
        self.num_attention_heads = n_heads
        self.attention_head_size = int(hidden_size / n_heads)
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.sqrt_attention_head_size = math.sqrt(self.attention_head_size)
        self.query = nn.Linear(hidden_size, self.all_head_size)
        self.key = nn.Linear(hidden_size, self.all_head_size)
        self.value = nn.Linear(hidden_size, self.all_head_size)
        self.softmax = nn.Softmax(dim=-1)
        self.attn_dropout = nn.Dropout(attn_dropout_prob)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.out_dropout = nn.Dropout(hidden_dropout_prob)

    def transpose_for_scores(self, x):
        return x.view(*(x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)))

    def forward(self, input_tensor, attention_mask):
        q = self.transpose_for_scores(self.query(input_tensor)).permute(0, 2, 1, 3)
        k = self.transpose_for_scores(self.key(input_tensor)).permute(0, 2, 3, 1)
        v = self.transpose_for_scores(self.value(input_tensor)).permute(0, 2, 1, 3)
        scores = torch.matmul(q, k) / self.sqrt_attention_head_size
        scores = scores + attention_mask
        probs = self.attn_dropout(self.softmax(scores))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        ctx = ctx.view(*(ctx.size()[:-2] + (self.all_head_size,)))
        hidden = self.out_dropout(self.dense(ctx))
        return self.LayerNorm(hidden + input_tensor)


class FeedForward(nn.Module):
    def __init__(self, hidden_size, inner_size, hidden_dropout_prob, hidden_act, layer_norm_eps):
        super().__init__()
        if hidden_act != "gelu":
            raise ValueError("only hidden_act='gelu' is implemented here")
        self.dense_1 = nn.Linear(hidden_size, inner_size)
        self.dense_2 = nn.Linear(inner_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout_prob)

    def forward(self, input_tensor):
        h = gelu(self.dense_1(input_tensor))
        h = self.dropout(self.dense_2(h))
        return self.LayerNorm(h + input_tensor)


class TransformerLayer(nn.Module):
    def __init__(self, n_heads, hidden_size, intermediate_size, hidden_dropout_prob,
                 attn_dropout_prob, hidden_act, layer_norm_eps):
        super().__init__()
        self.multi_head_attention = MultiHeadAttention(
            n_heads, hidden_size, hidden_dropout_prob, attn_dropout_prob, layer_norm_eps)
        self.feed_forward = FeedForward(
            hidden_size, intermediate_size, hidden_dropout_prob, hidden_act, layer_norm_eps)

    def forward(self, hidden_states, attention_mask):
        return self.feed_forward(self.multi_head_attention(hidden_states, attention_mask))


class TransformerEncoder(nn.Module):
    def __init__(self, n_layers=2, n_heads=2, hidden_size=64, inner_size=256,
                 hidden_dropout_prob=0.5, attn_dropout_prob=0.5, hidden_act="gelu",
                 layer_norm_eps=1e-12):
        super().__init__()
        layer = TransformerLayer(n_heads, hidden_size, inner_size, hidden_dropout_prob,
                                 attn_dropout_prob, hidden_act, layer_norm_eps)
        self.layer = nn.ModuleList([copy.deepcopy(layer) for _ in range(n_layers)])

    def forward(self, hidden_states, attention_mask, output_all_encoded_layers=True):
        all_layers = []
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states, attention_mask)
            if output_all_encoded_layers:
                all_layers.append(hidden_states)
        if not output_all_encoded_layers:
            all_layers.append(hidden_states)
        return all_layers


class SequentialEncoder(nn.Module):
    """What RecBole's SASRec and BERT4Rec share: item and position embeddings, the input
    LayerNorm and dropout, the transformer encoder and the weight init. Subclasses define
    get_attention_mask (causal or bidirectional) and apply _init_weights once their own modules
    exist."""

    def __init__(self, item_rows, max_seq_length, n_layers, n_heads, hidden_size, inner_size,
                 hidden_dropout_prob, attn_dropout_prob, hidden_act, layer_norm_eps,
                 initializer_range):
        super().__init__()
        self.max_seq_length = max_seq_length
        self.initializer_range = initializer_range
        self.item_embedding = nn.Embedding(item_rows, hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(max_seq_length, hidden_size)
        self.trm_encoder = TransformerEncoder(n_layers, n_heads, hidden_size, inner_size,
                                              hidden_dropout_prob, attn_dropout_prob,
                                              hidden_act, layer_norm_eps)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout_prob)

    def _init_weights(self, module):
        # RecBole: normal(0, initializer_range) for Linear and Embedding weights. Note that this
        # also overwrites the padding row 0 of item_embedding (it is NOT zero after init).
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def encode(self, item_seq):
        """(input embedding, attention mask, every layer's output [B, L, H])."""
        position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
        position_ids = position_ids.unsqueeze(0).expand_as(item_seq)
        input_emb = self.item_embedding(item_seq) + self.position_embedding(position_ids)
        input_emb = self.LayerNorm(input_emb)
        input_emb = self.dropout(input_emb)
        mask = self.get_attention_mask(item_seq).to(input_emb.dtype)
        return input_emb, mask, self.trm_encoder(input_emb, mask, output_all_encoded_layers=True)


def encode_last(model, item_emb, item_seq, item_seq_len):
    """SASRec's encoder over given item embeddings [B, L, H] (no dropout): + position embedding,
    LayerNorm, causal transformer; the output at each row's last item. `model` has
    position_embedding, LayerNorm and trm_encoder."""
    pos = torch.arange(item_seq.size(1)).unsqueeze(0).expand_as(item_seq)
    x = model.LayerNorm(item_emb + model.position_embedding(pos))
    mask = SASRec.get_attention_mask(item_seq).to(x.dtype)
    h = model.trm_encoder(x, mask, output_all_encoded_layers=True)[-1]
    return SASRec.gather_indexes(h, item_seq_len - 1)


class SASRec(SequentialEncoder):
    """RecBole 1.2.1 SASRec. n_items counts the padding item 0 (RecBole's dataset.num(ITEM_ID))."""

    def __init__(self, n_items, max_seq_length, n_layers=2, n_heads=2, hidden_size=64,
                 inner_size=256, hidden_dropout_prob=0.5, attn_dropout_prob=0.5,
                 hidden_act="gelu", layer_norm_eps=1e-12, initializer_range=0.02):
        super().__init__(n_items, max_seq_length, n_layers, n_heads, hidden_size, inner_size,
                         hidden_dropout_prob, attn_dropout_prob, hidden_act, layer_norm_eps,
                         initializer_range)
        self.n_items = n_items
        self.apply(self._init_weights)

    @staticmethod
    def get_attention_mask(item_seq):
        # RecBole 1.2.1 SequentialRecommender.get_attention_mask(bidirectional=False).
        attention_mask = item_seq != 0
        ext = attention_mask.unsqueeze(1).unsqueeze(2)  # [B,1,1,L] bool
        ext = torch.tril(ext.expand((-1, -1, item_seq.size(-1), -1)))  # [B,1,L,L]
        return torch.where(ext, 0.0, -10000.0)

    @staticmethod
    def gather_indexes(output, gather_index):
        gather_index = gather_index.view(-1, 1, 1).expand(-1, -1, output.shape[-1])
        return output.gather(dim=1, index=gather_index).squeeze(1)

    def forward(self, item_seq, item_seq_len, trace=None):
        input_emb, mask, layers = self.encode(item_seq)
        if trace is not None:
            trace["input_emb"] = input_emb
            trace["attention_mask"] = mask
            for i, out in enumerate(layers):
                trace[f"layer{i}_output"] = out
        return self.gather_indexes(layers[-1], item_seq_len - 1)

    def ce_loss(self, seq_output, pos_items):
        logits = torch.matmul(seq_output, self.item_embedding.weight.transpose(0, 1))
        return F.cross_entropy(logits, pos_items), logits

    def full_sort_predict(self, item_seq, item_seq_len):
        seq_output = self.forward(item_seq, item_seq_len)
        return torch.matmul(seq_output, self.item_embedding.weight.transpose(0, 1))
