"""Similar movies: nearest neighbours by cosine over the embedding store's vectors.

``similar_movies(movie, by="text"|"poster"|"fused", k)`` ranks every other movie whose
current overview (text) or poster derivative (poster) has a stored vector in the embed
config's space (``embedding_config()``; the space is ``ml.engine.identity.encoder_space``,
never a loaded encoder). ``fused`` is the mean of the two cosine scores, over movies that have
both. Nothing is encoded here: a movie whose vector is not stored yet raises ``NotEmbedded``
("run embed_catalog").

Brute force: per process, one float32 matrix per space (rows normalised, one row per movie
with a vector), built from the ``Embedding`` rows on first use. Each call reads a cheap stamp
(max id of the space's ``Embedding`` rows, by the space + id index, and max id of the movies,
or of the posters for the image space) and rebuilds the matrix when it moved (at most once per
``REBUILD_INTERVAL_S``): a changed overview or poster is seen once embed_catalog has stored
its vector (a new row). Label changes and other edits cost no rebuild. Every neighbour is
checked against its movie's current digest before it is shown (one query for the
candidates), so a vector the matrix still holds for an overview or poster that has changed
since (or a deleted movie) is never used. The query vector is read from the table each call,
under the movie's current digest, from the first of the config's spaces (this process's device
type first) that holds it.

``near_duplicate_posters(threshold)`` finds poster pairs with cosine >= threshold in the
image space (the ``flag_near_duplicate_posters`` command sets the catalog flag with it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count, Max

from catalog.models import Movie, Poster
from ml.models import Embedding

from .embeddings import DEVICE_TYPES, WIRE_DTYPE, embedding_config, text_digest

SIMILAR_BY = ("text", "poster", "fused")
DEFAULT_K = 10
MAX_K = 100
# Cosine of two poster vectors at or above which they count as near-duplicates (the same
# artwork re-encoded, resized or lightly cropped). NOT tuned on data yet: a conservative start
# (a JPEG re-encode of one image stays far above it); lower it only after checking the pairs
# it adds on a validation sample.
NEAR_DUPLICATE_THRESHOLD = 0.95
MODALITY = {"text": "text", "poster": "image"}
# A moved stamp rebuilds a matrix at most this often (seconds): during an embed_catalog fill new
# rows arrive every few seconds, and a 100k-row rebuild takes seconds.
REBUILD_INTERVAL_S = 30.0


class NotEmbedded(Exception):
    """The movie (or the catalog) has no stored vector for what was asked; nothing is encoded
    in a request: run embed_catalog."""


@dataclass(frozen=True)
class Neighbour:
    movie_id: int
    title: str
    year: int | None
    score: float
    scores: dict[str, float] = field(default_factory=dict)  # fused: {"text": .., "poster": ..}


@dataclass
class _Space:
    stamp: tuple
    built_at: float  # time.monotonic()
    movie_ids: np.ndarray  # int64, ascending
    digests: list[str]  # digest of row i, as it was when built
    matrix: np.ndarray  # float32 (n, dim), rows of unit length


_CACHE: dict[str, _Space] = {}
_LOCK = threading.Lock()


def _spaces(which: str) -> list[str]:
    """The embed config's spaces for a modality ("text"/"image"): this process's device type
    first, then the others (vectors filled on a GPU worker serve a CPU-only web server too)."""
    import sys

    from ml.engine.identity import MissingEncoderPackage, encoder_space  # torch-free: a web process stays light

    try:
        config = embedding_config()
    except (KeyError, ValueError):  # no (frozen) embed config: nothing is stored to compare
        return []
    # This process's device type, without importing torch for it: a process that has not
    # loaded torch runs nothing on a GPU (every device type is tried anyway, this one first).
    torch = sys.modules.get("torch")
    here = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    devices = [here, *(d for d in DEVICE_TYPES if d != here)]
    try:
        return [s for s in (encoder_space(config, which, device) for device in devices) if s]
    except MissingEncoderPackage as exc:  # the panel says so instead of failing the page
        raise NotEmbedded(f"{exc}: no {'overview' if which == 'text' else 'poster'} neighbours.") from exc


def _stamp(which: str, space: str) -> tuple:
    """Max id of the space's Embedding rows (index on space + id) and of the movies (posters):
    a new vector or a new movie moves it; an edit does not (a label change must not cost a
    rebuild: a changed overview or poster gets a new Embedding row once embedded). Deleted rows
    (prune_embeddings) and deleted movies need no rebuild: no current movie has their digests,
    so the digest check drops them."""
    model = Movie if which == "text" else Poster
    return (
        Embedding.objects.filter(space=space).aggregate(top=Max("id"))["top"],
        model.objects.aggregate(top=Max("id"))["top"],
    )


def _movie_digests(which: str):
    """(movie id, current digest) of every movie that has one, in id order."""
    if which == "text":
        for movie_id, overview in Movie.objects.order_by("id").values_list("id", "overview").iterator(2000):
            yield movie_id, text_digest(overview)
    else:
        rows = Poster.objects.exclude(derivative_checksum="").order_by("movie_id")
        yield from rows.values_list("movie_id", "derivative_checksum").iterator(2000)


def _build(which: str, space: str, stamp: tuple) -> _Space:
    """The space's matrix: one float32 unit row per movie whose current digest has a vector
    (filled row by row into one array: peak memory about the float16 rows plus the matrix)."""
    vectors: dict[str, bytes] = {}
    widths: dict[int, int] = {}
    rows = Embedding.objects.filter(space=space).values_list("digest", "dim", "vector")
    for digest, dim, vector in rows.iterator(2000):
        vector = bytes(vector)
        if len(vector) == dim * WIRE_DTYPE.itemsize:
            vectors[digest] = vector
            widths[dim] = widths.get(dim, 0) + 1
    # One space, one encoder: a row of another width is broken; keep the common width.
    dim = max(widths, key=widths.get) if widths else 0
    ids, digests = [], []
    for movie_id, digest in _movie_digests(which):
        vector = vectors.get(digest)
        if vector is not None and len(vector) == dim * WIRE_DTYPE.itemsize:
            ids.append(movie_id)
            digests.append(digest)
    matrix = np.empty((len(ids), dim), dtype=np.float32)
    for row, digest in enumerate(digests):
        matrix[row] = np.frombuffer(vectors[digest], dtype=WIRE_DTYPE)
    del vectors
    norms = np.linalg.norm(matrix, axis=1)
    good = norms > 0
    matrix /= np.where(good, norms, 1.0)[:, None]
    movie_ids = np.asarray(ids, dtype=np.int64)
    if not good.all():
        matrix, movie_ids = matrix[good], movie_ids[good]
        digests = [d for d, g in zip(digests, good, strict=True) if g]
    return _Space(stamp=stamp, built_at=time.monotonic(), movie_ids=movie_ids, digests=digests, matrix=matrix)


def _space(which: str, space: str) -> _Space:
    """The cached matrix of a space, rebuilt when its stamp moved, at most once per
    REBUILD_INTERVAL_S (while embed_catalog fills the store, rows arrive all the time)."""
    stamp = _stamp(which, space)
    with _LOCK:
        cached = _CACHE.get(space)
        now = time.monotonic()
        if cached is None or (cached.stamp != stamp and now - cached.built_at >= REBUILD_INTERVAL_S):
            cached = _CACHE[space] = _build(which, space, stamp)
    return cached


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def _current_digest(movie: Movie, which: str) -> str | None:
    if which == "text":
        return text_digest(movie.overview)
    checksum = Poster.objects.filter(movie_id=movie.pk).values_list("derivative_checksum", flat=True).first()
    return checksum or None


def _query_vector(movie: Movie, which: str) -> tuple[str, np.ndarray]:
    """(space, unit vector) of the movie's current overview or poster: the first of the config's
    spaces that holds it. NotEmbedded when none does (nothing is encoded here)."""
    spaces = _spaces(which)
    what = "overview" if which == "text" else "poster"
    if not spaces:
        raise NotEmbedded(f"The embedding config has no stored {what} encoder: no {what} neighbours.")
    digest = _current_digest(movie, which)
    if digest is None:
        raise NotEmbedded(f"{movie} has no preprocessed poster: no poster neighbours.")
    for space in spaces:
        row = Embedding.objects.filter(space=space, digest=digest).values_list("dim", "vector").first()
        if row is not None and len(bytes(row[1])) == row[0] * WIRE_DTYPE.itemsize:
            vector = np.frombuffer(bytes(row[1]), dtype=WIRE_DTYPE).astype(np.float32)
            norm = float(np.linalg.norm(vector))
            if norm == 0:
                raise NotEmbedded(f"The stored {what} vector of {movie} is all zeros.")
            return space, vector / norm
    raise NotEmbedded(f"The {what} of {movie} has no stored vector yet: run embed_catalog.")


def _scores(movie: Movie, by: str) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, tuple[_Space, np.ndarray]]]:
    """Movie ids with a score, the score per id, and per part (text/poster) its score array and
    the space it came from (for checking digests)."""
    parts = ("text", "poster") if by == "fused" else (by,)
    per_part = {}
    for part in parts:
        which = MODALITY[part]
        space, query = _query_vector(movie, which)  # before the matrix: a missing vector costs no build
        cached = _space(which, space)
        if cached.matrix.shape[1:] != query.shape:
            raise NotEmbedded(f"The stored {part} vectors have another width than {movie}'s: run embed_catalog.")
        per_part[part] = (cached, cached.matrix @ query)
    if by != "fused":
        cached, scores = per_part[by]
        return cached.movie_ids, {by: scores}, {by: (cached, np.arange(len(scores)))}
    (text_space, text_scores), (poster_space, poster_scores) = per_part["text"], per_part["poster"]
    ids, ti, pi = np.intersect1d(text_space.movie_ids, poster_space.movie_ids, assume_unique=True, return_indices=True)
    return (
        ids,
        {"text": text_scores[ti], "poster": poster_scores[pi]},
        {"text": (text_space, ti), "poster": (poster_space, pi)},
    )


def similar_movies(movie: Movie, by: str = "text", k: int = DEFAULT_K) -> list[Neighbour]:
    """The ``k`` movies most like ``movie`` by ``by`` (best first, the movie itself excluded)."""
    if by not in SIMILAR_BY:
        raise ValueError(f"by must be one of {', '.join(SIMILAR_BY)}")
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}")
    ids, part_scores, origins = _scores(movie, by)
    total = np.mean(np.stack(list(part_scores.values())), axis=0) if part_scores else np.zeros(0)
    total = np.where(ids == movie.pk, -np.inf, total)
    wanted = k + 1
    while True:
        take = min(wanted, len(ids))
        top = np.argpartition(-total, take - 1)[:take] if take else np.zeros(0, dtype=np.int64)
        top = top[np.argsort(-total[top], kind="stable")]
        top = [i for i in top if np.isfinite(total[i])]
        found = _checked(top, ids, total, part_scores, origins, k)
        if len(found) >= k or take >= len(ids):
            return found
        wanted *= 4


def _checked(top, ids, total, part_scores, origins, k) -> list[Neighbour]:
    """The candidates whose vectors still match their movie's current overview/poster."""
    candidate_ids = [int(ids[i]) for i in top]
    movies = {
        row["id"]: row
        for row in Movie.objects.filter(id__in=candidate_ids).values(
            "id", "title", "year", "overview", "poster__derivative_checksum"
        )
    }
    out = []
    for i in top:
        row = movies.get(int(ids[i]))
        if row is None:
            continue  # deleted since the matrix was built
        current = {"text": text_digest(row["overview"]), "poster": row["poster__derivative_checksum"] or None}
        if any(cached.digests[index[i]] != current[part] for part, (cached, index) in origins.items()):
            continue  # changed since: its stored vector is not this movie's any more
        scores = {part: round(float(values[i]), 4) for part, values in part_scores.items()} if len(origins) > 1 else {}
        out.append(Neighbour(row["id"], row["title"], row["year"], round(float(total[i]), 4), scores))
        if len(out) == k:
            break
    return out


