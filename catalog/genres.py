"""The controlled genre vocabulary: one place every importer (and the API) asks "is this a genre?".

Default vocabulary: TMDB's 19 movie genres with their TMDB ids (/genre/movie/list). Other
sources' spellings map onto them through ``ALIASES`` (lower-cased keys). IMDb / MM-IMDb genres
that have no TMDB equivalent are decided here, once:

- Sci-Fi -> Science Fiction, Musical -> Music (TMDB files musicals under Music),
  Film-Noir -> Crime (TMDB tags noir films Crime, usually with Drama/Thriller),
  Biography -> History (TMDB tags biopics History + Drama), News -> Documentary.
- Short, Adult, Sport, Game-Show, Reality-TV and Talk-Show are left out (``NO_EQUIVALENT``):
  they describe a format or audience rather than a story genre TMDB knows (Sport films are
  filed under Drama/Documentary case by case, so no single mapping is right). So is Kaggle's
  "Foreign" (a market, which TMDB no longer lists). The import says so on the row, like any
  unknown name; ``allow_new_genres`` keeps them as genres of their own.

A name that is neither in the vocabulary, an alias, nor an existing Genre row is *unknown*:
the import reports it on its row and does not create it, unless the import is run with
``allow_new_genres`` (then at most ``settings.GENREWEB_MAX_NEW_GENRES`` per import).
"""

from __future__ import annotations

import unicodedata

# TMDB movie genres (id, name), as served by /3/genre/movie/list in en-US.
TMDB_MOVIE_GENRES: tuple[tuple[int, str], ...] = (
    (28, "Action"),
    (12, "Adventure"),
    (16, "Animation"),
    (35, "Comedy"),
    (80, "Crime"),
    (99, "Documentary"),
    (18, "Drama"),
    (10751, "Family"),
    (14, "Fantasy"),
    (36, "History"),
    (27, "Horror"),
    (10402, "Music"),
    (9648, "Mystery"),
    (10749, "Romance"),
    (878, "Science Fiction"),
    (10770, "TV Movie"),
    (53, "Thriller"),
    (10752, "War"),
    (37, "Western"),
)

NAME_BY_TMDB_ID: dict[int, str] = dict(TMDB_MOVIE_GENRES)
TMDB_ID_BY_NAME: dict[str, int] = {name: gid for gid, name in TMDB_MOVIE_GENRES}

# Other spellings (lower-cased, as written by IMDb, MM-IMDb, Kaggle exports, people) -> TMDB name.
ALIASES: dict[str, str] = {
    "sci-fi": "Science Fiction",
    "scifi": "Science Fiction",
    "sci fi": "Science Fiction",
    "science-fiction": "Science Fiction",
    "musical": "Music",
    "film-noir": "Crime",
    "film noir": "Crime",
    "noir": "Crime",
    "biography": "History",
    "biopic": "History",
    "historical": "History",
    "news": "Documentary",
    "animated": "Animation",
    "suspense": "Thriller",
    "romantic": "Romance",
    "tv movie": "TV Movie",
    "tv-movie": "TV Movie",
}
# Genres of other sources with no TMDB equivalent (see the module docstring): unknown, with a
# clearer reason. "Foreign" is in Kaggle's (older) TMDB data; TMDB has since dropped it.
NO_EQUIVALENT: frozenset[str] = frozenset(
    {"short", "adult", "sport", "game-show", "reality-tv", "talk-show", "foreign"}
)

MAX_NAME_LENGTH = 64  # Genre.name


def canonical_name(name: str) -> str | None:
    """The vocabulary name for ``name`` (case-insensitive, aliases applied), or None if unknown."""
    key = " ".join(name.split()).lower()
    if key in ALIASES:
        return ALIASES[key]
    for vocab_name in TMDB_ID_BY_NAME:
        if vocab_name.lower() == key:
            return vocab_name
    return None


def unknown_reason(name: str) -> str:
    """Why ``name`` is not taken as a genre, for the row's warning."""
    if " ".join(name.split()).lower() in NO_EQUIVALENT:
        return f"genre {name!r} has no TMDB equivalent; left out"
    return f"unknown genre {name!r}; left out (not in the TMDB genre list, no alias)"


def new_name_problem(name: str) -> str | None:
    """Why ``name`` cannot become a new Genre even when new genres are allowed, or None."""
    if len(name) > MAX_NAME_LENGTH:
        return f"genre name is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Cn") for ch in name):
        return "genre name contains control or unassigned characters"
    return None
