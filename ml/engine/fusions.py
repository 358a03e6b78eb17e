"""Fusion heads: (text features, image features) -> genre logits.

Each class is registered as one or more fusion families in ``ml.engine.builtin_families``.
``forward(text, image, present=None)`` returns (logits, auxiliary logits that also get a
loss term); a modality the config does not use arrives as None. ``present`` is
(has_text, has_image), two [n] bool tensors, when the model uses both inputs: an absent
input arrives as zeros (the training mean after standardisation), and heads that can do
better with the mask (late fusion uses only the present modality's head) read it.
Attribute names are part of the saved artifacts' weight names: keep them.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


def logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


class Fusion(nn.Module):
    """Base: input dropout on each modality, then ``combine``."""

    def __init__(self, input_dropout: float):
        super().__init__()
        self.input_dropout = nn.Dropout(input_dropout)

    def forward(
        self, text: torch.Tensor | None, image: torch.Tensor | None, present=None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if text is not None:
            text = self.input_dropout(text)
        if image is not None:
            image = self.input_dropout(image)
        return self.combine(text, image, present)

    def combine(self, text, image, present=None):  # pragma: no cover - abstract
        raise NotImplementedError


class OneModality(Fusion):
    """fusion "text" or "image": one modality through an MLP."""

    def __init__(self, *, text_dim, image_dim, n_genres, hidden, dropout, input_dropout, modality: str):
        super().__init__(input_dropout)
        self.modality = modality
        self.net = mlp(text_dim if modality == "text" else image_dim, hidden, n_genres, dropout)

    def combine(self, text, image, present=None):
        return self.net(text if self.modality == "text" else image), []


def _present(text, image) -> torch.Tensor:
    parts = [x for x in (text, image) if x is not None]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class Linear(Fusion):
    """One linear layer over the concatenated features (one-vs-rest logistic regression)."""

    def __init__(self, *, text_dim, image_dim, n_genres, hidden, dropout, input_dropout):
        super().__init__(input_dropout)
        self.net = nn.Linear(text_dim + image_dim, n_genres)

    def combine(self, text, image, present=None):
        return self.net(_present(text, image)), []


class Concat(Fusion):
    """MLP over the concatenation."""

    def __init__(self, *, text_dim, image_dim, n_genres, hidden, dropout, input_dropout):
        super().__init__(input_dropout)
        self.net = mlp(text_dim + image_dim, hidden, n_genres, dropout)

    def combine(self, text, image, present=None):
        return self.net(torch.cat([text, image], dim=1)), []


class Projected(Fusion):
    """Both modalities projected (tanh) to the hidden size and combined elementwise: add,
    product, max, or gated - a gated multimodal unit (Arevalo et al. 2017) whose sigmoid
    gate per hidden unit chooses between the two projections."""

    def __init__(self, *, text_dim, image_dim, n_genres, hidden, dropout, input_dropout, op: str):
        super().__init__(input_dropout)
        self.op = op
        width = hidden if hidden > 0 else 256
        self.text_proj = nn.Linear(text_dim, width)
        self.image_proj = nn.Linear(image_dim, width)
        if op == "gated":
            self.gate = nn.Linear(text_dim + image_dim, width)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_genres))

    def combine(self, text, image, present=None):
        ht, hi = torch.tanh(self.text_proj(text)), torch.tanh(self.image_proj(image))
        if self.op == "add":
            h = ht + hi
        elif self.op == "product":
            h = ht * hi
        elif self.op == "max":
            h = torch.maximum(ht, hi)
        else:  # gated
            z = torch.sigmoid(self.gate(torch.cat([text, image], dim=1)))
            h = z * ht + (1 - z) * hi
        return self.out(h), []


class Late(Fusion):
    """One head per modality, their probabilities mixed with a learned per-genre weight."""

    def __init__(self, *, text_dim, image_dim, n_genres, hidden, dropout, input_dropout):
        super().__init__(input_dropout)
        self.text_head = mlp(text_dim, hidden, n_genres, dropout)
        self.image_head = mlp(image_dim, hidden, n_genres, dropout)
        # sigmoid(0) = 0.5: both modalities start with equal say for every genre.
        self.mix = nn.Parameter(torch.zeros(n_genres))

    def combine(self, text, image, present=None):
        lt, li = self.text_head(text), self.image_head(image)
        w = torch.sigmoid(self.mix).expand(len(lt), -1)
        if present is not None:
            # An absent input's head has nothing to say: the present one decides alone.
            has_text, has_image = (m.to(w.dtype).unsqueeze(1) for m in present)
            w = has_text * (w * has_image + (1 - has_image))
        p = w * torch.sigmoid(lt.float()) + (1 - w) * torch.sigmoid(li.float())
        return logit(p), [lt, li]


class Ensemble(Fusion):
    """Several member heads side by side, each with its own loss; probabilities averaged."""

    def __init__(self, *, text_dim, image_dim, n_genres, hidden, dropout, input_dropout, members, config):
        from .families import fusion

        super().__init__(input_dropout)
        self.members = nn.ModuleList([fusion(m).build(text_dim, image_dim, n_genres, config) for m in members])

    def forward(self, text, image, present=None):
        # Each member applies its own input dropout.
        outputs = [member(text, image, present) for member in self.members]
        probs = torch.stack([torch.sigmoid(logits.float()) for logits, _ in outputs])
        p = probs.mean(0)
        solo = [i for i, m in enumerate(self.members) if isinstance(m, (Late, OneModality))]
        if present is not None and solo and len(solo) < len(self.members):
            # A movie missing an input: only the members that answer from one input alone
            # (late fusion's per-modality heads) vote; the others were trained on both.
            partial = ~(present[0] & present[1])
            if partial.any():
                p = torch.where(partial.unsqueeze(1), probs[solo].mean(0), p)
        aux = [logits for logits, _ in outputs] + [a for _, extra in outputs for a in extra]
        return logit(p), aux
