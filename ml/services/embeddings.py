"""The embedding store every worker shares: frozen-encoder vectors in the database.

``embedding_store()`` is the one store the services hand to the engine (training, evaluation,
batch and ad-hoc prediction). ``embed_movies`` fills it for movies (the ``embed_catalog`` job
and command); ``prune_embeddings`` removes rows no movie's current overview or poster
derivative, and no current encoder or kept model version, uses any more.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db.models import Q

from base.progress import Progress, report, scaled
from catalog.models import Movie, Poster
from ml.models import Embedding, ModelVersion

logger = logging.getLogger(__name__)

# Digests per query: under SQLite's bound-variable limit (999 on old builds) with room to spare.
CHUNK = 500
WIRE_DTYPE = np.dtype("<f2")  # float16, little-endian, whatever the machine
DEVICE_TYPES = ("cpu", "cuda")


class DatabaseEmbeddingStore:
    """``ml.engine.store.EmbeddingStore`` over the ``Embedding`` table (SQLite or Postgres):
    one query per CHUNK digests to read, one multi-row insert per CHUNK vectors to write."""

    def get_many(self, space: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(digests))
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(wanted), CHUNK):
            rows = Embedding.objects.filter(space=space, digest__in=wanted[start : start + CHUNK]).values_list(
                "digest", "dim", "vector"
            )
            for digest, dim, vector in rows:
                values = np.frombuffer(bytes(vector), dtype=WIRE_DTYPE)
                if len(values) == dim:
                    out[digest] = values.astype(np.float16)
        return out

    def put_many(self, space: str, vectors: Mapping[str, np.ndarray]) -> None:
        rows = []
        for digest, vector in vectors.items():
            values = np.asarray(vector, dtype=WIRE_DTYPE).reshape(-1)
            rows.append(Embedding(space=space, digest=digest, dim=len(values), vector=values.tobytes()))
        # Same (space, digest), same content, same vector: a row another worker wrote first stays.
        Embedding.objects.bulk_create(rows, ignore_conflicts=True, batch_size=CHUNK)


def embedding_store() -> DatabaseEmbeddingStore:
    """The store the services give the engine (``fit``, ``load_model``): shared by every worker."""
    return DatabaseEmbeddingStore()


def embedding_config(config=None):
    """The frozen-encoder ModelConfig embed_catalog fills the store for (default: the
    GENREWEB_EMBED_CONFIG preset)."""
    from ml.engine.registry import RECOMMENDED_PRESET, get_config
    from ml.engine.store import stored_modalities

    config = get_config(config if config is not None else (settings.GENREWEB_EMBED_CONFIG or RECOMMENDED_PRESET))
    if not stored_modalities(config):
        raise ValueError(f"{config.name} has no frozen pretrained encoder: none of its features are stored")
    return config


@dataclass
class EmbedResult:
    movies: int = 0
    texts: int = 0
    texts_encoded: int = 0
    posters: int = 0
    posters_encoded: int = 0
    spaces: dict[str, str] = field(default_factory=dict)


def embed_movies(
    movie_ids: Sequence[int],
    *,
    config=None,
    encoders: Sequence[str] = ("text", "image"),
    batch_size: int = 256,
    progress: Progress | None = None,
) -> EmbedResult:
    """Store the vectors of these movies' overviews and poster derivatives that are not stored
    yet (resumable: a re-run encodes nothing); progress moves per encoder batch."""
    from ml.engine.features import FrozenFeatures
    from ml.engine.inputs import OVERVIEW_ONLY, with_composed_text
    from ml.engine.store import stored_modalities
    from ml.engine.train import select_device
    from ml.engine.trained import auto_num_workers

    from .data import engine_image_limits, movie_examples

    config = embedding_config(config)
    device = select_device(None)
    frozen = FrozenFeatures(
        config, device, store=embedding_store(), log=logger.info, image_limits=engine_image_limits()
    )
    wanted = [w for w in stored_modalities(config) if w in encoders]
    result = EmbedResult(spaces={w: frozen.space(w) for w in wanted})
    movie_ids = list(dict.fromkeys(int(m) for m in movie_ids))
    total = max(len(movie_ids), 1)
    report(progress, f"Embedding {len(movie_ids)} movies ({', '.join(wanted) or 'nothing'})", 0.0)
    for start in range(0, len(movie_ids), batch_size):
        examples = movie_examples(movie_ids[start : start + batch_size])
        chunk_progress = scaled(progress, start / total, min(start + batch_size, len(movie_ids)) / total)
        result.movies += len(examples)
        for position, which in enumerate(wanted):
            step = scaled(chunk_progress, position / len(wanted), (position + 1) / len(wanted))
            before = frozen.encoded[which]
            if which == "text":
                # The overview's vector (similar movies read it) and, for a config that puts
                # the title or year in front of it, the vector of the text its model reads.
                frozen.text(examples, progress=step)
                result.texts += len(examples)
                if tuple(config.text_fields) != OVERVIEW_ONLY:
                    frozen.text(with_composed_text(examples, config.text_fields), progress=step)
                    result.texts += len(examples)
                result.texts_encoded += frozen.encoded[which] - before
            else:
                _, has = frozen.image(
                    examples, batch_size=64, num_workers=auto_num_workers(config, device), progress=step
                )
                result.posters += int(has.sum())
                result.posters_encoded += frozen.encoded[which] - before
        done = min(start + batch_size, len(movie_ids))
        report(progress, f"Embedded {done} of {len(movie_ids)} movies", done / total)
    return result


# --- reclaiming rows ----------------------------------------------------------------


def text_digest(overview: str | None) -> str:
    """The digest a movie's overview is stored under (what the engine hashes: the text as given)."""
    return hashlib.sha256((overview or "").encode("utf-8")).hexdigest()


