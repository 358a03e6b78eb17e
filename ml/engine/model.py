"""The genre network: optional text encoder + optional image encoder + a fusion head.

In ``frozen`` mode the encoders run once outside the network (features cached) and the
network is just the head, fed standardised features. In ``finetune`` mode the encoders are
part of the network and train with it.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import PRETRAINED_ENCODERS, ModelConfig
from .encoders import MiniLMEncoder, RNNTextEncoder, build_image_encoder


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class FusionHead(nn.Module):
    """Maps (text features, image features) to genre logits.

    text/image: one modality through an MLP. linear: one linear layer over the concatenated
    features (one-vs-rest logistic regression). concat: MLP over the concatenation.
    add/product/max: both modalities projected (tanh) to hidden_dim and combined elementwise.
    gated: a gated multimodal unit (Arevalo et al. 2017) - a sigmoid gate per hidden unit
    chooses between the two projected modalities. late: one head per modality, their
    probabilities mixed with a learned per-genre weight. ensemble: several of the above
    side by side, each with its own loss, probabilities averaged.
    """

    def __init__(
        self,
        fusion: str,
        text_dim: int,
        image_dim: int,
        n_genres: int,
        hidden: int,
        dropout: float,
        input_dropout: float,
        members: tuple[str, ...] = (),
    ):
        super().__init__()
        self.fusion = fusion
        self.input_dropout = nn.Dropout(input_dropout)
        hidden_or_default = hidden if hidden > 0 else 256
        if fusion == "text":
            self.net = mlp(text_dim, hidden, n_genres, dropout)
        elif fusion == "image":
            self.net = mlp(image_dim, hidden, n_genres, dropout)
        elif fusion == "linear":
            self.net = nn.Linear(text_dim + image_dim, n_genres)
        elif fusion == "concat":
            self.net = mlp(text_dim + image_dim, hidden, n_genres, dropout)
        elif fusion in {"add", "product", "max", "gated"}:
            self.text_proj = nn.Linear(text_dim, hidden_or_default)
            self.image_proj = nn.Linear(image_dim, hidden_or_default)
            if fusion == "gated":
                self.gate = nn.Linear(text_dim + image_dim, hidden_or_default)
            self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_or_default, n_genres))
        elif fusion == "ensemble":
            self.members = nn.ModuleList(
                [FusionHead(m, text_dim, image_dim, n_genres, hidden, dropout, input_dropout) for m in members]
            )
        elif fusion == "late":
            self.text_head = mlp(text_dim, hidden, n_genres, dropout)
            self.image_head = mlp(image_dim, hidden, n_genres, dropout)
            # sigmoid(0) = 0.5: both modalities start with equal say for every genre.
            self.mix = nn.Parameter(torch.zeros(n_genres))
        else:
            raise ValueError(f"unknown fusion {fusion!r}")

    def forward(self, text: torch.Tensor | None, image: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns (logits, auxiliary logits that also get a loss term)."""
        f = self.fusion
        if f == "ensemble":
            outputs = [member(text, image) for member in self.members]
            p = torch.stack([torch.sigmoid(logits.float()) for logits, _ in outputs]).mean(0).clamp(1e-6, 1 - 1e-6)
            aux = [logits for logits, _ in outputs] + [a for _, extra in outputs for a in extra]
            return torch.log(p) - torch.log1p(-p), aux
        if text is not None:
            text = self.input_dropout(text)
        if image is not None:
            image = self.input_dropout(image)
        if f == "text":
            return self.net(text), []
        if f == "image":
            return self.net(image), []
        if f in {"linear", "concat"}:
            return self.net(torch.cat([text, image], dim=1)), []
        if f == "late":
            lt, li = self.text_head(text), self.image_head(image)
            w = torch.sigmoid(self.mix)
            p = w * torch.sigmoid(lt.float()) + (1 - w) * torch.sigmoid(li.float())
            p = p.clamp(1e-6, 1 - 1e-6)
            return torch.log(p) - torch.log1p(-p), [lt, li]
        ht, hi = torch.tanh(self.text_proj(text)), torch.tanh(self.image_proj(image))
        if f == "add":
            h = ht + hi
        elif f == "product":
            h = ht * hi
        elif f == "max":
            h = torch.maximum(ht, hi)
        else:  # gated
            z = torch.sigmoid(self.gate(torch.cat([text, image], dim=1)))
            h = z * ht + (1 - z) * hi
        return self.out(h), []


