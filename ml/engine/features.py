"""Frozen-encoder features with an on-disk cache.

The cache is keyed by the encoder's fingerprint (a hash of its weights plus the settings
that change its output: image size, flip averaging, token limit, device type) and by the
content hash of each text or image's bytes, so a head can be retrained in seconds and a
changed poster or overview is never served stale features.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .contracts import Example, ImageLimits
from .data import content_hash, decode_image, image_bytes
from .encoders import autocast, module_fingerprint
from .families import encoder


class FeatureCache:
    def __init__(self, root: str | os.PathLike | None, encoder_key: str):
        self.dir = Path(root) / encoder_key if root else None

    def _path(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        if self.dir is None:
            return None
        path = self._path(digest)
        try:
            return np.load(path)
        except (OSError, ValueError):
            return None

    def put(self, digest: str, vector: np.ndarray) -> None:
        if self.dir is None:
            return
        path = self._path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename so a killed run never leaves a truncated entry.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, vector)
        os.replace(tmp, path)


class _ImageDataset(Dataset):
    def __init__(self, items: list[tuple[str, bytes]], transform, limits: ImageLimits):
        self.items = items
        self.transform = transform
        self.limits = limits

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        key, data = self.items[i]
        # An eval transform says its output size, so a large JPEG can be draft-decoded.
        return self.transform(decode_image(data, key, self.limits, target=getattr(self.transform, "size", None)))


_SHARED_ENCODERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
# Encoder batches on a CPU: a batch of 64 posters holds ~1.1 GB of EfficientNet
# activations at 224 px (32: ~0.55 GB, 16: ~0.35 GB but measurably slower per poster; MiniLM
# at 128 texts x 128 tokens ~0.4 GB, 64 ~0.2 GB and faster per text than 32, and texts are
# encoded before posters so they never add to the posters' peak). On CUDA the caller's batch
# size is used.
CPU_TEXT_BATCH = 64
CPU_IMAGE_BATCH = 32


class FrozenFeatures:
    """Runs a frozen pretrained encoder over examples, through the cache."""

    def __init__(
        self, config, device: str, cache_dir: str | None = None, log=None, image_limits: ImageLimits | None = None
    ):
        self.config = config
        self.device = device
        self.cache_dir = cache_dir
        self.log = log or (lambda line: None)
        self.image_limits = image_limits or ImageLimits()
        self.families = {
            "text": encoder(config.text_encoder) if config.has_text else None,
            "image": encoder(config.image_encoder) if config.has_image else None,
        }
        self._encoders: dict[str, torch.nn.Module] = {}
        self._keys: dict[str, tuple[str, str]] = {}  # which -> (cache key, weights fingerprint)
        # Set by load_model: the weights fingerprints the saved head was trained on.
        self.expected_fingerprints: dict[str, str | None] = {}

    # -- encoders (loaded on first use; a head-only retrain from cache never loads them
    #    unless some example is missing from the cache)
    def encoder(self, which: str) -> torch.nn.Module:
        if which not in self._encoders:
            family = self.families[which]
            # One copy per process of each frozen encoder, shared by every model using it
            # (the predictor cache holds several); freed when no model uses it any more.
            shared = (family.name, self.device, family.cache_settings(self.config))
            enc = _SHARED_ENCODERS.get(shared)
            if enc is None:
                enc = family.build(self.config, fitted=None, device=self.device, pretrained=True, log=self.log)
                if not getattr(enc, "cpu_only", False):  # a quantized encoder runs on the CPU
                    enc = enc.to(self.device)
                enc = enc.eval().requires_grad_(False)
                _SHARED_ENCODERS[shared] = enc
            self._encoders[which] = enc
        return self._encoders[which]

    def fingerprint(self, which: str) -> str:
        return self._cache_key(which)[1]

    def _key(self, which: str) -> str:
        return self._cache_key(which)[0]

    def _cache_key(self, which: str) -> tuple[str, str]:
        if which not in self._keys:
            family = self.families[which]
            dev = torch.device(self.device).type
            found = module_fingerprint(self.encoder(which))
            self._keys[which] = (f"{family.name}-{found}-{family.cache_settings(self.config)}-{dev}", found)
            expected = self.expected_fingerprints.get(which)
            if expected and expected != found:
                raise ValueError(
                    f"the installed {which} encoder (weights fingerprint {found}) differs from the one this model "
                    f"was trained on ({expected}); install the same encoder package version or retrain"
                )
        return self._keys[which]

    def _on_cpu(self) -> bool:
        return torch.device(self.device).type != "cuda"

    def text(self, examples: list[Example], batch_size: int = 128, progress=None) -> np.ndarray:
        cache = FeatureCache(self.cache_dir, self._key("text"))
        digests = [content_hash(ex.text) for ex in examples]
        out: list[np.ndarray | None] = [cache.get(d) for d in digests]
        # Longest first, so each batch pads to a similar length (much less wasted compute).
        todo = sorted((i for i, v in enumerate(out) if v is None), key=lambda i: -len(examples[i].text))
        if todo:
            enc = self.encoder("text")
            run_on = "cpu" if getattr(enc, "cpu_only", False) else self.device
            if run_on == "cpu" or self._on_cpu():
                batch_size = min(batch_size, CPU_TEXT_BATCH)
            self.log(f"text features: encoding {len(todo)} texts ({len(examples) - len(todo)} cached)")
            for start in range(0, len(todo), batch_size):
                idx = todo[start : start + batch_size]
                feats = enc.prepare([examples[i].text for i in idx])
                feats = {k: v.to(run_on) if torch.is_tensor(v) else v for k, v in feats.items()}
                with torch.inference_mode():
                    vecs = enc(feats).float().cpu().numpy()
                for i, v in zip(idx, vecs, strict=False):
                    out[i] = v
                    cache.put(digests[i], v)
                if progress:
                    progress("text features", min(1.0, (start + len(idx)) / len(todo)))
        if not out:
            return np.zeros((0, self.families["text"].dim(self.config)), np.float32)
        return np.stack(out).astype(np.float32)

    def image(
        self, examples: list[Example], batch_size: int = 64, num_workers: int = 0, progress=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Returns (features [n, d], has_image [n] bool); missing posters get zero rows."""
        enc = self.encoder("image")
        cache = FeatureCache(self.cache_dir, self._key("image"))
        raw = [image_bytes(ex, self.image_limits) for ex in examples]
        has = np.array([r is not None for r in raw], dtype=bool)
        digests = [content_hash(r) if r is not None else None for r in raw]
        out = np.zeros((len(examples), enc.dim), dtype=np.float32)
        todo = []
        for i, d in enumerate(digests):
            if d is None:
                continue
            cached = cache.get(d)
            if cached is None:
                todo.append(i)
            else:
                out[i] = cached
        if todo:
            self.log(f"image features: encoding {len(todo)} posters ({int(has.sum()) - len(todo)} cached)")
            cuda = not self._on_cpu()
            if not cuda:
                batch_size = min(batch_size, CPU_IMAGE_BATCH)
            loader = DataLoader(
                _ImageDataset(
                    [(examples[i].key, raw[i]) for i in todo],
                    self.families["image"].image_transforms(self.config, train=False),
                    self.image_limits,
                ),
                batch_size=batch_size,
                num_workers=num_workers,
                pin_memory=cuda,
            )
            done = 0
            for images in loader:
                images = images.to(self.device, non_blocking=True)
                if not cuda:
                    # oneDNN's CPU convolutions run ~1.5x faster on channels-last input (measured)
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), autocast(cuda and self.config.amp):
                    vecs = enc(images).float()
                    if self.config.tta_flip:
                        # Test-time flip averaging: posters read the same mirrored, so the
                        # mean of both views is a steadier description.
                        vecs = (vecs + enc(torch.flip(images, dims=[3])).float()) / 2
                vecs = vecs.cpu().numpy()
                for j, v in enumerate(vecs):
                    i = todo[done + j]
                    out[i] = v
                    cache.put(digests[i], v)
                done += len(vecs)
                if progress:
                    progress("image features", done / len(todo))
        return out, has