def catalog_digests(text_fields: Sequence[tuple[str, ...]] = ()) -> set[str]:
    """Every digest some movie's current overview or poster derivative has, and that of the
    text each of ``text_fields`` composes from its title, year and overview."""
    from ml.engine.contracts import Example
    from ml.engine.inputs import OVERVIEW_ONLY, compose_text

    composed = [tuple(f) for f in dict.fromkeys(tuple(f) for f in text_fields) if tuple(f) != OVERVIEW_ONLY]
    digests = set()
    rows = Movie.objects.values_list("title", "year", "overview").iterator(chunk_size=2000)
    for title, year, overview in rows:
        digests.add(text_digest(overview))
        for fields in composed:
            digests.add(text_digest(compose_text(Example(key="", text=overview or "", title=title, year=year), fields)))
    digests.update(Poster.objects.exclude(derivative_checksum="").values_list("derivative_checksum", flat=True))
    return digests


def configs_in_use() -> list:
    """The embed config and every model version's config (those this installation can read)."""
    from ml.engine.config import ModelConfig

    configs = [embedding_config()]
    for raw in ModelVersion.objects.values_list("config", flat=True):
        try:
            configs.append(ModelConfig.from_dict(raw))
        except (ValueError, TypeError):  # a family this installation lacks: nothing to keep for it
            continue
    return configs


class SpacesInUse(NamedTuple):
    spaces: set[str]
    prefixes: set[str]  # family-name prefixes: every space of that family is kept
    skipped: list[str]  # one message per encoder whose package is missing here


def spaces_in_use(configs=None) -> SpacesInUse:
    """(spaces, family-name prefixes, skipped) to keep: those of the embed config and of every
    model version's frozen encoders, on every device type. A family without a recorded identity
    has a space only its loaded weights tell, so all its spaces are kept (the prefix); so are
    those of an encoder whose package is missing here (its identity cannot be computed, and a
    reinstall brings its vectors back into use), named in ``skipped``."""
    from ml.engine.families import encoder
    from ml.engine.identity import MissingEncoderPackage, encoder_space
    from ml.engine.store import stored_modalities

    spaces, prefixes, skipped = set(), set(), {}
    for config in configs if configs is not None else configs_in_use():
        for which in stored_modalities(config):
            family = encoder(config.text_encoder if which == "text" else config.image_encoder)
            if family.identity is None:
                prefixes.add(f"{family.name}-")
                continue
            try:
                spaces.update(encoder_space(config, which, device) for device in DEVICE_TYPES)
            except MissingEncoderPackage as exc:
                prefixes.add(f"{family.name}-")
                skipped[family.name] = f"{family.name}: {exc}; its {family.name}-* spaces are kept as they are"
    return SpacesInUse(spaces, prefixes, list(skipped.values()))


@dataclass
class PruneResult:
    rows_before: int
    stale_digest_rows: int
    unused_space_rows: int
    unused_spaces: list[str]
    dry_run: bool
    skipped: list[str] = field(default_factory=list)  # encoders whose package is missing (rows kept)

    @property
    def deleted(self) -> int:
        return self.stale_digest_rows + self.unused_space_rows


def prune_embeddings(*, dry_run: bool = False) -> PruneResult:
    """Delete rows of spaces nothing uses any more, then rows whose digest no movie has now
    (its overview, the text a config in use composes from it, its poster derivative)."""
    configs = configs_in_use()
    spaces, prefixes, skipped = spaces_in_use(configs)
    keep_space = Q(space__in=spaces)
    for prefix in prefixes:
        keep_space |= Q(space__startswith=prefix)
    rows_before = Embedding.objects.count()
    unused = Embedding.objects.exclude(keep_space)
    unused_spaces = sorted(unused.values_list("space", flat=True).distinct())
    unused_rows = unused.count()
    current = catalog_digests([tuple(c.text_fields) for c in configs])
    stale_ids = [
        pk
        for pk, digest in Embedding.objects.filter(keep_space).values_list("pk", "digest").iterator()
        if digest not in current
    ]
    if not dry_run:
        unused.delete()
        for start in range(0, len(stale_ids), CHUNK):
            Embedding.objects.filter(pk__in=stale_ids[start : start + CHUNK]).delete()
    return PruneResult(rows_before, len(stale_ids), unused_rows, unused_spaces, dry_run, skipped)
