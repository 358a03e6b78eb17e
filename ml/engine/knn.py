"""The kNN member: a non-parametric opinion mixed into a frozen model's probabilities.

For each movie, the k training movies with the most similar standardised frozen features
(cosine similarity over ``config.knn_inputs``: text, poster or both, averaged over the
inputs both movies have) vote with
their labels, weighted by a softmax over the similarities. ``fit`` stores the training
features and labels as buffers (so the artifact carries them) and chooses the mixing
weight ``alpha`` on val by log-loss; alpha 0 leaves the head's probabilities as they are.
"""

from __future__ import annotations

import torch
from torch import nn

# softmax temperature over cosine similarities (1/10): near neighbours count more
SIMILARITY_SHARPNESS = 10.0
ALPHA_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-6)


class KNNMember(nn.Module):
    def __init__(self, n_bank: int, text_dim: int, image_dim: int, n_genres: int, k: int):
        super().__init__()
        self.k = k
        self.register_buffer("bank_text", torch.zeros(n_bank, text_dim))
        self.register_buffer("bank_image", torch.zeros(n_bank, image_dim))
        self.register_buffer("labels", torch.zeros(n_bank, n_genres))
        self.register_buffer("alpha", torch.zeros(()))

    def set_bank(self, text, image, labels) -> None:
        if text is not None and self.bank_text.shape[1]:
            self.bank_text.copy_(_unit(torch.as_tensor(text, dtype=torch.float32)))
        if image is not None and self.bank_image.shape[1]:
            self.bank_image.copy_(_unit(torch.as_tensor(image, dtype=torch.float32)))
        self.labels.copy_(torch.as_tensor(labels, dtype=torch.float32))

    def forward(self, text, image, has_text, has_image) -> torch.Tensor:
        """Neighbour label means [n, G] for standardised features (missing inputs are zeros)."""
        sim, count = 0.0, 0.0
        bank_has_text = self.bank_text.norm(dim=1) > 0
        bank_has_image = self.bank_image.norm(dim=1) > 0
        if text is not None and self.bank_text.shape[1]:
            both = has_text.float().unsqueeze(1) * bank_has_text.float().unsqueeze(0)
            sim = sim + (_unit(text.float()) @ self.bank_text.T) * both
            count = count + both
        if image is not None and self.bank_image.shape[1]:
            both = has_image.float().unsqueeze(1) * bank_has_image.float().unsqueeze(0)
            sim = sim + (_unit(image.float()) @ self.bank_image.T) * both
            count = count + both
        prior = self.labels.mean(0)
        if not torch.is_tensor(count):  # none of the compared inputs in this model
            return prior.expand(len(has_text), -1)
        sim = sim / count.clamp(min=1)
        top = sim.topk(min(self.k, sim.shape[1]), dim=1)
        weights = torch.softmax(top.values * SIMILARITY_SHARPNESS, dim=1)
        votes = (weights.unsqueeze(-1) * self.labels[top.indices]).sum(1)
        # A movie without any compared input has no neighbours: the training label rates.
        alone = count.sum(1) == 0
        return torch.where(alone.unsqueeze(1), prior.expand_as(votes), votes)
