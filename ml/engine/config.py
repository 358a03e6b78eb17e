"""Model configuration: which encoders, which fusion, how to train.

A config is plain data (JSON round trip via ``to_dict``/``from_dict``) so the Django side
can store it on a training run and the artifact can carry it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import families

TRAIN_MODES = ("frozen", "finetune")
TEXT_PRECISIONS = ("float32", "int8")  # as ml.engine.encoders (no torch import here)
# Settings added after artifacts were first saved: a saved config without the key was made
# by code that behaved like this value (not like today's default).
LEGACY_DEFAULTS = {"text_precision": "float32"}
CALIBRATIONS = ("none", "temperature", "platt")
THRESHOLD_RULES = ("tuned", "half-best-f1")  # how ml.engine.thresholds.tune_thresholds may pick


@dataclass
class ModelConfig:
    name: str = "custom"
    # names of registered encoder families (ml.engine.families) or "none"
    text_encoder: str = "minilm"
    image_encoder: str = "efficientnet_lite0"
    fusion: str = "gated"
    train_mode: str = "frozen"
    # optimisation
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    # learning rate for pretrained encoder weights when fine-tuning (heads use ``lr``)
    encoder_lr: float = 2e-5
    weight_decay: float = 1e-2
    patience: int = 6
    # Early stopping watches val micro-F1 either at the 0.5 threshold ("fixed") or after
    # per-genre threshold tuning ("tuned": the decision rule the model will really use).
    early_stop_thresholds: str = "fixed"
    seed: int = 0
    # BCE positive-class weights from train label frequencies: none, "sqrt" of neg/pos, or "full" neg/pos
    pos_weight: bool = True
    pos_weight_power: float = 0.5
    max_pos_weight: float = 20.0
    # head
    hidden_dim: int = 512
    # fusion="ensemble": these heads train side by side on the same features, each with
    # its own loss; the prediction is the mean of their probabilities
    ensemble_members: tuple[str, ...] = ("concat", "gated", "late")
    dropout: float = 0.3
    input_dropout: float = 0.1
    # Training-time modality dropout: the probability that a training example loses one of
    # its two inputs (text or poster, chosen at random), so a fused head also learns to
    # predict from either input alone. 0 = off; only used when both encoders are set.
    modality_dropout: float = 0.0
    # Fallback heads (frozen fused models): a text-only and a poster-only head, each trained
    # exactly as the one-modality model with these settings would be, answer for an example
    # that misses one input, mixed with the fused heads' answer and the kNN member's by weights
    # chosen on val log-loss for that input set (ml.engine.train). Off = the fused heads alone.
    fallback_heads: bool = False
    # Per-genre probability calibration fitted on val logits: "none", "temperature"
    # (one scale per genre) or "platt" (scale + bias per genre: also undoes the upward shift
    # that pos_weight gives every score; on the devset's val it took ECE from 0.038 to 0.008
    # where temperature alone left 0.05). Thresholds are tuned on the calibrated probabilities.
    calibration: str = "platt"
    # How the final per-genre thresholds (per input set) follow from the calibrated val
    # scores: "tuned" (best F1 on val) or "half-best-f1" (ml.engine.thresholds.THRESHOLD_RULES)
    decision_thresholds: str = "tuned"
    # kNN member: mix the head's probabilities with the label mean of the k nearest training
    # movies (cosine over the standardised frozen features); the mixing weight is chosen on
    # val. 0 = off; frozen mode only.
    knn_k: int = 0
    # which frozen features the kNN member compares ("text", "image" or both)
    knn_inputs: tuple[str, ...] = ("text", "image")
    # text
    # which of an example's fields the text encoder reads, in this order (ml.engine.inputs)
    text_fields: tuple[str, ...] = ("overview",)
    # A local model folder for the "st_folder" text encoder (a sentence-transformers folder)
    # and a local checkpoint for the "torchvision" image encoder; recorded in the artifact.
    text_model_path: str | None = None
    image_model_path: str | None = None
    # torchvision architecture name of the "torchvision" image encoder (e.g. "resnet50")
    image_arch: str = "resnet50"
    max_tokens: int = 128
    vocab_size: int = 20000
    min_word_count: int = 2
    embedding_dim: int = 100
    rnn_hidden: int = 128
    word_vectors_path: str | None = None
    tfidf_max_features: int = 20000
    tfidf_ngrams: int = 2
    tfidf_min_df: int = 2
    # Frozen pretrained text encoder's inference precision: "int8" is torch dynamic
    # quantization of its Linear layers (CPU kernels; the encoder then runs on the CPU),
    # "float32" the weights as shipped. Part of the feature cache key and the artifact:
    # the two give (slightly) different vectors. Ignored when fine-tuning.
    text_precision: str = "float32"
    # image
    image_size: int = 224
    # Test-time flip averaging doubles the image encoder's cost and, measured on the devset's
    # validation split (fused frozen gated head, seed 0), was worth nothing: micro-F1 0.664 with
    # vs 0.663 without, macro-F1 0.595 vs 0.599, ROC-AUC 0.880 vs 0.881. Off by default.
    tta_flip: bool = False
    augment: bool = True
    # data loading; None means automatic (0 workers on CPU, several on CUDA)
    num_workers: int | None = None
    # mixed precision, used only on CUDA
    amp: bool = True
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> ModelConfig:
        def check(value, allowed, what):
            if value not in allowed:
                raise ValueError(f"{self.name}: unknown {what} {value!r}; choose one of {', '.join(allowed)}")

        check(self.text_encoder, families.encoder_names("text"), "text_encoder")
        check(self.image_encoder, families.encoder_names("image"), "image_encoder")
        check(self.fusion, families.fusion_names(), "fusion")
        check(self.train_mode, TRAIN_MODES, "train_mode")
        has_text, has_image = self.text_encoder != "none", self.image_encoder != "none"
        if not (has_text or has_image):
            raise ValueError(f"{self.name}: a model needs a text encoder, an image encoder or both")
        needs = families.fusion(self.fusion).needs
        if needs == "text" and (not has_text or has_image):
            raise ValueError(f"{self.name}: fusion {self.fusion!r} needs a text encoder and image_encoder='none'")
        if needs == "image" and (not has_image or has_text):
            raise ValueError(f"{self.name}: fusion {self.fusion!r} needs an image encoder and text_encoder='none'")
        if self.fusion == "ensemble":
            allowed = families.ensemble_member_names()
            bad = [m for m in self.ensemble_members if m not in allowed]
            if bad or len(self.ensemble_members) < 2:
                raise ValueError(f"{self.name}: ensemble_members must be two or more of {', '.join(allowed)}")
        if needs == "both" and not (has_text and has_image):
            raise ValueError(f"{self.name}: fusion {self.fusion!r} needs both a text and an image encoder")
        if self.train_mode == "frozen":
            # Learned-from-scratch encoders are only ever trained end to end.
            used = [n for n in (self.text_encoder, self.image_encoder) if n != "none"]
            learned = {n for n in used if not families.encoder(n).can_freeze}
            if learned:
                raise ValueError(
                    f"{self.name}: {', '.join(sorted(learned))} has no pretrained weights to freeze; "
                    "use train_mode='finetune'"
                )
        if self.text_precision not in TEXT_PRECISIONS:
            raise ValueError(f"{self.name}: text_precision must be one of {', '.join(TEXT_PRECISIONS)}")
        if self.early_stop_thresholds not in ("fixed", "tuned"):
            raise ValueError(f"{self.name}: early_stop_thresholds must be 'fixed' or 'tuned'")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"{self.name}: epochs, batch_size and lr must be positive")
        if not 0 <= self.dropout < 1 or not 0 <= self.input_dropout < 1:
            raise ValueError(f"{self.name}: dropout must be in [0, 1)")
        if not 0 <= self.modality_dropout < 1:
            raise ValueError(f"{self.name}: modality_dropout must be in [0, 1)")
        if self.fallback_heads and self.train_mode != "frozen":
            raise ValueError(f"{self.name}: fallback_heads needs train_mode='frozen'")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"{self.name}: calibration must be one of {', '.join(CALIBRATIONS)}")
        if self.decision_thresholds not in THRESHOLD_RULES:
            raise ValueError(f"{self.name}: decision_thresholds must be one of {', '.join(THRESHOLD_RULES)}")
        if self.knn_k < 0 or (self.knn_k and self.train_mode != "frozen"):
            raise ValueError(f"{self.name}: knn_k must be >= 0 and needs train_mode='frozen'")
        if not self.knn_inputs or any(m not in ("text", "image") for m in self.knn_inputs):
            raise ValueError(f"{self.name}: knn_inputs must name text, image or both")
        from .inputs import TEXT_FIELDS

        if not self.text_fields or any(f not in TEXT_FIELDS for f in self.text_fields):
            raise ValueError(f"{self.name}: text_fields must name one or more of {', '.join(TEXT_FIELDS)}")
        if self.image_size < 32:
            raise ValueError(f"{self.name}: image_size must be at least 32 px")
        return self

    @property
    def has_text(self) -> bool:
        return self.text_encoder != "none"

    @property
    def has_image(self) -> bool:
        return self.image_encoder != "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        data = {**LEGACY_DEFAULTS, **data}
        for name in ("ensemble_members", "text_fields", "knn_inputs"):  # JSON gives a list
            if name in data and isinstance(data[name], list):
                data[name] = tuple(data[name])
        return cls(**data).validate()

    def replace(self, **changes) -> ModelConfig:
        for name in ("ensemble_members", "text_fields", "knn_inputs"):
            if isinstance(changes.get(name), list):
                changes[name] = tuple(changes[name])
        return dataclasses.replace(self, **changes).validate()
