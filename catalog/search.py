"""Catalog search and sort: the one way the browse page and the movie list API find and
order movies.

What a catalog user expects from typing a title (issue 13): the movie whose title *is* the
query first, then titles that start with it, then titles that contain its words, then
movies whose overview does; words match whole words only, so "Thor" does not find "author"
and "Up" does not find "cup" or "supper".

Matching (both backends): a movie matches when every word of the query is a word of its
title, or every word is a word of its overview. Ranking tiers (``search_tier``, smaller is
better), computed on the matched rows only:

    0  exact title        "thor"      -> "Thor"  (case and punctuation ignored)
    1  title prefix       "thor"      -> "Thor: Ragnarok"
    2  words in title     "ragnarok"  -> "Thor: Ragnarok"
    3  overview only      "thunder"   -> a movie whose overview says "god of thunder"
    4  typo (PostgreSQL)  "thorr"     -> "Thor"   (only when no movie has the words)

PostgreSQL: words are matched by full-text search, the title with the ``simple``
configuration (no stop words, no stemming: "It" and "Up" are real titles) and the overview
with ``english`` (stemmed, stop words dropped, so "it" does not match every overview); both
are stored generated tsvector columns with GIN indexes (migration 0009_search_indexes).
Inside a tier, movies order by a weighted full-text rank (title hit 1.0 = weight A, overview
hit 0.4 = weight B) plus the title's trigram similarity to the query, then popularity.
Small typos: when no movie has the query's words (one indexed EXISTS query), titles with a
run of whole words similar to the query match instead (pg_trgm strict word similarity
``<<%`` on the trigram index of migration 0004), for queries of 4+ characters.

SQLite (the embedded default): the same tiers through word-boundary regular expressions
(Django registers REGEXP for SQLite); no stemming, no typo tolerance, and a short list of
English stop words is not matched in overviews. Inside a tier: shorter titles first, then
popularity.

One-word queries ("Ice", "Star", "The"): every title of a tier has that word in the same
place, so rank and title length say little about which one was meant; there, popularity
comes first inside the tier (``search_popularity``; not for near misses, where the closest
spelling comes first), and movies without popularity follow in the order above. A catalog
without popularity data (a CSV import) keeps that order.
"""

from __future__ import annotations

import re

from django.contrib.postgres.search import (
    SearchQuery,
    SearchRank,
    SearchVectorField,
    TrigramSimilarity,
    TrigramStrictWordSimilarity,
)
from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    F,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Length, Upper

from .models import LabelChange, LabelOrigin, Movie

# Sort choices of the catalog page and the API (``sort``). "relevance" is the default with a
# query and means popularity without one. A "label-issue score" sort waits for the label
# audit (it has no data source yet).
SORT_CHOICES = [
    ("relevance", "Relevance"),
    ("popularity", "Popularity"),
    ("title", "Title (A–Z)"),
    ("year", "Year (newest first)"),
    ("relabelled", "Recently relabelled"),
]
SORTS = [value for value, _ in SORT_CHOICES]

TIER_EXACT, TIER_PREFIX, TIER_TITLE_WORDS, TIER_OVERVIEW, TIER_TYPO = range(5)
# Trigram word similarity is only asked for from this many characters: a "typo" in a
# two- or three-letter word is another word ("Up" ~ "Us").
TYPO_MIN_CHARS = 4
OVERVIEW_WEIGHT = 0.4  # rank weight of an overview hit against a title hit (1.0)
# Words too common to mean anything in an overview (SQLite; PostgreSQL's english
# configuration drops its own, longer list). Titles still match them: "It", "Up".
OVERVIEW_STOP_WORDS = frozenset(
    "a an and are as at be but by for from has he her his in is it its of on or she that the their they this to "
    "up was were with who you".split()
)
WORD_RE = re.compile(r"\w+")

# The text search configurations of the stored tsvectors (migration 0009).
TITLE_CONFIG = "simple"
OVERVIEW_CONFIG = "english"


def _no_popularity():
    # A cast, not a bare NULL: PostgreSQL refuses a constant in ORDER BY.
    return Cast(Value(None), FloatField())


