"""benchmark_bulk on a tiny seeded catalog: the steps run through the real pages, the bulk
change and its undo leave the labels as they were, and the table is parsed (the figures
themselves come from 70k movies on PostgreSQL, see the README)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command

from catalog.models import ChangeSet, Movie, MovieGenre

pytestmark = pytest.mark.django_db


def test_benchmark_bulk_runs_every_step_and_restores_the_labels():
    call_command("seed_synthetic", movies=60, predictions=True, batch=25, stdout=io.StringIO())
    before = set(MovieGenre.objects.values_list("movie_id", "genre__name"))
    dramas = Movie.objects.filter(labels__genre__slug="drama").count()
    out = io.StringIO()
    call_command("benchmark_bulk", genre="drama", add="comedy", stdout=out)
    text = out.getvalue()
    rows = re.findall(
        r"^(bulk add|undo|export csv|export json) .*?\s([\d,]+)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+([\d,]+)\s+(-?[\d.]+)$",
        text,
        re.M,
    )
    assert [r[0] for r in rows] == ["bulk add", "undo", "export csv", "export json"], text
    assert int(rows[0][1].replace(",", "")) == dramas and int(rows[2][1].replace(",", "")) == 60
    bulk = ChangeSet.objects.get(kind=ChangeSet.Kind.BULK)
    assert bulk.matched == dramas and bulk.changed + bulk.unchanged == dramas
    assert ChangeSet.objects.get(undoes=bulk).changed == bulk.changed
    assert set(MovieGenre.objects.values_list("movie_id", "genre__name")) == before


def test_benchmark_bulk_needs_known_genres():
    with pytest.raises(CommandError, match="unknown genre"):
        call_command("benchmark_bulk", genre="nope", stdout=io.StringIO())
