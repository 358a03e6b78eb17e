"""The label audit service: cross-fit the frozen-feature head, find label issues, store them.

Today this runs the engine's FrozenFeatures through the on-disk feature cache (like
training does); when the shared embedding store lands, only ``frozen_features`` changes.
Kept free of model imports so the benchmark can call it on a folder without a database.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.conf import settings

from base.progress import Progress


def default_cache_dir() -> str:
    return str(Path(settings.GENREWEB_ML_CACHE_DIR) / "features")


def _frozen_features(config, examples, *, cache_dir: str | None = None, progress: Progress | None = None) -> np.ndarray:
    """[n, d] features of ``examples`` under ``config``'s frozen encoders: text vector, poster
    vector (zeros without a poster) and a has-poster flag, concatenated."""
    from ml.engine.trained import InputParts
    from ml.engine.train import select_device

    from .data import engine_image_limits

    if config.train_mode != "frozen":
        raise ValueError(f"the audit needs a frozen-encoder preset; {config.name} trains its encoders end to end")
    if config.has_text and config.text_encoder in ("tfidf",):
        raise ValueError(f"the audit needs pretrained frozen encoders; {config.name} fits TF-IDF on its training texts")
    parts = InputParts(
        config,
        None,
        select_device(None),
        cache_dir=cache_dir or default_cache_dir(),
        image_limits=engine_image_limits(),
    )
    arrays = parts.frozen_arrays(examples, progress=progress)
    columns = []
    if "text_feat" in arrays:
        columns.append(arrays["text_feat"])
    if "image_feat" in arrays:
        has = arrays["has_image"].astype(np.float32)[:, None]
        columns += [arrays["image_feat"] * has, has]
    return np.concatenate(columns, axis=1).astype(np.float32)