def query_words(query: str) -> list[str]:
    """The words of a query, lower case; punctuation separates words."""
    return [w.lower() for w in WORD_RE.findall(query or "")]


def search_movies(movies: QuerySet[Movie], query: str) -> QuerySet[Movie]:
    """``movies`` that match ``query``, annotated with ``search_tier``, ``search_rank`` and
    ``search_popularity`` (see the module docstring); an empty query returns ``movies`` unchanged."""
    words = query_words(query)
    if not words:
        return movies
    if connection.vendor == "postgresql":
        found = _search_postgres(movies, query, words)
    else:
        found = _search_portable(movies, words)
    if "search_popularity" in found.query.annotations:  # near misses: closest spelling first
        return found
    # Inside a tier, a one-word query orders by popularity first (see the module docstring).
    return found.annotate(search_popularity=F("popularity") if len(words) == 1 else _no_popularity())


def _title_regexes(words: list[str]) -> tuple[str, str, list[str]]:
    """Exact-title, title-prefix and per-word regexes. ``\\W`` and ``^``/``$`` mean the same in
    PostgreSQL's ARE and Python's re (SQLite's REGEXP), so one pattern serves both."""
    escaped = [re.escape(w) for w in words]
    joined = r"\W+".join(escaped)
    exact = rf"^\W*{joined}\W*$"
    prefix = rf"^\W*{joined}(\W|$)"
    per_word = [rf"(^|\W){w}(\W|$)" for w in escaped]
    return exact, prefix, per_word


def _all_words(field: str, patterns: list[str]) -> Q:
    q = Q()
    for pattern in patterns:
        q &= Q(**{f"{field}__iregex": pattern})
    return q


def _like_all(field: str, words: list[str]) -> Q:
    """LIKE before REGEXP: SQLite's C-level LIKE discards most rows before the Python regex
    runs. Its case folding is ASCII-only, so other words are left to the regex."""
    q = Q()
    for word in words:
        if word.isascii():
            q &= Q(**{f"{field}__icontains": word})
    return q


def _tiers(words: list[str], fallback_tier: int) -> Case:
    exact, prefix, per_word = _title_regexes(words)
    return Case(
        When(title__iregex=exact, then=Value(TIER_EXACT)),
        When(title__iregex=prefix, then=Value(TIER_PREFIX)),
        When(_all_words("title", per_word), then=Value(TIER_TITLE_WORDS)),
        default=Value(fallback_tier),
        output_field=IntegerField(),
    )


def _search_portable(movies: QuerySet[Movie], words: list[str]) -> QuerySet[Movie]:
    _, _, per_word = _title_regexes(words)
    in_title = _like_all("title", words) & _all_words("title", per_word)
    overview_words = [w for w in words if w not in OVERVIEW_STOP_WORDS]
    in_overview = Q(pk__in=[])
    if overview_words:
        in_overview = _like_all("overview", overview_words) & _all_words(
            "overview", [rf"(^|\W){re.escape(w)}(\W|$)" for w in overview_words]
        )
    return movies.filter(in_title | in_overview).annotate(
        search_tier=_tiers(words, TIER_OVERVIEW),
        # Shorter titles first inside a tier: the title closest to what was typed.
        search_rank=Cast(-Length("title"), FloatField()),
    )


class TrigramStrictWordMatch(Func):
    """``query <<% field``: some run of whole words of ``field`` is similar to ``query``
    (pg_trgm strict word similarity above ``pg_trgm.strict_word_similarity_threshold``,
    default 0.5), answered by a gin_trgm_ops index on ``field``. Strict, because plain word
    similarity matches inside words: "thor" ~ "The Author" scores 0.8. (django.contrib.postgres
    registers this as a lookup only when the app is installed; this project does not.)"""

    arg_joiner = " <<%% "
    template = "(%(expressions)s)"
    output_field = BooleanField()


