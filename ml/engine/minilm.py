"""all-MiniLM-L6-v2 in plain PyTorch: the BERT encoder, mean pooling and L2 normalisation
that sentence-transformers runs for this model, without importing sentence-transformers or
transformers.

Why: those two packages pull in torch._dynamo, torch.distributed, sympy and torchvision,
~350 MB resident in every process that encodes a text (measured: `import torch` 713 MB,
`+ sentence_transformers` 1,063 MB, `+ tokenizers` 717 MB), which kept a cold fused
batch-predict worker over its memory budget. The weights are the package's own
model.safetensors and the module names are sentence-transformers' (``0.model.<BERT
name>``), so state dicts, weight fingerprints and fine-tuned artifacts stay as they were;
its vectors equal sentence-transformers' to float rounding (tested).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# Batches pad to a multiple of 16 tokens (the mask keeps the padding out of every vector):
# with one padded length per batch the activations come in ~130 sizes that glibc's heap
# cannot reuse for each other, and a process encoding the devset's 2,474 overviews peaked at
# 1,024-1,222 MB over 7 runs; padded to a multiple of 16 (8 sizes at 128 tokens) at
# 987-1,075 MB over 6, for 3-13 % more text time (single process, two threads).
PAD_TO_MULTIPLE = 16


class _Embeddings(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        hidden = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], hidden, padding_idx=cfg.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=cfg["layer_norm_eps"])
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"])

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(positions)[None]
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        hidden = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dropout_p = cfg["attention_probs_dropout_prob"]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape

        def split(t):
            return t.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.query(x)),
            split(self.key(x)),
            split(self.value(x)),
            attn_mask=mask,
            dropout_p=self.dropout_p if self.training else 0.0,
        )
        return out.transpose(1, 2).reshape(batch, length, hidden)


class _AddNorm(nn.Module):
    """BERT's ``...output``: dense, dropout, LayerNorm of the residual sum."""

    def __init__(self, cfg: dict, inner: int):
        super().__init__()
        self.dense = nn.Linear(inner, cfg["hidden_size"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"])

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.self = _SelfAttention(cfg)  # BERT's name for it
        self.output = _AddNorm(cfg, cfg["hidden_size"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # BERT's "gelu" is the exact (erf) one


class _Layer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.attention = _Attention(cfg)
        self.intermediate = _Intermediate(cfg)
        self.output = _AddNorm(cfg, cfg["intermediate_size"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg["num_hidden_layers"]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class _Pooler(nn.Module):
    """Part of the checkpoint (kept so state dicts match); a sentence embedding does not use it."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["hidden_size"])


class BertModel(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only BERT checkpoints with gelu and absolute positions are supported")
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.pooler = _Pooler(cfg)

    def forward(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        mask = attention_mask.bool()[:, None, None, :]  # True = attend; padding keys are masked
        return self.encoder(self.embeddings(input_ids, token_type_ids), mask)


class _Transformer(nn.Module):
    """sentence-transformers' module 0: holds the BERT as ``model`` (its state-dict names)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.model = BertModel(cfg)


class SentenceMiniLM(nn.Module):
    """BERT + mean pooling over real tokens + L2 normalisation, from a sentence-transformers
    folder (config.json, model.safetensors, tokenizer.json)."""

    def __init__(self, folder: str | Path, max_tokens: int = 128, device: str = "cpu"):
        super().__init__()
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        # (Not built on the meta device: initialising meta tensors imports torch._dynamo and
        # sympy, ~200 MB. The random init is dropped by ``assign``, before any batch runs.)
        self.add_module("0", _Transformer(cfg))
        state = {
            f"0.model.{k}": v
            for k, v in load_file(str(folder / "model.safetensors")).items()
            if k != "embeddings.position_ids"
        }
        self.load_state_dict(state, strict=True, assign=True)  # the checkpoint's tensors become the parameters
        self.to(device)
        self.max_tokens = min(max_tokens, cfg["max_position_embeddings"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        self.tokenizer.enable_padding(
            pad_id=cfg.get("pad_token_id", 0), pad_token="[PAD]", pad_to_multiple_of=PAD_TO_MULTIPLE
        )

    @property
    def bert(self) -> BertModel:
        return getattr(self, "0").model

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """What sentence-transformers' tokenize gives, padded to the batch's longest text
        rounded up to a multiple of PAD_TO_MULTIPLE tokens."""
        encoded = self.tokenizer.encode_batch([str(t).strip() for t in texts])
        return {
            "input_ids": torch.tensor([e.ids for e in encoded], dtype=torch.long),
            "token_type_ids": torch.tensor([e.type_ids for e in encoded], dtype=torch.long),
            "attention_mask": torch.tensor([e.attention_mask for e in encoded], dtype=torch.long),
        }

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = features["attention_mask"]
        tokens = self.bert(features["input_ids"], mask, features["token_type_ids"])
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)
