"""fit(): train a model family on examples, early-stop on validation micro-F1, tune
per-genre thresholds, resume from a checkpoint if an interrupted run left one."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from base.progress import Progress, report, scaled

from .calibration import apply_calibration, fit_calibration
from .config import ModelConfig
from .contracts import Example, ImageLimits
from .data import labels_matrix
from .encoders import autocast
from .families import encoder
from .inputs import ALL, IMAGE_ONLY, INPUT_SETS, TEXT_ONLY, compose_text, without
from .metrics import log_loss, micro_f1
from .model import GenreModel
from .registry import get_config
from .thresholds import apply_thresholds, tune_thresholds
from .trained import InputParts, TrainedModel, sigmoid

CHECKPOINT_FILE = "checkpoint.pt"


def select_device(device: str | None = None) -> str:
    if device:
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pos_weights(y: np.ndarray, config: ModelConfig) -> torch.Tensor | None:
    """neg/pos per genre raised to ``pos_weight_power`` (0.5 = square root), capped."""
    if not config.pos_weight:
        return None
    pos = y.sum(axis=0)
    neg = len(y) - pos
    # A genre without positives has no positive terms to weight; 1.0 keeps it neutral.
    ratio = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    return torch.tensor(np.clip(ratio**config.pos_weight_power, 1.0, config.max_pos_weight), dtype=torch.float32)


def data_fingerprint(config: ModelConfig, genres: list[str], train: list[Example], val: list[Example]) -> str:
    """What a checkpoint must match to be resumed: config, genres, examples and labels."""
    digest = hashlib.sha256(json.dumps([config.to_dict(), genres], sort_keys=True).encode())
    for part in (train, val):
        for ex in part:
            digest.update(f"{ex.key}\x00{sorted(ex.labels)}\x00{len(ex.text)}\x01".encode())
    return digest.hexdigest()


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a run killed mid-write leaves the previous checkpoint intact


def fit(
    config: ModelConfig | dict | str,
    genres: list[str],
    train: list[Example],
    val: list[Example],
    *,
    device: str | None = None,
    cache_dir: str | None = None,
    store=None,
    checkpoint_dir: str | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    image_limits: ImageLimits | None = None,
    features: tuple[dict, dict] | None = None,
) -> TrainedModel:
    """Train ``config``; posters are decoded under ``image_limits`` (default ImageLimits()).

    Frozen features are read from and written to ``store`` (an ml.engine.store.EmbeddingStore;
    ``cache_dir`` is shorthand for a FolderStore there): with a warm store no encoder runs.
    ``features`` (frozen mode): the train and val feature arrays, already computed (how a
    fused model trains its fallback heads on the features it read)."""
    config = get_config(config)
    log = log or (lambda line: None)
    if not genres:
        raise ValueError("fit needs at least one genre")
    if not train or not val:
        raise ValueError(f"fit needs training and validation examples (got {len(train)} train, {len(val)} val)")
    device = select_device(device)
    cuda = torch.device(device).type == "cuda"
    use_amp = cuda and config.amp
    seed_everything(config.seed)
    n_genres = len(genres)
    y_train, y_val = labels_matrix(train, n_genres), labels_matrix(val, n_genres)
    empty = [genres[j] for j in np.flatnonzero(y_train.sum(axis=0) == 0)]
    if empty:
        log(f"warning: no training examples for {', '.join(empty)}; the model cannot learn them")
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # Fitted text state (vocabulary, TF-IDF) comes from the training texts only.
    text_family = encoder(config.text_encoder) if config.has_text else None
    image_family = encoder(config.image_encoder) if config.has_image else None
    text_state = None
    if text_family is not None and text_family.fit is not None:
        text_state = text_family.fit(config, [compose_text(ex, config.text_fields) for ex in train], log)
    parts = InputParts(config, text_state, device, cache_dir=cache_dir, log=log, image_limits=image_limits, store=store)
    # Frozen features of network encoders are cached and standardised; featurisers' are not.
    frozen_text = text_family is not None and not text_family.featuriser

    frozen = config.train_mode == "frozen"
    fingerprints: dict[str, dict] = {}
    if frozen and features is not None:
        train_arrays, val_arrays = features
    elif frozen:
        t0 = time.perf_counter()
        train_arrays = parts.frozen_arrays(train, progress=scaled(_labelled(progress, "train"), 0.0, 0.25))
        val_arrays = parts.frozen_arrays(val, progress=scaled(_labelled(progress, "val"), 0.25, 0.30))
        timings["features_s"] = time.perf_counter() - t0
        fingerprints = {
            k: parts.frozen.fingerprint_record(k)
            for k, used in (("text", frozen_text), ("image", image_family))
            if used
        }
    if frozen:
        # Feature extraction may draw random numbers (a DataLoader seeds its workers from the
        # global generator) only when something was missing from the store: reseed, so a warm
        # and a cold run train the same model.
        seed_everything(config.seed)
        text_dim = train_arrays["text_feat"].shape[1] if "text_feat" in train_arrays else 0
        image_dim = train_arrays["image_feat"].shape[1] if "image_feat" in train_arrays else 0
    else:
        text_dim = text_state.dim if text_family is not None and text_family.featuriser else 0
        image_dim = 0
    model = GenreModel(
        config,
        n_genres,
        text_dim=text_dim,
        image_dim=image_dim,
        text_state=text_state,
        device=device,
        log=log,
        knn_bank=len(train) if frozen and config.knn_k else 0,
    )
    if frozen:
        # Standardise pretrained features with training statistics (a featuriser's stay as
        # they are: TF-IDF is already L2-normalised and mostly zeros).
        text_norm = image_norm = None
        if frozen_text:
            text_norm = _mean_std(train_arrays["text_feat"][train_arrays["has_text"]])
        if image_family is not None:
            image_norm = _mean_std(train_arrays["image_feat"][train_arrays["has_image"]])
        model.set_normaliser(text_norm, image_norm)
    model.to(device)
    parts.bind(model)

    # Fallback heads are trained apart (_fit_fallback), not by this loop.
    head_params = [
        p for n, p in model.named_parameters() if not n.startswith(("text_encoder.", "image_encoder.", "fallback."))
    ]
    pretrained_params = list(model.encoder_parameters())
    pretrained_ids = {id(p) for p in pretrained_params}
    learned_encoder_params = [
        p
        for n, p in model.named_parameters()
        if n.startswith(("text_encoder.", "image_encoder.")) and id(p) not in pretrained_ids
    ]
    groups = [{"params": head_params + learned_encoder_params, "lr": config.lr}]
    if pretrained_params:
        groups.append({"params": pretrained_params, "lr": config.encoder_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    weights = pos_weights(y_train, config)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=weights.to(device) if weights is not None else None)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"model {config.name}: {n_params:,} trainable parameters on {device}"
        f"{' with mixed precision' if use_amp else ''}"
    )

    history: list[dict] = []
    start_epoch, best_f1, best_epoch, bad_epochs, best_state = 0, -1.0, -1, 0, None
    fingerprint = data_fingerprint(config, genres, train, val)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    if ckpt_path and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            history, best_f1, best_epoch = state["history"], state["best_f1"], state["best_epoch"]
            bad_epochs, best_state, start_epoch = state["bad_epochs"], state["best_state"], state["epoch"] + 1
            torch.set_rng_state(state["torch_rng"])
            np.random.set_state(state["numpy_rng"])
            random.setstate(state["python_rng"])
            log(f"resumed from {ckpt_path} after epoch {start_epoch}")
        else:
            log(f"ignoring checkpoint {ckpt_path}: it belongs to a different config or data")

    y_train_t = torch.from_numpy(y_train)
    y_val_t = torch.from_numpy(y_val)
    t_train = time.perf_counter()
    stopped = bad_epochs >= config.patience
    for epoch in range(start_epoch, config.epochs):
        if stopped:
            break
        model.train()
        # Shuffling from (seed, epoch) makes a resumed run see the same batches.
        gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        if frozen:
            order = torch.randperm(len(train), generator=gen).numpy()
            batches = parts.frozen_batches(train_arrays, config.batch_size, order)
            n_batches = (len(train) + config.batch_size - 1) // config.batch_size
        else:
            loader = parts.loader(train, config.batch_size, train=True, generator=gen)
            batches, n_batches = (parts.to_device(b) for b in loader), len(loader)
        total, count = 0.0, 0
        for step, batch in enumerate(batches):
            target = y_train_t[batch["index"]].to(device, non_blocking=True)
            with autocast(use_amp):
                logits, aux = model(batch)
                loss = loss_fn(logits.float(), target)
                for extra in aux:
                    loss = loss + loss_fn(extra.float(), target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach()) * len(target)
            count += len(target)
            base = 0.3 if frozen else 0.0
            report(
                progress,
                f"epoch {epoch + 1}/{config.epochs}",
                base + (0.95 - base) * (epoch + (step + 1) / max(n_batches, 1)) / config.epochs,
            )
        trained = TrainedModel(config, genres, model, parts, np.full(n_genres, 0.5), history, device)
        val_logits = (
            trained.logits(val, batch_size=max(config.batch_size, 64))
            if not frozen
            else _frozen_logits(model, parts, val_arrays, config)
        )
        val_loss = float(loss_fn(torch.from_numpy(val_logits).to(device), y_val_t.to(device)))
        val_probs = sigmoid(val_logits)
        epoch_thresholds = (
            tune_thresholds(y_val, val_probs) if config.early_stop_thresholds == "tuned" else np.full(n_genres, 0.5)
        )
        val_f1 = micro_f1(y_val, apply_thresholds(val_probs, epoch_thresholds, min_one=True))
        history.append(
            {"epoch": epoch + 1, "train_loss": total / max(count, 1), "val_loss": val_loss, "val_micro_f1": val_f1}
        )
        log(
            f"epoch {epoch + 1}: train_loss {total / max(count, 1):.4f} val_loss {val_loss:.4f} val_micro_f1 {val_f1:.4f}"
        )
        if val_f1 > best_f1:
            best_f1, best_epoch, bad_epochs = val_f1, epoch + 1, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        stopped = bad_epochs >= config.patience
        if ckpt_path:
            _save_checkpoint(
                ckpt_path,
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "history": history,
                    "best_f1": best_f1,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "best_state": best_state,
                    "torch_rng": torch.get_rng_state(),
                    "numpy_rng": np.random.get_state(),
                    "python_rng": random.getstate(),
                },
            )
        if stopped:
            log(
                f"early stop: no val micro-F1 gain for {config.patience} epochs (best {best_f1:.4f} at epoch {best_epoch})"
            )
    if best_state is not None:
        model.load_state_dict(best_state)
    timings["train_s"] = time.perf_counter() - t_train

    if model.knn is not None:
        _fit_knn(model, parts, train_arrays, val_arrays, y_train, y_val, config, log)
    if model.fallback is not None:
        report(progress, "training the fallback heads", 0.955)
        _fit_fallback(model, genres, train, val, train_arrays, val_arrays, device, log)
        _choose_input_mix(model, parts, val_arrays, y_val, config, log)
    report(progress, "calibrating and tuning thresholds", 0.96)
    trained = TrainedModel(
        config, genres, model, parts, np.full(n_genres, 0.5), history, device, encoder_fingerprints=fingerprints
    )
    # Per input set ("all"; for a fused model also poster removed / text removed from every
    # val movie): per-genre calibration on the val logits, then thresholds from the
    # calibrated val probabilities (config.decision_thresholds says how).
    calibration, thresholds = {}, {}
    for name, val_logits in _val_logits_by_inputs(trained, val, val_arrays if frozen else None).items():
        calibration[name] = fit_calibration(val_logits, y_val, config.calibration)
        thresholds[name] = tune_thresholds(
            y_val, apply_calibration(val_logits, calibration[name]), rule=config.decision_thresholds
        )
    trained.thresholds = thresholds.pop(ALL)
    trained.thresholds_by_inputs = thresholds
    trained.calibration = calibration
    timings["total_s"] = time.perf_counter() - started
    trained.timings = timings
    trained.best_epoch = best_epoch
    log(
        f"done in {timings['total_s']:.1f}s; best epoch {best_epoch}, val micro-F1 ({config.early_stop_thresholds} thresholds): {best_f1:.4f}"
    )
    report(progress, "done", 1.0)
    return trained


def _labelled(progress: Progress | None, part: str) -> Progress | None:
    """``progress`` with `` (part)`` appended to each message (train / val features)."""
    if progress is None:
        return None
    return lambda message, fraction: progress(f"{message} ({part})", fraction)


def _calibrated_scores(y: np.ndarray, p: np.ndarray, config: ModelConfig) -> tuple[float, float]:
    """What candidate val probabilities are worth once the model has fitted its per-genre
    calibration and tuned its thresholds on them: (log-loss, micro-F1)."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    logits = np.log(p) - np.log1p(-p)
    calibrated = apply_calibration(logits, fit_calibration(logits, y, config.calibration))
    decisions = apply_thresholds(calibrated, tune_thresholds(y, calibrated), min_one=True)
    return log_loss(y, calibrated), micro_f1(y, decisions)


