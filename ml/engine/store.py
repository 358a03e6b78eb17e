"""The embedding store protocol: where frozen-encoder vectors live between runs.

A store maps ``(space, digest) -> vector``. ``space`` names one encoder identity (family,
pretrained weights identity, the settings that change its output, device type: see
``FrozenFeatures.space``); ``digest`` is the sha256 of the overview text or the poster
derivative's bytes, so a changed overview or poster is a new digest and never gets a stale
vector. Vectors are kept in float16 (``STORED_DTYPE``); the engine rounds what it computes
to that form too, so a run that computed its features and one that read them see the
same numbers.

Stores are read and written in batches: ``get_many`` for all the digests of a run,
``put_many`` once per encoder batch. Implementations: ``MemoryStore`` (one process),
``FolderStore`` (a local folder, for the Django-free engine benchmark), and the shared
database store on the Django side (``ml.services.embeddings``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

STORED_DTYPE = np.float16


def stored_form(vector) -> np.ndarray:
    """A vector as a store keeps it (1-d float16)."""
    return np.asarray(vector, dtype=STORED_DTYPE).reshape(-1)


@runtime_checkable
class EmbeddingStore(Protocol):
    def get_many(self, space: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those digests that are stored (missing ones are absent)."""

    def put_many(self, space: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Store vectors; a digest already stored keeps its vector (same content, same vector)."""


class MemoryStore:
    """A store in this process's memory (tests, notebooks)."""

    def __init__(self):
        self.spaces: dict[str, dict[str, np.ndarray]] = {}
        self.reads = self.writes = 0  # calls, for tests that check batching

    def get_many(self, space: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        self.reads += 1
        found = self.spaces.get(space, {})
        return {d: found[d] for d in dict.fromkeys(digests) if d in found}

    def put_many(self, space: str, vectors: Mapping[str, np.ndarray]) -> None:
        self.writes += 1
        target = self.spaces.setdefault(space, {})
        for digest, vector in vectors.items():
            target.setdefault(digest, stored_form(vector))


class FolderStore:
    """One ``.npy`` file per vector under ``root/<space>/<digest[:2]>/<digest>.npy``: a local
    folder for the engine on its own (the benchmark); genreweb's workers share the database store."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, space: str, digest: str) -> Path:
        return self.root / space / digest[:2] / f"{digest}.npy"

    def get_many(self, space: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        out = {}
        for digest in dict.fromkeys(digests):
            try:
                out[digest] = np.load(self._path(space, digest))
            except (OSError, ValueError):
                continue
        return out

    def put_many(self, space: str, vectors: Mapping[str, np.ndarray]) -> None:
        for digest, vector in vectors.items():
            path = self._path(space, digest)
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename so a killed run never leaves a truncated entry.
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, stored_form(vector))
            os.replace(tmp, path)


def stored_modalities(config) -> tuple[str, ...]:
    """Which of "text"/"image" a config's vectors come from a store for: frozen pretrained
    encoders (featurisers such as TF-IDF and trained-from-scratch encoders have none)."""
    from .families import encoder

    if config.train_mode != "frozen":
        return ()
    names = (("text", config.text_encoder), ("image", config.image_encoder))
    return tuple(
        which for which, name in names if name != "none" and encoder(name).pretrained and not encoder(name).featuriser
    )


def resolve_store(store: EmbeddingStore | None = None, cache_dir: str | os.PathLike | None = None):
    """``store`` itself, or a FolderStore over ``cache_dir`` (the engine's shorthand), or None."""
    if store is not None and cache_dir is not None:
        raise ValueError("give an embedding store or a cache_dir, not both")
    if store is not None:
        return store
    return FolderStore(cache_dir) if cache_dir else None