def stored_vector(column: str) -> RawSQL:
    """A tsvector column that migration 0009 adds on PostgreSQL (``search_title``:
    to_tsvector('simple', title); ``search_overview``: to_tsvector('english', overview))."""
    assert column in {"search_title", "search_overview"}
    return RawSQL(f'"{Movie._meta.db_table}"."{column}"', [], output_field=SearchVectorField())


def _search_postgres(movies: QuerySet[Movie], query: str, words: list[str]) -> QuerySet[Movie]:
    phrase = " ".join(words)
    title_query = SearchQuery(phrase, config=TITLE_CONFIG, search_type="plain")
    overview_query = SearchQuery(phrase, config=OVERVIEW_CONFIG, search_type="plain")
    movies = movies.alias(title_fts=stored_vector("search_title"), overview_fts=stored_vector("search_overview"))
    in_text = Q(title_fts=title_query) | Q(overview_fts=overview_query)
    if len(phrase) >= TYPO_MIN_CHARS and not movies.filter(in_text).exists():
        # No movie has these words: look for near-miss spellings in titles ("Thorr" -> "Thor").
        # Only then, because similarity also finds look-alikes of real matches ("thor loki" ~
        # "Thor"). UPPER(title): the expression the trigram GIN index of migration 0004 is on.
        # Word similarity finds the typo; whole-title similarity prefers "Thor" to "Thor: Ragnarok".
        return movies.filter(TrigramStrictWordMatch(Value(phrase.upper()), Upper("title"))).annotate(
            search_tier=Value(TIER_TYPO),
            search_popularity=_no_popularity(),
            search_rank=TrigramStrictWordSimilarity(Value(phrase), "title") + TrigramSimilarity("title", Value(phrase)),
        )
    # Weighted full-text rank: a title hit (A, 1.0) counts more than an overview hit (B, 0.4);
    # plus the title's trigram similarity to the query, so inside a tier the title closest to
    # what was typed comes first ("red" -> "Red Eye" before "Red Riding Hood: ...").
    rank = (
        SearchRank(F("title_fts"), title_query)
        + OVERVIEW_WEIGHT * SearchRank(F("overview_fts"), overview_query)
        + TrigramSimilarity("title", Value(phrase))
    )
    return movies.filter(in_text).annotate(search_tier=_tiers(words, TIER_OVERVIEW), search_rank=rank)


def last_relabelled():
    """When a person (or an accepted suggestion) last changed the movie's labels; imports
    do not count. Answered by the partial index labelchange_relabelled_idx (migration 0009)."""
    return Subquery(
        LabelChange.objects.filter(movie=OuterRef("pk"))
        .exclude(origin=LabelOrigin.IMPORTED)
        .order_by("-created_at")
        .values("created_at")[:1]
    )


def resolve_sort(sort: str | None, searched: bool) -> str:
    """The sort in effect: the one asked for, else relevance with a query, popularity without
    one. "relevance" without a query is popularity."""
    if sort == "relevance" and not searched:
        return "popularity"
    return sort or ("relevance" if searched else "popularity")


def order_movies(movies: QuerySet[Movie], sort: str | None, searched: bool) -> QuerySet[Movie]:
    """``movies`` in the order ``sort`` names (one of SORTS, see ``resolve_sort``); relevance
    needs the annotations of ``search_movies``. Every order ends in the primary key, so pages
    never overlap or skip a movie."""
    sort = resolve_sort(sort, searched)
    browse = ["-popularity", "title", "id"]  # Movie.Meta.ordering, served by movie_browse_order_idx
    if sort == "relevance":
        return movies.order_by(
            "search_tier",
            F("search_popularity").desc(nulls_last=True),
            F("search_rank").desc(),
            F("popularity").desc(nulls_last=True),
            "title",
            "id",
        )
    if sort == "title":
        return movies.order_by("title", "id")
    if sort == "year":
        return movies.order_by(F("year").desc(nulls_last=True), *browse)
    if sort == "relabelled":
        return movies.annotate(relabelled_at=last_relabelled()).order_by(
            F("relabelled_at").desc(nulls_last=True), *browse
        )
    return movies.order_by(*browse)