def _fit_knn(model, parts, train_arrays, val_arrays, y_train, y_val, config, log) -> None:
    """Store the training features and labels in the kNN member; choose its weight on val."""
    from .knn import ALPHA_GRID

    model.eval()
    with torch.inference_mode():
        text, image, _, _ = model.standardised(next(parts.frozen_batches(train_arrays, len(y_train))))
        model.knn.set_bank(text, image, torch.from_numpy(y_train))
        p_head = sigmoid(_frozen_logits(model, parts, val_arrays, config))  # alpha is still 0
        p_knn = model.knn(*model.standardised(next(parts.frozen_batches(val_arrays, len(y_val))))).float().cpu().numpy()
    losses = {a: log_loss(y_val, (1 - a) * p_head + a * p_knn) for a in ALPHA_GRID}
    best = min(losses, key=losses.get)
    model.knn.alpha.fill_(best)
    log(
        f"kNN member (k={config.knn_k}): weight {best} chosen on val log-loss ({losses[best]:.4f} vs {losses[0.0]:.4f} without)"
    )


def _fit_fallback(model, genres, train, val, train_arrays, val_arrays, device, log) -> None:
    """Train the text-only and poster-only fallback heads: each is the head of the
    one-modality model these settings give (same seed, same loop, same early stopping),
    trained on the features already read."""
    from .model import PARTIAL_INPUTS

    config = model.config
    for name in PARTIAL_INPUTS:
        keys = ("text_feat", "has_text") if name == "text" else ("image_feat", "has_image")
        sub_config = one_modality_config(config, name)
        sub = fit(
            sub_config,
            genres,
            train,
            val,
            device=device,
            log=lambda line, name=name: log(f"{name}-only fallback head: {line}"),
            features=tuple({k: arrays[k] for k in keys} for arrays in (train_arrays, val_arrays)),
        )
        model.fallback[name].load_state_dict(sub.model.head.state_dict())