class GenreModel(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        n_genres: int,
        *,
        text_dim: int = 0,
        image_dim: int = 0,
        vocab_size: int = 0,
        word_vectors: torch.Tensor | None = None,
        device: str = "cpu",
        pretrained: bool = True,
        log=None,
    ):
        super().__init__()
        self.config = config
        self.text_encoder: nn.Module | None = None
        self.image_encoder: nn.Module | None = None
        finetune = config.train_mode == "finetune"
        if config.has_text:
            if config.text_encoder in {"bilstm", "gru"}:
                self.text_encoder = RNNTextEncoder(
                    config.text_encoder, vocab_size, config.embedding_dim, config.rnn_hidden, word_vectors
                )
                text_dim = self.text_encoder.dim
            elif config.text_encoder == "minilm" and finetune:
                self.text_encoder = MiniLMEncoder(config.max_tokens, device=device)
                text_dim = self.text_encoder.dim
            # else: tfidf or frozen MiniLM: precomputed features of width text_dim
        if config.has_image and finetune:
            self.image_encoder = build_image_encoder(config.image_encoder, pretrained=pretrained, log=log)
            image_dim = self.image_encoder.dim
        # Standardisation of precomputed features (identity until fit() sets train statistics).
        self.register_buffer("text_mean", torch.zeros(text_dim if self.text_encoder is None and config.has_text else 0))
        self.register_buffer("text_std", torch.ones(text_dim if self.text_encoder is None and config.has_text else 0))
        self.register_buffer(
            "image_mean", torch.zeros(image_dim if self.image_encoder is None and config.has_image else 0)
        )
        self.register_buffer(
            "image_std", torch.ones(image_dim if self.image_encoder is None and config.has_image else 0)
        )
        self.text_dim, self.image_dim = text_dim, image_dim
        # Pretrained encoders fine-tuned end to end emit features of arbitrary scale (MiniLM's
        # are unit vectors, ~0.05 per dimension); a LayerNorm gives the fresh head the same
        # well-scaled input that standardisation gives it in frozen mode.
        # (Decided by the config, not by whether weights were found, so an artifact always
        # rebuilds the same network.)
        self.text_norm = nn.LayerNorm(text_dim) if finetune and config.text_encoder in PRETRAINED_ENCODERS else None
        self.image_norm = nn.LayerNorm(image_dim) if finetune and config.image_encoder in PRETRAINED_ENCODERS else None
        self.head = FusionHead(
            config.fusion,
            text_dim,
            image_dim,
            n_genres,
            config.hidden_dim,
            config.dropout,
            config.input_dropout,
            tuple(config.ensemble_members),
        )

    def set_normaliser(self, text: tuple | None, image: tuple | None) -> None:
        for stats, prefix in ((text, "text"), (image, "image")):
            if stats is None:
                continue
            mean, std = stats
            getattr(self, f"{prefix}_mean").copy_(torch.as_tensor(mean))
            getattr(self, f"{prefix}_std").copy_(torch.as_tensor(std))

    def encoder_parameters(self):
        """Parameters of encoders that start from pretrained weights (they get the smaller
        ``encoder_lr``); encoders learned from scratch train at the head's rate."""
        for enc in (self.text_encoder, self.image_encoder):
            if enc is not None and getattr(enc, "pretrained", False):
                yield from enc.parameters()

    def forward(self, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        text = image = None
        if self.config.has_text:
            if "text_feat" in batch:
                text = (batch["text_feat"] - self.text_mean) / self.text_std
            elif isinstance(self.text_encoder, RNNTextEncoder):
                text = self.text_encoder(batch["tokens"], batch["lengths"])
            else:
                text = self.text_encoder(batch["st_features"])
            if self.text_norm is not None:
                text = self.text_norm(text)
        if self.config.has_image:
            if "image_feat" in batch:
                image = (batch["image_feat"] - self.image_mean) / self.image_std
            else:
                image = self.image_encoder(batch["image"])
                if self.image_norm is not None:
                    image = self.image_norm(image)
            # A movie without a poster contributes the average image (zero after standardising).
            image = image * batch["has_image"].to(image.dtype).unsqueeze(1)
        return self.head(text, image)
