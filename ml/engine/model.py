"""The genre network: optional text encoder + optional image encoder + a fusion head.

Which encoders and which head are looked up in the family registries (ml.engine.families).
In ``frozen`` mode the encoders run once outside the network (features cached) and the
network is just the head, fed standardised features. In ``finetune`` mode the encoders are
part of the network and train with it. Featurisers (TF-IDF) feed precomputed features in
both modes.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from .config import ModelConfig
from .families import encoder, fusion
from .fusions import logit, mlp
from .inputs import ALL, IMAGE_ONLY, INPUT_SETS, TEXT_ONLY

# The inputs a fused model's fallback heads answer from alone.
PARTIAL_INPUTS = ("text", "image")
# The columns of a fallback model's ``input_mix``: the text-only head's weight, the
# poster-only head's weight (the fused heads get the rest), then the kNN member's weight.
MIX_COLUMNS = ("text", "image", "knn")


__all__ = ["GenreModel", "mlp"]


class GenreModel(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        n_genres: int,
        *,
        text_dim: int = 0,
        image_dim: int = 0,
        text_state=None,
        device: str = "cpu",
        pretrained: bool = True,
        log=None,
        knn_bank: int = 0,
    ):
        super().__init__()
        self.config = config
        self.text_encoder: nn.Module | None = None
        self.image_encoder: nn.Module | None = None
        finetune = config.train_mode == "finetune"
        text_family = encoder(config.text_encoder) if config.has_text else None
        image_family = encoder(config.image_encoder) if config.has_image else None
        # Featurisers and frozen encoders give precomputed features of width text_dim/image_dim.
        if text_family is not None and finetune and not text_family.featuriser:
            self.text_encoder = text_family.build(
                config, fitted=text_state, device=device, pretrained=pretrained, log=log
            )
            text_dim = self.text_encoder.dim
        if image_family is not None and finetune:
            self.image_encoder = image_family.build(config, fitted=None, device=device, pretrained=pretrained, log=log)
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
        self.text_norm = nn.LayerNorm(text_dim) if finetune and text_family and text_family.pretrained else None
        self.image_norm = nn.LayerNorm(image_dim) if finetune and image_family and image_family.pretrained else None
        self.head = fusion(config.fusion).build(text_dim, image_dim, n_genres, config, tuple(config.ensemble_members))
        # The kNN member (frozen mode): training features and labels, filled by fit().
        self.knn = None
        if config.knn_k and knn_bank and not finetune:
            from .knn import KNNMember

            self.knn = KNNMember(
                knn_bank,
                text_dim if config.has_text and "text" in config.knn_inputs else 0,
                image_dim if config.has_image and "image" in config.knn_inputs else 0,
                n_genres,
                config.knn_k,
            )
        # Fallback heads (config.fallback_heads): a text-only and a poster-only head that answer
        # for a movie missing one input, filled by fit() with one-modality models' heads.
        # Built under a forked generator so the fused heads train exactly as without them.
        self.fallback = None
        if config.fallback_heads and config.has_text and config.has_image and not finetune:
            with torch.random.fork_rng(devices=[]):
                self.fallback = nn.ModuleDict(
                    {m: fusion(m).build(text_dim, image_dim, n_genres, config) for m in PARTIAL_INPUTS}
                )
            # Per input set (rows: ml.engine.inputs.INPUT_SETS), how the answer is mixed
            # (columns: MIX_COLUMNS); chosen on val by fit(). Zeros: the fused heads alone.
            self.register_buffer("input_mix", torch.zeros(len(INPUT_SETS), len(MIX_COLUMNS)))
        # Heads written before input masks existed take (text, image) only.
        self._head_takes_present = "present" in inspect.signature(self.head.forward).parameters

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
        cfg = self.config
        n = len(batch["index"])
        device = next(iter(v for k, v in batch.items() if torch.is_tensor(v) and k != "index"), batch["index"]).device
        has_text = batch["has_text"].bool() if "has_text" in batch else torch.ones(n, dtype=torch.bool, device=device)
        has_image = (
            batch["has_image"].bool() if "has_image" in batch else torch.ones(n, dtype=torch.bool, device=device)
        )
        if self.training and cfg.modality_dropout > 0 and cfg.has_text and cfg.has_image:
            # Modality dropout: some examples lose their text or their poster (never their
            # last input), so the head learns to answer from either one alone.
            drop = torch.rand(n, device=device) < cfg.modality_dropout
            pick_text = torch.rand(n, device=device) < 0.5
            both = has_text & has_image
            has_text = has_text & ~(drop & pick_text & both)
            has_image = has_image & ~(drop & ~pick_text & both)
        if self.config.has_text:
            if "text_feat" in batch:
                text = (batch["text_feat"] - self.text_mean) / self.text_std
            else:
                text = self.text_encoder(batch["text_input"])
            if self.text_norm is not None:
                text = self.text_norm(text)
            # A movie without text contributes the average text (zero after standardising).
            text = text * has_text.to(text.dtype).unsqueeze(1)
        if self.config.has_image:
            if "image_feat" in batch:
                image = (batch["image_feat"] - self.image_mean) / self.image_std
            else:
                image = self.image_encoder(batch["image"])
                if self.image_norm is not None:
                    image = self.image_norm(image)
            # A movie without a poster contributes the average image (zero after standardising).
            image = image * has_image.to(image.dtype).unsqueeze(1)
        if self._head_takes_present and cfg.has_text and cfg.has_image:
            logits, aux = self.head(text, image, present=(has_text, has_image))
        else:
            logits, aux = self.head(text, image)
        if self.training:
            return logits, aux
        if self.fallback is not None:
            logits = self._mix(logits, text, image, has_text, has_image)
        elif self.knn is not None and float(self.knn.alpha) > 0:
            alpha = self.knn.alpha
            p = (1 - alpha) * torch.sigmoid(logits.float()) + alpha * self.knn(text, image, has_text, has_image)
            logits = logit(p)
        return logits, aux

    def mix_parts(self, heads, text, image, has_text, has_image) -> dict:
        """What a model with fallback heads mixes (probabilities [n, G], eval mode): the fused
        heads' answer ("heads", from their logits), the fallback heads' ("text", "image") and
        the kNN member's ("knn"; None without one)."""
        out = {"heads": torch.sigmoid(heads.float())}
        out.update({m: torch.sigmoid(self.fallback[m](text, image)[0].float()) for m in PARTIAL_INPUTS})
        out["knn"] = self.knn(text, image, has_text, has_image).float() if self.knn is not None else None
        return out

    def _mix(self, heads, text, image, has_text, has_image):
        """Each row's answer mixed by its input set's weights (``input_mix``)."""
        parts = self.mix_parts(heads, text, image, has_text, has_image)
        which = torch.full_like(has_text, INPUT_SETS.index(ALL), dtype=torch.long)
        which[has_text & ~has_image] = INPUT_SETS.index(TEXT_ONLY)
        which[has_image & ~has_text] = INPUT_SETS.index(IMAGE_ONLY)
        w = self.input_mix[which]  # [n, 3]
        w_text, w_image, alpha = (w[:, i : i + 1] for i in range(3))
        p = (1 - w_text - w_image) * parts["heads"] + w_text * parts["text"] + w_image * parts["image"]
        if parts["knn"] is not None:
            p = (1 - alpha) * p + alpha * parts["knn"]
        return logit(p)

    def standardised(self, batch: dict) -> tuple:
        """(text, image, has_text, has_image) as the head sees them in eval mode (frozen mode)."""
        n = len(batch["index"])
        ones = torch.ones(n, dtype=torch.bool)
        has_text = batch.get("has_text", ones).bool()
        has_image = batch.get("has_image", ones).bool()
        text = image = None
        if self.config.has_text:
            text = (batch["text_feat"] - self.text_mean) / self.text_std * has_text.float().unsqueeze(1)
        if self.config.has_image:
            image = (batch["image_feat"] - self.image_mean) / self.image_std * has_image.float().unsqueeze(1)
        return text, image, has_text, has_image
