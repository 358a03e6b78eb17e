"""Data insight: genre distribution, co-occurrence (clustered), overview lengths, share by decade.

The aggregates behind the insight page (catalog.views.insight_page), cached until the catalog
or its labels change.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max
from django.db.models.functions import Length

from .models import Genre, LabelChange, Movie, MovieGenre


def catalog_insight() -> dict:
    """Aggregates for the insight page, cached until the catalog or its labels change."""
    stamp = (Movie.objects.count(), LabelChange.objects.aggregate(m=Max("id"))["m"], MovieGenre.objects.count())
    key = "catalog-insight:" + "-".join(str(part) for part in stamp)
    data = cache.get(key)
    if data is None:
        data = _compute_insight()
        cache.set(key, data, 600)
    return data


def _heat_colour(value: float) -> str:
    """White -> deep blue for 0..1."""
    value = max(0.0, min(1.0, value))
    r, g, b = (int(255 - value * (255 - c)) for c in (31, 78, 196))
    return f"rgb({r},{g},{b})"


def _heat_scale(top: float) -> dict:
    """The heatmap's colour scale for its legend: cell colour = _heat_colour(value / top)."""
    return {
        "gradient": "linear-gradient(to right, " + ", ".join(_heat_colour(k / 4) for k in range(5)) + ")",
        "ticks": [{"pct": 25 * k, "label": f"{top * k / 4:.2f}"} for k in range(5)],
    }


def _compute_insight() -> dict:
    # Bounded whatever the vocabulary size: the per-genre panels (bars, co-occurrence heatmap,
    # share by decade) show the most used GENREWEB_INSIGHT_MAX_GENRES genres; the pair query
    # and the clustering only ever see those, so 1,500 genres cost what 30 do.
    limit = max(int(settings.GENREWEB_INSIGHT_MAX_GENRES), 1)
    counted = Genre.objects.annotate(n=Count("labels")).order_by("-n", "name")
    genres = list(counted[:limit])
    total_genres = Genre.objects.count()
    total_movies = Movie.objects.count()
    top = max((g.n for g in genres), default=0) or 1
    distribution = [
        {
            "genre": g,
            "count": g.n,
            "pct_of_max": 100 * g.n / top,
            "share": (100 * g.n / total_movies) if total_movies else 0,
        }
        for g in genres
    ]

    # Co-occurrence counts in one grouped self-join over the shown genres, not one query per pair.
    used = [g for g in genres if g.n]
    ids = [g.pk for g in used]
    pairs = []
    if ids:
        table = MovieGenre._meta.db_table
        marks = ", ".join(["%s"] * len(ids))
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT a.genre_id, b.genre_id, COUNT(*) FROM {table} a JOIN {table} b "
                f"ON a.movie_id = b.movie_id AND a.genre_id < b.genre_id "
                f"WHERE a.genre_id IN ({marks}) AND b.genre_id IN ({marks}) GROUP BY a.genre_id, b.genre_id",
                ids + ids,
            )
            pairs = cursor.fetchall()
    heatmap = _clustered_heatmap(used, pairs)

    # Overview length histogram (characters), bucketed in the database.
    bucket = 100
    lengths = Movie.objects.exclude(overview="").annotate(chars=Length("overview")).values_list("chars", flat=True)
    hist: dict[int, int] = {}
    for chars in lengths.iterator(chunk_size=5000):
        b = min(chars // bucket, 12)  # everything past 1,200 characters in one bin
        hist[b] = hist.get(b, 0) + 1
    hist_max = max(hist.values(), default=0) or 1
    length_hist = [
        {
            "label": f"{b * bucket}+" if b == 12 else f"{b * bucket}–{(b + 1) * bucket - 1}",
            "count": hist.get(b, 0),
            "pct_of_max": 100 * hist.get(b, 0) / hist_max,
        }
        for b in range(0, 13)
    ]
    no_overview = Movie.objects.filter(overview="").count()

    # Genre share by release decade: share of that decade's movies carrying the genre.
    per_decade: dict[int, int] = {}
    for year, n in Movie.objects.exclude(year=None).values_list("year").annotate(n=Count("id")).order_by():
        per_decade[year // 10 * 10] = per_decade.get(year // 10 * 10, 0) + n
    genre_decade: dict[tuple[int, int], int] = {}
    for year, genre_id, n in (
        MovieGenre.objects.exclude(movie__year=None)
        .filter(genre_id__in=ids)
        .values_list("movie__year", "genre_id")
        .annotate(n=Count("id"))
        .order_by()
    ):
        key = (genre_id, year // 10 * 10)
        genre_decade[key] = genre_decade.get(key, 0) + n
    decades = sorted(per_decade)
    share_rows = []
    for g in used:
        cells = []
        for d in decades:
            share = genre_decade.get((g.pk, d), 0) / per_decade[d] if per_decade[d] else 0
            cells.append({"pct": round(100 * share), "colour": _heat_colour(share * 1.6)})
        share_rows.append({"genre": g, "cells": cells})
    return {
        "total_movies": total_movies,
        "total_genres": total_genres,
        "shown_genres": len(genres),
        "distribution": distribution,
        "heatmap": heatmap,
        "length_hist": length_hist,
        "no_overview": no_overview,
        "decades": [{"label": f"{d}s", "movies": per_decade[d]} for d in decades],
        "share_rows": share_rows,
    }


def _clustered_heatmap(genres: list[Genre], pairs) -> dict:
    """Jaccard similarity of genre pairs, rows/columns ordered by hierarchical clustering
    (average linkage on 1 - Jaccard), so related genres sit next to each other."""
    import numpy as np
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    n = len(genres)
    if n == 0:
        return {"size": 0, "cells": [], "labels": []}
    index = {g.pk: i for i, g in enumerate(genres)}
    counts = np.array([g.n for g in genres], dtype=float)
    co = np.zeros((n, n))
    for a, b, c in pairs:
        if a in index and b in index:
            co[index[a], index[b]] = co[index[b], index[a]] = c
    union = counts[:, None] + counts[None, :] - co
    jaccard = np.divide(co, union, out=np.zeros_like(co), where=union > 0)
    np.fill_diagonal(jaccard, 1.0)
    order = list(range(n))
    if n > 2:
        distance = squareform(1.0 - jaccard, checks=False)
        order = [int(i) for i in leaves_list(linkage(distance, method="average"))]
    off_diag = jaccard[~np.eye(n, dtype=bool)]
    scale = float(off_diag.max()) if off_diag.size and off_diag.max() > 0 else 1.0
    cell, label_w = 30, 120
    cells = []
    for row, i in enumerate(order):
        for col, j in enumerate(order):
            value = jaccard[i, j]
            cells.append(
                {
                    "x": label_w + col * cell,
                    "y": label_w + row * cell,
                    "colour": "#1d2330" if i == j else _heat_colour(value / scale),
                    "title": f"{genres[i].name} & {genres[j].name}: {int(co[i, j])} movies, Jaccard {value:.2f}"
                    if i != j
                    else f"{genres[i].name}: {int(counts[i])} movies",
                }
            )
    labels = [{"name": genres[i].name, "pos": label_w + k * cell + cell / 2} for k, i in enumerate(order)]
    # Extra width on the right: the last rotated column labels lean past the grid.
    return {
        "size": label_w + n * cell,
        "width": label_w + n * cell + 80,
        "cell": cell - 1,
        "cells": cells,
        "labels": labels,
        "label_w": label_w,
        "scale": _heat_scale(scale),
    }