# --- near-duplicate posters -------------------------------------------------------------


def near_duplicate_posters(threshold: float = NEAR_DUPLICATE_THRESHOLD, block: int = 256) -> dict[int, int]:
    """movie id -> the lowest movie id whose poster vector has cosine >= ``threshold`` with
    its own (in the image space of the embed config). All pairs, ``block`` rows at a time
    (memory: block x n floats): O(n^2), fine for thousands, long at 100k."""
    if not 0 < threshold <= 1:
        raise ValueError("threshold must be in (0, 1]")
    spaces = _spaces("image")
    if not spaces:
        raise NotEmbedded("The embedding config has no stored poster encoder.")
    cached = _space("image", _image_space(spaces))
    matrix, ids = cached.matrix, cached.movie_ids
    out: dict[int, int] = {}
    for start in range(0, len(ids), block):
        end = min(start + block, len(ids))
        hits = matrix[start:end] @ matrix[:end].T >= threshold - 1e-6
        hits &= np.arange(end)[None, :] < np.arange(start, end)[:, None]  # only earlier (lower id) movies
        for row in np.flatnonzero(hits.any(axis=1)):
            original = int(ids[int(hits[row].argmax())])
            out[int(ids[start + row])] = out.get(original, original)  # chains point at the first one
    return out


def poster_vector_count() -> int:
    """How many movies' current posters have a stored vector (what near_duplicate_posters saw)."""
    spaces = _spaces("image")
    return len(_space("image", _image_space(spaces)).movie_ids) if spaces else 0


def _image_space(spaces: list[str]) -> str:
    """The image space that holds the most posters' vectors (this device type's on a tie)."""
    counts = dict(
        Embedding.objects.filter(space__in=spaces).values("space").annotate(n=Count("id")).values_list("space", "n")
    )
    return max(spaces, key=lambda s: counts.get(s, 0))
