"""A trained genre model: batching, prediction with the decision rule, saving."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from base.progress import Progress, scaled

from .calibration import apply_calibration
from .config import ModelConfig
from .contracts import Example, ImageLimits
from .data import decode_image, image_bytes
from .encoders import autocast
from .families import encoder
from .features import FrozenFeatures
from .inputs import ALL, compose_text, input_sets, with_composed_text
from .model import GenreModel
from .thresholds import apply_thresholds


def auto_num_workers(config: ModelConfig, device: str) -> int:
    if config.num_workers is not None:
        return config.num_workers
    # On CPU the decoding would compete with the model for the same few cores.
    if torch.device(device).type != "cuda":
        return 0
    import os

    return min(8, os.cpu_count() or 1)


class _RawDataset(Dataset):
    """Per-example inputs for end-to-end (finetune) models."""

    def __init__(self, examples: list[Example], parts: InputParts, train: bool):
        self.examples = examples
        self.parts = parts
        cfg = parts.config
        self.transform = (
            parts.image_family.image_transforms(cfg, train=train and cfg.augment) if cfg.has_image else None
        )

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        ex = self.examples[i]
        item = {"index": i}
        cfg = self.parts.config
        if self.parts.text_family is not None:
            text = compose_text(ex, cfg.text_fields)
            item["has_text"] = bool(text.strip())
            if self.parts.text_family.featuriser:
                item["text_feat"] = self.parts.text_state.transform([text])[0]
            else:  # tokenised per batch by the encoder's prepare()
                item["text"] = text
        if cfg.has_image:
            data = image_bytes(ex, self.parts.image_limits)
            if data is None:
                item["image"] = torch.zeros(3, cfg.image_size, cfg.image_size)
                item["has_image"] = False
            else:
                target = getattr(self.transform, "size", None)  # eval transforms allow draft decoding
                item["image"] = self.transform(decode_image(data, ex.key, self.parts.image_limits, target=target))
                item["has_image"] = True
        return item


class InputParts:
    """What turns examples into network inputs: the text encoder's fitted state (a
    vocabulary, a TF-IDF vectoriser, or None), the frozen feature extractor (reading and
    writing ``store``, an ``ml.engine.store.EmbeddingStore``, or a FolderStore over
    ``cache_dir``), the image limits posters are decoded under."""

    def __init__(
        self,
        config: ModelConfig,
        text_state,
        device: str,
        cache_dir: str | None = None,
        log=None,
        image_limits: ImageLimits | None = None,
        store=None,
    ):
        self.config = config
        self.text_family = encoder(config.text_encoder) if config.has_text else None
        self.image_family = encoder(config.image_encoder) if config.has_image else None
        self.text_state = text_state
        self.device = device
        self.image_limits = image_limits or ImageLimits()
        self.frozen = (
            FrozenFeatures(config, device, cache_dir=cache_dir, log=log, image_limits=self.image_limits, store=store)
            if config.train_mode == "frozen"
            else None
        )
        self.text_prepare = None

    # -- frozen: all features up front, then slice
    def frozen_arrays(
        self, examples: list[Example], progress: Progress | None = None, batch_size: int = 64
    ) -> dict[str, np.ndarray]:
        cfg = self.config
        arrays: dict[str, np.ndarray] = {}
        text_progress = image_progress = progress
        text = self.text_family
        frozen_text = text is not None and not text.featuriser
        if text is not None:
            examples = with_composed_text(examples, cfg.text_fields)
            arrays["has_text"] = np.array([bool(ex.text.strip()) for ex in examples], dtype=bool)
        if progress and frozen_text and cfg.has_image:
            # Text then images, each on its own half, so a job's progress never goes backwards.
            text_progress, image_progress = scaled(progress, 0.0, 0.5), scaled(progress, 0.5, 1.0)
        if text is not None and text.featuriser:
            arrays["text_feat"] = self.text_state.transform([ex.text for ex in examples])
        elif frozen_text:
            arrays["text_feat"] = self.frozen.text(examples, progress=text_progress)
        if cfg.has_image:
            feats, has = self.frozen.image(
                examples,
                batch_size=batch_size,
                num_workers=auto_num_workers(cfg, self.device),
                progress=image_progress,
            )
            arrays["image_feat"], arrays["has_image"] = feats, has
        return arrays

    def frozen_batches(self, arrays: dict[str, np.ndarray], batch_size: int, order: np.ndarray | None = None):
        n = len(next(iter(arrays.values())))
        order = np.arange(n) if order is None else order
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = {k: torch.from_numpy(v[idx]).to(self.device, non_blocking=True) for k, v in arrays.items()}
            batch["index"] = torch.from_numpy(idx)
            yield batch

    # -- finetune: a DataLoader over raw examples
    def loader(
        self, examples: list[Example], batch_size: int, train: bool, generator: torch.Generator | None = None
    ) -> DataLoader:
        cuda = torch.device(self.device).type == "cuda"
        return DataLoader(
            _RawDataset(examples, self, train=train),
            batch_size=batch_size,
            shuffle=train,
            generator=generator,
            num_workers=auto_num_workers(self.config, self.device),
            pin_memory=cuda,
            collate_fn=self.collate,
        )

    def collate(self, items: list[dict]) -> dict:
        batch: dict = {"index": torch.tensor([it["index"] for it in items])}
        if "text" in items[0]:
            batch["text_input"] = self.text_prepare([it["text"] for it in items])
        if "has_text" in items[0]:
            batch["has_text"] = torch.tensor([it["has_text"] for it in items])
        if "text_feat" in items[0]:
            batch["text_feat"] = torch.from_numpy(np.stack([it["text_feat"] for it in items]))
        if "image" in items[0]:
            batch["image"] = torch.stack([it["image"] for it in items])
            batch["has_image"] = torch.tensor([it["has_image"] for it in items])
        return batch

    def to_device(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            if k == "text_input":
                # sequence lengths stay on the CPU (packing reads them there)
                out[k] = {
                    kk: vv.to(self.device, non_blocking=True) if torch.is_tensor(vv) and kk != "lengths" else vv
                    for kk, vv in v.items()
                }
            elif k == "index":
                out[k] = v
            else:
                out[k] = v.to(self.device, non_blocking=True)
        return out

    def bind(self, model: GenreModel) -> None:
        if model.text_encoder is not None:
            self.text_prepare = model.text_encoder.prepare


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities in float32 from logits; the tanh form never overflows."""
    x = np.asarray(logits, dtype=np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


class TrainedModel:
    """A fitted model with its decision thresholds. Build with ``fit`` or ``load_model``."""

    def __init__(
        self,
        config: ModelConfig,
        genres: list[str],
        model: GenreModel,
        parts: InputParts,
        thresholds: np.ndarray,
        history: list[dict],
        device: str,
        timings: dict | None = None,
        encoder_fingerprints: dict | None = None,
        calibration: dict | None = None,
        thresholds_by_inputs: dict | None = None,
    ):
        self.config = config
        self.genres = list(genres)
        self.model = model
        self.parts = parts
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        self.history = history
        self.device = device
        self.timings = timings or {}
        self.encoder_fingerprints = encoder_fingerprints or {}
        # Per input set (ml.engine.inputs: "all", and "text"/"image" for a fused model with
        # one input missing): the per-genre calibration fitted on val and the thresholds
        # tuned on the calibrated val probabilities. ``thresholds`` is the "all" entry.
        self.calibration = dict(calibration or {})
        self.thresholds_by_inputs = {
            k: np.asarray(v, dtype=np.float32) for k, v in (thresholds_by_inputs or {}).items()
        }
        self.last_input_sets: list[str] = []
        parts.bind(model)

    @property
    def fused(self) -> bool:
        return self.config.has_text and self.config.has_image

    def thresholds_for(self, input_set: str) -> np.ndarray:
        if input_set == ALL:
            return self.thresholds
        found = self.thresholds_by_inputs.get(input_set)
        return self.thresholds if found is None else found

    def input_sets(self, examples: list[Example]) -> list[str]:
        """Which inputs each example gives this model ("all", or "text"/"image" when a fused
        model misses one), decided the way the network sees it."""
        cfg = self.config
        has_text = [bool(compose_text(ex, cfg.text_fields).strip()) for ex in examples]
        has_image = [ex.image is not None for ex in examples]
        return input_sets(has_text, has_image, self.fused)

    def logits(
        self, examples: list[Example], batch_size: int = 64, progress: Progress | None = None, train: bool = False
    ) -> np.ndarray:
        """Raw logits in example order (eval mode, deterministic transforms)."""
        self.model.eval()
        out = np.zeros((len(examples), len(self.genres)), dtype=np.float32)
        if not examples:
            return out
        cuda = torch.device(self.device).type == "cuda"
        amp = cuda and self.config.amp
        if self.parts.frozen is not None or self.config.train_mode == "frozen":
            arrays = self.parts.frozen_arrays(examples, progress=progress, batch_size=batch_size)
            batches = self.parts.frozen_batches(arrays, batch_size)
        else:
            batches = (self.parts.to_device(b) for b in self.parts.loader(examples, batch_size, train=False))
        done = 0
        with torch.inference_mode():
            for batch in batches:
                with autocast(amp):
                    logits, _ = self.model(batch)
                out[batch["index"].numpy()] = logits.float().cpu().numpy()
                done += len(batch["index"])
                if progress:
                    progress("predicting", done / len(examples))
        return out

    def calibrate(self, logits: np.ndarray, sets: list[str]) -> np.ndarray:
        """Calibrated probabilities: each row with its input set's calibration."""
        if not self.calibration:
            return sigmoid(logits)
        probs = np.zeros(logits.shape, dtype=np.float32)
        for name in sorted(set(sets)):
            rows = np.array([s == name for s in sets], dtype=bool)
            probs[rows] = apply_calibration(logits[rows], self.calibration.get(name) or self.calibration.get(ALL))
        return probs

    def decide(self, probs: np.ndarray, sets: list[str]) -> np.ndarray:
        if set(sets) <= {ALL}:
            return apply_thresholds(probs, self.thresholds, min_one=True)
        thresholds = np.stack([self.thresholds_for(s) for s in sets])
        return apply_thresholds(probs, thresholds, min_one=True)

    def predict_proba(
        self, examples: list[Example], batch_size: int = 64, progress: Progress | None = None
    ) -> np.ndarray:
        """Calibrated genre probabilities [n, G]; ``last_input_sets`` says which inputs each row had."""
        logits = self.logits(examples, batch_size=batch_size, progress=progress)
        self.last_input_sets = self.input_sets(examples)
        return self.calibrate(logits, self.last_input_sets)

    def predict(
        self, examples: list[Example], batch_size: int = 64, progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        probs = self.predict_proba(examples, batch_size=batch_size, progress=progress)
        return probs, self.decide(probs, self.last_input_sets)

    def save(self, directory) -> dict:
        from .artifact import save_model

        return save_model(self, directory)
