"""Frozen-encoder features through an embedding store (``ml.engine.store``).

Each vector is stored under its encoder's *space* (family name, pretrained weights identity,
the settings that change its output: image size, flip averaging, token limit, and the device
type) and the content hash of the text or image bytes, so a head can be retrained and a
catalog re-predicted without running an encoder, and a changed poster or overview is never
served a stale vector. The space of a family with a recorded identity (package, version,
weights sha256) is computed without loading the encoder.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .contracts import Example, ImageLimits
from .data import content_hash, decode_image, image_bytes
from .encoders import autocast, module_fingerprint
from .families import encoder
from .identity import identity_fingerprint, space_name
from .store import EmbeddingStore, resolve_store, stored_form

# What an artifact's "fingerprint" of a frozen encoder is a hash of: its pretrained identity
# (computed without loading it) or, for families without one, its loaded weights.
IDENTITY, WEIGHTS = "identity", "weights"


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
# Encoder batches on a CPU, chosen for the worker's memory budget (issue 10: <= 1.2 GB per
# process). Measured with one torch thread on 192 devset posters: EfficientNet-Lite0 at
# 224 px with 32 posters per batch peaked ~420 MB above the loaded encoders at 28.8
# posters/s, 16 ~260 MB at 36.5/s, 8 ~65-130 MB at 22-40/s, 4 ~40-90 MB at 28-47/s: small
# batches stay in cache and are no slower per poster on one thread; a cold batch-predict
# worker peaked at 1,213 MB with 8 and 1,110-1,129 MB with 4. Two threads at load ~1: 4 per
# batch 66-68 posters/s, 32 31-42 (on a busy machine small batches lose: every op waits for
# the thread that lost its core).
# MiniLM on 384 texts: 64 per batch ~100 MB more peak than 32 and no faster. Texts are
# encoded before posters, so the two peaks never add. On CUDA the caller's batch size is used.
CPU_TEXT_BATCH = 32
CPU_IMAGE_BATCH = 4


class FrozenFeatures:
    """Runs a frozen pretrained encoder over examples, reading the store first and writing
    what it computed (one read per call, one write per encoder batch)."""

    def __init__(
        self,
        config,
        device: str,
        cache_dir: str | None = None,
        log=None,
        image_limits: ImageLimits | None = None,
        store: EmbeddingStore | None = None,
    ):
        self.config = config
        self.device = device
        self.store = resolve_store(store, cache_dir)
        self.log = log or (lambda line: None)
        self.image_limits = image_limits or ImageLimits()
        self.families = {
            "text": encoder(config.text_encoder) if config.has_text else None,
            "image": encoder(config.image_encoder) if config.has_image else None,
        }
        self._encoders: dict[str, torch.nn.Module] = {}
        self._fingerprints: dict[str, tuple[str, str]] = {}  # which -> (kind, fingerprint)
        # Set by load_model (``expect``): the frozen-encoder records of the saved head.
        self.expected: dict[str, dict] = {}
        # Vectors this object had to compute (not found in the store), per encoder.
        self.encoded = {"text": 0, "image": 0}

    def expect(self, records: dict) -> None:
        """The artifact's frozen-encoder records ({which: {"fingerprint", "fingerprint_of", ...}});
        a different installed encoder is refused when its space or weights are first needed."""
        self.expected = {k: dict(v) for k, v in (records or {}).items()}
        self._fingerprints.clear()

    # -- encoders (loaded on first use: a retrain or re-predict from a warm store never loads them)
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
            record = self.expected.get(which) or {}
            if record.get("fingerprint") and record.get("fingerprint_of", WEIGHTS) == WEIGHTS:
                self._refuse_if_different(which, module_fingerprint(enc), record["fingerprint"])
            self._encoders[which] = enc
        return self._encoders[which]

    def _refuse_if_different(self, which: str, found: str, expected: str) -> None:
        if found != expected:
            raise ValueError(
                f"the installed {which} encoder (fingerprint {found}) differs from the one this model "
                f"was trained on ({expected}); install the same encoder package version or retrain"
            )

    def fingerprint_record(self, which: str) -> dict:
        """What an artifact records: {"fingerprint": ..., "fingerprint_of": "identity"|"weights"}."""
        kind, found = self._fingerprint(which)
        return {"fingerprint": found, "fingerprint_of": kind}

    def fingerprint(self, which: str) -> str:
        return self._fingerprint(which)[1]

    def _fingerprint(self, which: str) -> tuple[str, str]:
        if which not in self._fingerprints:
            family = self.families[which]
            if family.identity is not None:
                kind, found = IDENTITY, identity_fingerprint(family.identity_of(self.config))
            else:  # no recorded identity: the loaded weights are the identity
                kind, found = WEIGHTS, module_fingerprint(self.encoder(which))
            record = self.expected.get(which) or {}
            if record.get("fingerprint") and record.get("fingerprint_of", WEIGHTS) == kind:
                self._refuse_if_different(which, found, record["fingerprint"])
            self._fingerprints[which] = (kind, found)
        return self._fingerprints[which]

    def space(self, which: str) -> str:
        """The store space of this encoder: family, fingerprint, output settings, device type."""
        return space_name(self.families[which], self.fingerprint(which), self.config, torch.device(self.device).type)

    def _dim(self, which: str, found: dict) -> int:
        family = self.families[which]
        if family.dim is not None:
            return family.dim(self.config)
        if found:
            return len(next(iter(found.values())))
        return self.encoder(which).dim

    def _read(self, which: str, digests) -> dict[str, np.ndarray]:
        space = self.space(which)  # also refuses an encoder other than the one a loaded model expects
        wanted = [d for d in dict.fromkeys(digests) if d is not None]
        if self.store is None or not wanted:
            return {}
        return self.store.get_many(space, wanted)

    def _write(self, which: str, vectors: dict[str, np.ndarray]) -> None:
        if self.store is not None and vectors:
            self.store.put_many(self.space(which), vectors)

    def _on_cpu(self) -> bool:
        return torch.device(self.device).type != "cuda"

    def text(self, examples: list[Example], batch_size: int = 128, progress=None) -> np.ndarray:
        digests = [content_hash(ex.text) for ex in examples]
        found = self._read("text", digests)
        out: list[np.ndarray | None] = [found.get(d) for d in digests]
        # Longest first, so each batch pads to a similar length (much less wasted compute).
        todo = sorted((i for i, v in enumerate(out) if v is None), key=lambda i: -len(examples[i].text))
        if todo:
            enc = self.encoder("text")
            run_on = "cpu" if getattr(enc, "cpu_only", False) else self.device
            if run_on == "cpu" or self._on_cpu():
                batch_size = min(batch_size, CPU_TEXT_BATCH)
            self.log(f"text features: encoding {len(todo)} texts ({len(examples) - len(todo)} cached)")
            self.encoded["text"] += len(todo)
            for start in range(0, len(todo), batch_size):
                idx = todo[start : start + batch_size]
                feats = enc.prepare([examples[i].text for i in idx])
                feats = {k: v.to(run_on) if torch.is_tensor(v) else v for k, v in feats.items()}
                with torch.inference_mode():
                    vecs = enc(feats).float().cpu().numpy()
                fresh = {}
                for i, v in zip(idx, vecs, strict=False):
                    out[i] = fresh[digests[i]] = stored_form(v)
                self._write("text", fresh)
                if progress:
                    progress("text features", min(1.0, (start + len(idx)) / len(todo)))
        elif progress:
            progress("text features", 1.0)
        if not out:
            return np.zeros((0, self._dim("text", found)), np.float32)
        return np.stack(out).astype(np.float32)

    def image(
        self, examples: list[Example], batch_size: int = 64, num_workers: int = 0, progress=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Returns (features [n, d], has_image [n] bool); missing posters get zero rows.

        An example's ``image_digest`` (the catalog's derivative checksum) spares reading its
        file; only posters missing from the store are read and encoded.
        """
        raw: dict[int, bytes] = {}
        digests: list[str | None] = []
        for i, ex in enumerate(examples):
            if ex.image is None:
                digests.append(None)
            elif ex.image_digest:
                digests.append(ex.image_digest)
            else:
                raw[i] = image_bytes(ex, self.image_limits)
                digests.append(content_hash(raw[i]))
        has = np.array([d is not None for d in digests], dtype=bool)
        found = self._read("image", digests)
        out = np.zeros((len(examples), self._dim("image", found)), dtype=np.float32)
        todo = []
        for i, d in enumerate(digests):
            if d is None:
                continue
            if d in found:
                out[i] = found[d]
            else:
                todo.append(i)
        for i in todo:
            if i not in raw:
                raw[i] = image_bytes(examples[i], self.image_limits)
                actual = content_hash(raw[i])
                if actual != digests[i]:  # the recorded checksum is stale: store under the content's own
                    self.log(f"image features: {examples[i].key}: the poster's checksum differs from its bytes")
                    digests[i] = actual
        if todo:
            enc = self.encoder("image")
            self.log(f"image features: encoding {len(todo)} posters ({int(has.sum()) - len(todo)} cached)")
            self.encoded["image"] += len(todo)
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
                fresh = {}
                for j, v in enumerate(vecs):
                    i = todo[done + j]
                    out[i] = fresh[digests[i]] = stored_form(v)
                self._write("image", fresh)
                done += len(vecs)
                if progress:
                    progress("image features", done / len(todo))
        elif progress:
            progress("image features", 1.0)
        return out, has