def one_modality_config(config: ModelConfig, modality: str) -> ModelConfig:
    """The one-modality model (fusion "text" or "image") with a fused config's encoder for
    that input and its head and training settings: what its fallback head for it is."""
    other = "image_encoder" if modality == "text" else "text_encoder"
    return config.replace(
        name=f"{config.name} ({modality} only)",
        fusion=modality,
        knn_k=0,
        fallback_heads=False,
        modality_dropout=0.0,
        **{other: "none"},
    )


# Grids of a fallback model's mix (GenreModel.input_mix), searched on val: the fallback
# head's weight for a movie missing an input (1 = the one-modality model alone), the text-only
# and poster-only heads' weights beside the fused heads for a movie with both inputs, and the
# kNN member's weight.
FALLBACK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
BESIDE_GRID = {"text": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), "image": (0.0, 0.1, 0.2)}
MIX_KNN_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _choose_input_mix(model, parts, val_arrays, y_val, config, log) -> None:
    """Per input set, the weights of the fused heads, the fallback heads and the kNN member,
    chosen on val (for a missing input, on val with that input removed from every movie):
    the lowest calibrated log-loss among the mixes whose val micro-F1 is at least that of the
    model without fallback heads (both inputs) or of the one-modality model (one missing)."""
    import itertools

    model.input_mix.zero_()
    for row, name in enumerate(INPUT_SETS):
        arrays = dict(val_arrays)
        if name != ALL:
            dropped = "has_image" if name == TEXT_ONLY else "has_text"
            arrays[dropped] = np.zeros_like(arrays[dropped])
        heads = _frozen_logits(model, parts, arrays, config)  # the weights are still 0: the heads alone
        model.eval()
        with torch.inference_mode():
            batch = next(parts.frozen_batches(arrays, len(y_val)))
            found = model.mix_parts(torch.from_numpy(heads), *model.standardised(batch))
        found = {k: (v.cpu().numpy() if v is not None else None) for k, v in found.items()}
        alphas = MIX_KNN_GRID if found["knn"] is not None else (0.0,)
        if name == ALL:
            grid = [(t, i, a) for t, i in itertools.product(BESIDE_GRID["text"], BESIDE_GRID["image"]) for a in alphas]
        else:
            grid = [((w, 0.0) if name == TEXT_ONLY else (0.0, w)) + (a,) for w in FALLBACK_GRID for a in alphas]
        scores = {}
        for w_text, w_image, alpha in grid:
            p = (1 - w_text - w_image) * found["heads"] + w_text * found["text"] + w_image * found["image"]
            if found["knn"] is not None:
                p = (1 - alpha) * p + alpha * found["knn"]
            scores[(w_text, w_image, alpha)] = _calibrated_scores(y_val, p, config)
        # The floor: with both inputs, the model without fallback heads (the kNN weight
        # _fit_knn chose); missing one, the fallback head alone (the one-modality model).
        knn_alpha = float(model.knn.alpha) if found["knn"] is not None else 0.0
        base = {ALL: (0.0, 0.0, knn_alpha), TEXT_ONLY: (1.0, 0.0, 0.0), IMAGE_ONLY: (0.0, 1.0, 0.0)}[name]
        floor = scores[base][1]
        best = min((c for c in scores if scores[c][1] >= floor), key=lambda c: scores[c][0])
        model.input_mix[row] = torch.tensor(best)
        heads_only = scores[(0.0, 0.0, 0.0)]
        log(
            f"input mix ({name}): text-only head {best[0]}, poster-only head {best[1]}, kNN {best[2]} chosen on val "
            f"(calibrated log-loss {scores[best][0]:.4f}, micro-F1 {scores[best][1]:.4f}; fused heads alone "
            f"{heads_only[0]:.4f} / {heads_only[1]:.4f}; "
            + ("without fallback heads" if name == ALL else f"{name}-only model")
            + f" {scores[base][0]:.4f} / {floor:.4f})"
        )


