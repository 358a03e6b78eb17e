"""Image reading, decoding and transforms, tokenising, vocabularies and TF-IDF.

Nothing here knows about Django: the caller hands in ``Example`` objects (ml.engine.contracts)
whose image is a local path, raw bytes or None, and the ``ImageLimits`` to decode them under.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .contracts import Example, ImageLimits, ImageLoadError

__all__ = ["Example", "ImageLimits", "ImageLoadError"]  # re-exported: the engine's contract names

# torchvision's ImageNet statistics; every pretrained image encoder here expects them
# and the artifact records them so inference normalises the same way.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_bytes(example: Example, limits: ImageLimits | None = None) -> bytes | None:
    """The example's image bytes (None: no poster); a file over ``limits.max_bytes`` is
    refused before it is read."""
    limits = limits or ImageLimits()
    if example.image is None:
        return None
    if isinstance(example.image, (bytes, bytearray)):
        data = bytes(example.image)
    else:
        path = Path(example.image)
        try:
            size = path.stat().st_size
            if size > limits.max_bytes:
                raise ImageLoadError(
                    f"example {example.key}: image {example.image} is {size} bytes, over the {limits.max_bytes} limit"
                )
            data = path.read_bytes()
        except OSError as exc:
            raise ImageLoadError(f"example {example.key}: cannot read image {example.image}: {exc}") from exc
    if len(data) > limits.max_bytes:
        raise ImageLoadError(f"example {example.key}: image is {len(data)} bytes, over the {limits.max_bytes} limit")
    return data


def decode_image(
    data: bytes, key: str = "?", limits: ImageLimits | None = None, target: int | None = None
) -> Image.Image:
    """RGB image from ``data``; more than ``limits.max_pixels`` is refused from the header,
    before any pixel is decoded.

    ``target``: the square size the caller will resize to. A JPEG at least twice that size
    in both directions is then decoded at 1/2, 1/4 or 1/8 scale (Pillow's draft mode, the
    DCT does the downscaling), never below ``target`` in either direction: much less work
    for large posters, and the same pixels as before for posters under twice the target.
    """
    limits = limits or ImageLimits()
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > limits.max_pixels:
                raise ImageLoadError(f"example {key}: image of {img.width}x{img.height} px is too large")
            if target and img.format == "JPEG":
                img.draft("RGB", (target, target))
            # Grayscale, palette and CMYK posters all become 3-channel RGB.
            return img.convert("RGB")
    except ImageLoadError:
        raise
    except Exception as exc:  # PIL raises many types for broken files
        raise ImageLoadError(f"example {key}: image does not decode: {exc}") from exc


def content_hash(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def image_transforms(image_size: int, train: bool):
    """Train-time augmentation vs deterministic eval transform.

    Posters are about 2:3; eval squashes the whole poster to a square rather than
    cropping away its title or faces, and training crops with poster-like ratios.
    """
    if train:
        # Imported here, not for the eval transform: torchvision pulls in torch._dynamo, sympy
        # and triton (~190 MB resident) that an inference process never needs.
        from torchvision import transforms as T

        normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        return T.Compose(
            [
                T.RandomResizedCrop(image_size, scale=(0.6, 1.0), ratio=(0.55, 0.85)),
                T.RandomHorizontalFlip(),
                T.RandomRotation(8),
                T.ColorJitter(brightness=0.25),
                T.ToTensor(),
                normalize,
            ]
        )
    return EvalImageTransform(image_size)


class EvalImageTransform:
    """The deterministic eval transform: squash to ``size`` x ``size`` (bilinear, as
    torchvision's Resize on a PIL image), scale to [0, 1] and ImageNet-normalise.

    Done in Pillow and numpy rather than with per-image torch ops: those start the
    intra-op thread pool for every small tensor, which on a busy CPU cost ~20x the
    arithmetic. The output equals ``Resize + ToTensor + Normalize`` (to float rounding).
    ``size`` tells ``decode_image`` how far it may draft-decode.
    """

    def __init__(self, size: int):
        self.size = size
        self._scale = (1.0 / (255.0 * np.asarray(IMAGENET_STD, dtype=np.float32))).reshape(1, 1, 3)
        self._shift = (
            np.asarray(IMAGENET_MEAN, dtype=np.float32) / np.asarray(IMAGENET_STD, dtype=np.float32)
        ).reshape(1, 1, 3)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) * self._scale - self._shift
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def labels_matrix(examples: list[Example], n_genres: int) -> np.ndarray:
    y = np.zeros((len(examples), n_genres), dtype=np.float32)
    for row, ex in enumerate(examples):
        for g in ex.labels:
            if not 0 <= g < n_genres:
                raise ValueError(f"example {ex.key}: genre index {g} outside 0..{n_genres - 1}")
            y[row, g] = 1.0
    return y


# ---------------------------------------------------------------- words

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

PAD, UNK = "<pad>", "<unk>"


def tokenize(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


class Vocabulary:
    """Word -> index, with 0 = padding and 1 = unknown."""

    def __init__(self, words: list[str]):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: list[str], max_size: int, min_count: int) -> Vocabulary:
        counts = Counter(w for t in texts for w in tokenize(t))
        # Sorting by (-count, word) keeps the vocabulary deterministic.
        kept = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
        return cls([PAD, UNK] + kept[: max(0, max_size - 2)])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_tokens: int) -> list[int]:
        ids = [self.index.get(w, 1) for w in tokenize(text)[:max_tokens]]
        return ids or [1]  # an empty overview still gets one (unknown) token

    def to_dict(self) -> dict:
        return {"words": self.words}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}  # all of it is in to_dict()

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        return cls(data["words"])


def load_word_vectors(path: str, vocab: Vocabulary, dim: int, log=None) -> torch.Tensor:
    """Initial embedding matrix from a GloVe or word2vec text file.

    Words missing from the file keep a small random vector; the padding row is zero.
    """
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(len(vocab), dim, generator=gen) * 0.1
    weights[0] = 0
    found = 0
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"cannot open word vectors file {path}: {exc}") from exc
    with handle:
        for line_no, line in enumerate(handle, 1):
            parts = line.rstrip().split(" ")
            if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec text header: "<count> <dim>"
            if len(parts) < 2:
                continue
            word, values = parts[0], parts[1:]
            if len(values) != dim:
                raise ValueError(
                    f"{path} line {line_no}: vectors have {len(values)} dimensions, config embedding_dim is {dim}"
                )
            idx = vocab.index.get(word.lower())
            if idx is not None and idx > 1:
                weights[idx] = torch.tensor([float(v) for v in values])
                found += 1
    if log:
        log(f"word vectors: {found}/{len(vocab) - 2} vocabulary words found in {path}")
    return weights


class TfidfVectorizer:
    """Sublinear TF-IDF over word n-grams, L2-normalised rows (numpy only)."""

    def __init__(self, terms: list[str], idf: np.ndarray, ngrams: int):
        self.terms = list(terms)
        self.index = {t: i for i, t in enumerate(self.terms)}
        self.idf = np.asarray(idf, dtype=np.float32)
        self.ngrams = ngrams

    @staticmethod
    def _grams(text: str, ngrams: int) -> list[str]:
        words = tokenize(text)
        grams = list(words)
        for n in range(2, ngrams + 1):
            grams += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
        return grams

    @classmethod
    def fit(cls, texts: list[str], max_features: int, ngrams: int = 2, min_df: int = 2) -> TfidfVectorizer:
        df = Counter()
        for t in texts:
            df.update(set(cls._grams(t, ngrams)))
        kept = sorted(((c, t) for t, c in df.items() if c >= min_df), key=lambda ct: (-ct[0], ct[1]))[:max_features]
        terms = sorted(t for _, t in kept)
        n = len(texts)
        idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in terms], dtype=np.float32)
        if not terms:
            raise ValueError("TF-IDF: no term occurs in at least min_df training texts")
        return cls(terms, idf, ngrams)

    @property
    def dim(self) -> int:
        return len(self.terms)

    def transform(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, t in enumerate(texts):
            counts = Counter(g for g in self._grams(t, self.ngrams) if g in self.index)
            if not counts:
                continue
            cols = np.fromiter((self.index[g] for g in counts), dtype=np.int64, count=len(counts))
            tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), dtype=np.float32, count=len(counts))
            vals = tf * self.idf[cols]
            out[row, cols] = vals / np.linalg.norm(vals)
        return out

    def to_dict(self) -> dict:
        return {"terms": self.terms, "ngrams": self.ngrams}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"tfidf.idf": torch.from_numpy(self.idf.copy())}

    @classmethod
    def from_saved(cls, data: dict, tensors: dict[str, torch.Tensor]) -> TfidfVectorizer:
        return cls(data["terms"], tensors["tfidf.idf"].numpy(), data["ngrams"])
