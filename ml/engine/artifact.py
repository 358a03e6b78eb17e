"""Model artifacts: ``model.safetensors`` (weights, normaliser statistics, TF-IDF idf) and
``config.json`` (config, genres, thresholds, image normalisation, vocabulary, encoder
fingerprints, library versions). Frozen pretrained encoders are not copied: the artifact
names their package and weights fingerprint, and loading checks it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .contracts import ImageLimits
from .data import IMAGENET_MEAN, IMAGENET_STD
from .families import encoder, fitted_keys
from .identity import package_version
from .model import GenreModel
from .trained import InputParts, TrainedModel

FORMAT = "genreweb-genre-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class ArtifactError(ValueError):
    """An artifact folder is missing files, malformed or does not match this installation."""


def library_versions() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": package_version("torchvision"),
        "numpy": np.__version__,
        "safetensors": package_version("safetensors"),
        "sentence-transformers": package_version("sentence-transformers"),
        "efficientnet-lite-pytorch": package_version("efficientnet-lite-pytorch"),
    }


def _frozen_encoder_records(model: TrainedModel) -> dict:
    cfg = model.config
    if cfg.train_mode != "frozen":
        return {}
    records = {}
    for which, name in (("text", cfg.text_encoder), ("image", cfg.image_encoder)):
        if name == "none" or encoder(name).featuriser:
            continue
        family = encoder(name)
        # {"fingerprint", "fingerprint_of"}: a hash of the identity below (checked without loading
        # the encoder) or, for a family without an identity, of its loaded weights.
        record = {"name": name, **(model.encoder_fingerprints.get(which) or {})}
        if which == "text":
            record["precision"] = cfg.text_precision
        if family.identity is not None:
            record.update(family.identity_of(cfg))
        records[which] = record
    return records


def _text_family(config: ModelConfig):
    return encoder(config.text_encoder) if config.has_text else None


def save_model(model: TrainedModel, directory) -> dict:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.model.state_dict().items()}
    cfg = model.config
    text_family, text_state = _text_family(cfg), model.parts.text_state
    # The text encoder's fitted state: JSON under its family's key, tensors prefixed by it.
    fitted = dict.fromkeys(fitted_keys())
    if text_state is not None:
        fitted[text_family.fitted_key] = text_state.to_dict()
        tensors.update(text_state.state_tensors())
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "genres": model.genres,
        "thresholds": [float(t) for t in model.thresholds],
        # per input set ("text": no poster, "image": no text) of a fused model
        "thresholds_by_inputs": {k: [float(t) for t in v] for k, v in model.thresholds_by_inputs.items()},
        # per-genre calibration per input set (ml.engine.calibration), applied at predict time
        "calibration": model.calibration,
        "dims": {
            "text": model.model.text_dim,
            "image": model.model.image_dim,
            # vocabulary size, for readers of the artifact (0 for encoders without one)
            "vocab": len(text_state) if hasattr(text_state, "__len__") else 0,
            # training movies the kNN member keeps (0: none)
            "knn_bank": int(model.model.knn.labels.shape[0]) if getattr(model.model, "knn", None) is not None else 0,
        },
        "normaliser": {
            "image_mean": list(IMAGENET_MEAN),
            "image_std": list(IMAGENET_STD),
            "image_size": cfg.image_size,
            "image_resize": "squash to image_size x image_size (eval)",
            "features": "frozen features standardised with the training mean/std stored as *_mean/*_std tensors",
        },
        **fitted,
        "frozen_encoders": _frozen_encoder_records(model),
        "history": model.history,
        "timings": model.timings,
        "trained_on": model.device,
        "library_versions": library_versions(),
    }
    (directory / CONFIG_FILE).write_text(json.dumps(document, indent=1, sort_keys=True))
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        digest.update(name.encode() + b"\0")
        digest.update((directory / name).read_bytes())
    return {"files": [CONFIG_FILE, WEIGHTS_FILE], "sha256": digest.hexdigest()}


def load_model(
    directory,
    device: str | None = None,
    cache_dir: str | None = None,
    log=None,
    image_limits: ImageLimits | None = None,
    store=None,
) -> TrainedModel:
    """The saved model; posters it is asked about are decoded under ``image_limits``; frozen
    features come from ``store`` first (an ml.engine.store.EmbeddingStore, or a FolderStore
    over ``cache_dir``), and only what is missing there runs the encoder."""
    from .train import select_device

    directory = Path(directory)
    try:
        document = json.loads((directory / CONFIG_FILE).read_text())
        tensors = load_file(str(directory / WEIGHTS_FILE))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{directory} is not a model artifact: {exc.filename} is missing") from exc
    except (json.JSONDecodeError, OSError) as exc:
        raise ArtifactError(f"{directory}: unreadable artifact: {exc}") from exc
    if document.get("format") != FORMAT or document.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{directory}: not a {FORMAT} v{FORMAT_VERSION} artifact")
    device = select_device(device)
    try:
        config = ModelConfig.from_dict(document["config"])
    except ValueError as exc:  # e.g. an encoder family this installation does not have
        raise ArtifactError(f"{directory}: {exc}") from exc
    genres = document["genres"]
    dims = document["dims"]
    text_family = _text_family(config)
    text_state = None
    if text_family is not None and text_family.fitted_key is not None:
        key = text_family.fitted_key
        if document.get(key) is None:
            raise ArtifactError(f"{directory}: the {text_family.name} encoder's fitted state ({key}) is missing")
        prefix = f"{key}."
        text_state = text_family.load_fitted(document[key], {k: v for k, v in tensors.items() if k.startswith(prefix)})
    _check_identities(directory, document.get("frozen_encoders", {}), config)
    # Weights come from the file, so pretrained encoders start empty (no ResNet warning,
    # no wasted load); MiniLM's module is built from its package and then overwritten.
    model = GenreModel(
        config,
        len(genres),
        text_dim=dims["text"],
        image_dim=dims["image"],
        text_state=text_state,
        device=device,
        pretrained=False,
        log=log,
        knn_bank=int(dims.get("knn_bank", 0)),
    )
    fitted_prefix = f"{text_family.fitted_key}." if text_family is not None and text_family.fitted_key else None
    state = {k: v for k, v in tensors.items() if not (fitted_prefix and k.startswith(fitted_prefix))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"{directory}: weights do not fit the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.to(device).eval()
    parts = InputParts(config, text_state, device, cache_dir=cache_dir, log=log, image_limits=image_limits, store=store)
    records = document.get("frozen_encoders", {})
    fingerprints = {
        k: {"fingerprint": v.get("fingerprint"), "fingerprint_of": v.get("fingerprint_of", "weights")}
        for k, v in records.items()
    }
    trained = TrainedModel(
        config,
        genres,
        model,
        parts,
        np.array(document["thresholds"], dtype=np.float32),
        document.get("history", []),
        device,
        timings=document.get("timings"),
        encoder_fingerprints=fingerprints,
        # absent from artifacts written before calibration: raw sigmoid, one threshold set
        calibration=document.get("calibration") or {},
        thresholds_by_inputs=document.get("thresholds_by_inputs") or {},
    )
    if parts.frozen is not None:
        parts.frozen.expect(fingerprints)
    return trained


def _check_identities(directory, records: dict, config: ModelConfig) -> None:
    """Refuse a frozen artifact whose pretrained weights file differs from the installed one
    (the recorded fingerprint is checked again when features are first read or computed)."""
    for which, record in records.items():
        family = encoder(record["name"])
        recorded = record.get("weights_sha256")
        if family.identity is None or not recorded:
            continue
        try:
            identity = family.identity_of(config)
        except (OSError, RuntimeError) as exc:  # e.g. a local model folder that is gone
            raise ArtifactError(f"{directory}: the {which} encoder {record['name']} is not available: {exc}") from exc
        installed = identity.get("weights_sha256")
        if installed != recorded:
            raise ArtifactError(
                f"{directory}: the installed {which} encoder {record['name']} ({identity.get('version')}) "
                f"has other weights than the one this model was trained on ({record.get('version')}); "
                "install the same encoder package version or retrain"
            )
