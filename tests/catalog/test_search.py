"""catalog.search: whole-word matching, ranking tiers, sort options (SQLite and PostgreSQL;
the typo tier only on PostgreSQL)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from catalog.forms import CatalogFilterForm
from catalog.labels import set_labels
from catalog.models import Genre, LabelOrigin, Movie
from catalog.search import SORTS, TIER_TYPO, order_movies, query_words, resolve_sort, search_movies

pytestmark = pytest.mark.django_db

# title, year, popularity, overview
MOVIES = [
    ("The Author", 2001, 90.0, "A writer of thrillers meets his readers."),
    ("Thor", 2011, 10.0, "The god of thunder is cast down to Earth."),
    ("Thor: Ragnarok", 2017, 50.0, "Imprisoned on a far planet, a hero races home."),
    ("Avengers Assemble", 2012, 80.0, "Thor, Iron Man and friends defend New York."),
    ("Legend of Thor and Loki", 1990, 5.0, "Two brothers quarrel."),
    ("Authority", 2005, 70.0, "An authoritarian mayor rules a small town."),
    ("Up", 2009, 20.0, "An old man flies his house to South America."),
    ("Cup Final", 1991, 60.0, "Two football fans on opposite sides."),
    ("The Last Supper", 1995, 40.0, "Students poison dinner guests."),
    ("Knocked Up", 2007, 30.0, "A one-night stand has consequences."),
    ("It", 2017, 15.0, "Children face a shape-shifting clown."),
    ("Whatever Works", 2009, 35.0, "It is never too late, says a grumpy genius."),
    ("Untitled", None, None, "No year, no popularity."),
]


@pytest.fixture
def catalog():
    return {
        title: Movie.objects.create(
            title=title,
            year=year,
            popularity=popularity,
            overview=overview,
            source="csv",
            source_id=f"s{i}",
        )
        for i, (title, year, popularity, overview) in enumerate(MOVIES)
    }


def titles(query: str, sort: str | None = None) -> list[str]:
    found = search_movies(Movie.objects.all(), query)
    return list(order_movies(found, sort, searched=bool(query_words(query))).values_list("title", flat=True))


def test_thor_ranks_thor_first_and_does_not_match_author(catalog):
    found = titles("Thor")
    assert found[:4] == ["Thor", "Thor: Ragnarok", "Legend of Thor and Loki", "Avengers Assemble"]
    assert "The Author" not in found and "Authority" not in found


def test_ranking_tiers_exact_prefix_title_words_overview(catalog):
    # exact title, then title prefix, then the word elsewhere in a title, then an overview,
    # whatever their popularity (Avengers is the most popular of the four)
    found = titles("thor")
    assert found.index("Thor") < found.index("Thor: Ragnarok") < found.index("Legend of Thor and Loki")
    assert found.index("Legend of Thor and Loki") < found.index("Avengers Assemble")


def test_short_queries_match_whole_words_only(catalog):
    found = titles("Up")
    assert found[0] == "Up"
    assert "Knocked Up" in found
    assert "Cup Final" not in found and "The Last Supper" not in found
    found = titles("it")
    assert found[0] == "It"
    assert "Untitled" not in found  # "it" inside a word
    assert "Whatever Works" not in found  # "it" is not worth matching in an overview


def test_a_one_word_query_orders_each_tier_by_popularity_then_closeness():
    for i, (title, popularity) in enumerate(
        [
            ("Ice Age", 5.0),
            ("Ice Age: The Meltdown", 40.0),
            ("Ice Princess", 10.0),
            ("Ice Age: Continental Drift", None),
            ("Ice", None),
            ("Black Ice", 90.0),
            ("Thin Ice", 1.0),
        ]
    ):
        Movie.objects.create(title=title, popularity=popularity, source="csv", source_id=f"ice{i}")
    # exact title first; then titles that start with the word by popularity (unknown last,
    # shorter first); then the word elsewhere, by popularity too
    assert titles("ice") == [
        "Ice",
        "Ice Age: The Meltdown",
        "Ice Princess",
        "Ice Age",
        "Ice Age: Continental Drift",
        "Black Ice",
        "Thin Ice",
    ]
    # more words: the title closest to what was typed first, popularity only breaks ties
    assert titles("ice age") == ["Ice Age", "Ice Age: The Meltdown", "Ice Age: Continental Drift"]


def test_case_and_punctuation_do_not_matter_for_an_exact_title(catalog):
    assert titles("thor ragnarok")[0] == "Thor: Ragnarok"
    assert titles("THOR: RAGNAROK")[0] == "Thor: Ragnarok"


def test_every_word_must_match_in_title_or_overview(catalog):
    assert titles("thor loki") == ["Legend of Thor and Loki"]
    assert titles("thunder god") == ["Thor"]  # overview words, any order
    assert titles("thor thunder") == []  # one in the title, one in the overview: no movie has both in one
    assert len(titles("   ")) == len(MOVIES)  # no words: no search


def test_no_matches_for_substrings(catalog):
    assert titles("hor") == []  # inside "Thor" and "Author"
    for query in ("auth", "supp"):
        found = search_movies(Movie.objects.all(), query)
        if connection.vendor == "postgresql":  # there, only as near misses (no movie has the word)
            assert set(found.values_list("search_tier", flat=True)) <= {TIER_TYPO}
        else:
            assert not found.exists()


@pytest.mark.postgres
def test_small_typos_find_the_title_on_postgres(catalog):
    assert titles("Thorr")[0] == "Thor"
    assert titles("Ragnarokk")[0] == "Thor: Ragnarok"
    assert "The Author" not in titles("Thorr")
    # near misses are only looked for when no movie has the words
    assert titles("thor loki") == ["Legend of Thor and Loki"]
    assert "The Author" not in titles("Thor")


def test_sort_options(catalog):
    everyone = Movie.objects.all()
    by = {sort: list(order_movies(everyone, sort, searched=False).values_list("title", flat=True)) for sort in SORTS}
    assert by["title"] == sorted(by["title"])
    assert [t for t in by["popularity"] if t != "Untitled"][0] == "The Author"  # 90, the most popular
    assert by["relevance"] == by["popularity"]  # relevance without a query
    years = [catalog[t].year for t in by["year"]]
    assert years[:2] == [2017, 2017] and years[-1] is None  # newest first, no year last
    user = get_user_model().objects.create_user("rita")
    drama = Genre.objects.create(name="Drama")
    set_labels(catalog["Cup Final"], [drama], user=user)
    set_labels(catalog["Knocked Up"], [drama], origin=LabelOrigin.IMPORTED)  # an import does not count as relabelling
    relabelled = list(order_movies(everyone, "relabelled", searched=False).values_list("title", flat=True))
    assert relabelled[0] == "Cup Final"
    assert relabelled[1:] == [t for t in by["popularity"] if t != "Cup Final"]  # then the browse order


def test_sort_applies_to_search_results(catalog):
    assert titles("thor", sort="year") == [
        "Thor: Ragnarok",
        "Avengers Assemble",
        "Thor",
        "Legend of Thor and Loki",
    ]
    assert titles("thor", sort="title") == sorted(titles("thor"))


def test_filter_form_sorts_and_rejects_unknown_sorts(catalog):
    form = CatalogFilterForm({"q": "thor", "sort": "popularity"})
    assert form.is_valid()
    assert list(form.filter(Movie.objects.all()).values_list("title", flat=True)) == [
        "Avengers Assemble",
        "Thor: Ragnarok",
        "Thor",
        "Legend of Thor and Loki",
    ]
    assert resolve_sort("", searched=True) == "relevance"
    assert resolve_sort(None, searched=False) == "popularity"
    assert resolve_sort("relevance", searched=False) == "popularity"
    assert resolve_sort("year", searched=True) == "year"
    assert not CatalogFilterForm({"sort": "label_issue"}).is_valid()