def _val_logits_by_inputs(trained: TrainedModel, val: list[Example], val_arrays: dict | None) -> dict:
    config, model = trained.config, trained.model
    batch_size = max(config.batch_size, 64)

    def logits(drop: str | None) -> np.ndarray:
        if val_arrays is None:  # end to end: run the network on the changed examples
            return trained.logits(without(val, drop) if drop else val, batch_size=batch_size)
        arrays = dict(val_arrays)
        if drop:
            key = "has_image" if drop == "image" else "has_text"
            arrays[key] = np.zeros_like(arrays[key])
        return _frozen_logits(model, trained.parts, arrays, config)

    out = {ALL: logits(None)}
    if trained.fused:
        out[TEXT_ONLY] = logits("image")
        out[IMAGE_ONLY] = logits("text")
    return out


def _mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) == 0:
        return np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
    return x.mean(axis=0).astype(np.float32), np.maximum(x.std(axis=0), 1e-6).astype(np.float32)


def _frozen_logits(model: GenreModel, parts: InputParts, arrays: dict, config: ModelConfig) -> np.ndarray:
    model.eval()
    n = len(next(iter(arrays.values())))
    out = None
    with torch.inference_mode():
        for batch in parts.frozen_batches(arrays, max(config.batch_size, 64)):
            logits, _ = model(batch)
            if out is None:
                out = np.zeros((n, logits.shape[1]), dtype=np.float32)
            out[batch["index"].numpy()] = logits.float().cpu().numpy()
    return out
