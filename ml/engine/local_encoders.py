"""Encoders from a model the user already has on disk (nothing is downloaded).

- text "st_folder": a sentence-transformers model folder (``config.text_model_path``), e.g. a
  saved all-mpnet-base-v2 or a fine-tuned MiniLM; mean-pooled sentence embedding as its
  ``modules.json`` says.
- image "torchvision": a torchvision architecture (``config.image_arch``, e.g. "resnet50",
  "efficientnet_b3", "convnext_tiny") with its weights from a local checkpoint file
  (``config.image_model_path``: a state dict as torchvision saves it, or a training
  checkpoint holding one under "state_dict"/"model"); its classifier is dropped.

Registered in ml.engine.builtin_families (this module imports torch; the registry must not).
Both can be frozen (features cached like the packaged encoders) or fine-tuned. The
artifact records the folder or file, its weights' sha256 and (for images) the architecture,
and a model trained on one refuses to load when the file there has other weights.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from .identity import file_sha256, package_version

ST_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _st_folder(config) -> Path:
    if not config.text_model_path:
        raise RuntimeError("text encoder st_folder needs text_model_path: a sentence-transformers model folder")
    folder = Path(config.text_model_path).expanduser().resolve()
    if not (folder / "modules.json").exists() and not (folder / "config.json").exists():
        raise RuntimeError(f"{folder} is not a sentence-transformers model folder (no modules.json or config.json)")
    return folder


def _st_weights(folder: Path) -> Path:
    for name in ST_WEIGHT_FILES:
        found = sorted(folder.rglob(name))
        if found:
            return found[0]
    raise RuntimeError(f"no weights ({' or '.join(ST_WEIGHT_FILES)}) under {folder}")


def st_identity(config) -> dict:
    folder = _st_folder(config)
    return {
        "package": "sentence-transformers folder",
        "version": package_version("sentence-transformers"),
        "path": str(folder),
        "weights_sha256": file_sha256(str(_st_weights(folder))),
    }


class SentenceTransformerFolderEncoder(nn.Module):
    """Any sentence-transformers folder; same interface as the MiniLM encoder."""

    def __init__(self, folder: Path, max_tokens: int, device: str = "cpu"):
        super().__init__()
        from sentence_transformers import SentenceTransformer

        self.st = SentenceTransformer(str(folder), device=device, local_files_only=True)
        self.st.max_seq_length = max_tokens
        # sentence-transformers 5 renamed it (the old name warns); older releases have only the old one
        get_dim = getattr(self.st, "get_embedding_dimension", None) or getattr(
            self.st, "get_sentence_embedding_dimension", None
        )
        self.dim = int(get_dim()) if get_dim else int(self.st.encode(["x"]).shape[1])
        self.pretrained = True

    def prepare(self, texts: list[str]) -> dict[str, torch.Tensor]:
        prepare = getattr(self.st, "preprocess", None) or self.st.tokenize
        return prepare(texts)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.st(dict(features))["sentence_embedding"]


@functools.cache
def _st_dim(folder: str, max_tokens: int) -> int:
    return SentenceTransformerFolderEncoder(Path(folder), max_tokens).dim


def build_st(config, *, fitted, device, pretrained, log):
    return SentenceTransformerFolderEncoder(_st_folder(config), config.max_tokens, device=device)


def st_dim(config) -> int:
    return _st_dim(str(_st_folder(config)), config.max_tokens)


# ---------------------------------------------------------------- torchvision checkpoint


def _checkpoint(config) -> Path:
    if not config.image_model_path:
        raise RuntimeError("image encoder torchvision needs image_model_path: a local torchvision checkpoint file")
    path = Path(config.image_model_path).expanduser().resolve()
    if not path.is_file():
        raise RuntimeError(f"image_model_path {path} is not a file")
    return path


def tv_identity(config) -> dict:
    path = _checkpoint(config)
    return {
        "package": "torchvision",
        "version": package_version("torchvision"),
        "arch": config.image_arch,
        "path": str(path),
        "weights_sha256": file_sha256(str(path)),
    }


def _drop_classifier(net: nn.Module) -> int:
    """Replace the final Linear of ``fc`` / ``classifier`` / ``heads`` by Identity; its input size."""
    for attr in ("fc", "classifier", "heads", "head"):
        part = getattr(net, attr, None)
        if isinstance(part, nn.Linear):
            setattr(net, attr, nn.Identity())
            return part.in_features
        if isinstance(part, nn.Sequential):
            for i in range(len(part) - 1, -1, -1):
                if isinstance(part[i], nn.Linear):
                    dim = part[i].in_features
                    part[i] = nn.Identity()
                    return dim
    raise RuntimeError(f"{type(net).__name__}: no final Linear classifier found to drop")


class TorchvisionCheckpointEncoder(nn.Module):
    """A torchvision network with local weights, without its classifier."""

    def __init__(self, arch: str, checkpoint: Path | None):
        super().__init__()
        import torchvision

        builder = getattr(torchvision.models, arch, None)
        if builder is None or not callable(builder):
            raise RuntimeError(f"torchvision has no model {arch!r}")
        self.net = builder(weights=None)
        if checkpoint is not None:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            for key in ("state_dict", "model"):
                if isinstance(state, dict) and isinstance(state.get(key), dict):
                    state = state[key]
            state = {k.removeprefix("module."): v for k, v in state.items()}
            missing, unexpected = self.net.load_state_dict(state, strict=False)
            body_missing = [k for k in missing if not k.startswith(("fc.", "classifier.", "heads.", "head."))]
            if body_missing:
                raise RuntimeError(f"{checkpoint} does not fit torchvision {arch}: missing {body_missing[:5]}")
        self.dim = _drop_classifier(self.net)
        self.pretrained = checkpoint is not None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.net(images), 1)


@functools.cache
def _tv_dim(arch: str) -> int:
    return TorchvisionCheckpointEncoder(arch, None).dim


def build_tv(config, *, fitted, device, pretrained, log):
    return TorchvisionCheckpointEncoder(config.image_arch, _checkpoint(config) if pretrained else None)


def tv_dim(config) -> int:
    return _tv_dim(config.image_arch)
