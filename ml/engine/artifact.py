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
from .data import IMAGENET_MEAN, IMAGENET_STD, TfidfVectorizer, Vocabulary
from .encoders import efficientnet_identity, minilm_identity, package_version
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
    if cfg.text_encoder == "minilm":
        records["text"] = {"name": "minilm", "fingerprint": model.encoder_fingerprints.get("text"), **minilm_identity()}
    if cfg.has_image:
        record = {"name": cfg.image_encoder, "fingerprint": model.encoder_fingerprints.get("image")}
        if cfg.image_encoder == "efficientnet_lite0":
            record.update(efficientnet_identity())
        records["image"] = record
    return records


def save_model(model: TrainedModel, directory) -> dict:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.model.state_dict().items()}
    if model.parts.tfidf is not None:
        tensors.update(model.parts.tfidf.state_tensors())
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    cfg = model.config
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "genres": model.genres,
        "thresholds": [float(t) for t in model.thresholds],
        "dims": {
            "text": model.model.text_dim,
            "image": model.model.image_dim,
            "vocab": len(model.parts.vocab) if model.parts.vocab else 0,
        },
        "normaliser": {
            "image_mean": list(IMAGENET_MEAN),
            "image_std": list(IMAGENET_STD),
            "image_size": cfg.image_size,
            "image_resize": "squash to image_size x image_size (eval)",
            "features": "frozen features standardised with the training mean/std stored as *_mean/*_std tensors",
        },
        "vocab": model.parts.vocab.to_dict() if model.parts.vocab else None,
        "tfidf": model.parts.tfidf.to_dict() if model.parts.tfidf else None,
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


def load_model(directory, device: str | None = None, cache_dir: str | None = None, log=None) -> TrainedModel:
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
    config = ModelConfig.from_dict(document["config"])
    genres = document["genres"]
    dims = document["dims"]
    vocab = Vocabulary.from_dict(document["vocab"]) if document.get("vocab") else None
    tfidf = TfidfVectorizer.from_saved(document["tfidf"], tensors) if document.get("tfidf") else None
    # Weights come from the file, so pretrained encoders start empty (no ResNet warning,
    # no wasted load); MiniLM's module is built from its package and then overwritten.
    model = GenreModel(
        config,
        len(genres),
        text_dim=dims["text"],
        image_dim=dims["image"],
        vocab_size=dims["vocab"],
        device=device,
        pretrained=False,
        log=log,
    )
    state = {k: v for k, v in tensors.items() if not k.startswith("tfidf.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"{directory}: weights do not fit the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.to(device).eval()
    parts = InputParts(config, vocab, tfidf, device, cache_dir=cache_dir, log=log)
    records = document.get("frozen_encoders", {})
    fingerprints = {k: v.get("fingerprint") for k, v in records.items()}
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
    )
    if parts.frozen is not None:
        parts.frozen.expected_fingerprints = fingerprints
    return trained
