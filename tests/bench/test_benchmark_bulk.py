"""benchmark_bulk on a tiny seeded catalog: the requests go through the real pages, their
bulk_labels jobs run through the job runner, the bulk change and its undo (and the direct
ones) leave the labels as they were, and the table is parsed (the figures themselves come
from PostgreSQL, see the README)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command

from catalog.models import ChangeSet, Movie, MovieGenre
from workers.models import Job

pytestmark = pytest.mark.django_db


def test_benchmark_bulk_runs_every_step_and_restores_the_labels():
    call_command("seed_synthetic", movies=60, predictions=True, batch=25, stdout=io.StringIO())
    before = set(MovieGenre.objects.values_list("movie_id", "genre__name"))
    dramas = Movie.objects.filter(labels__genre__slug="drama").count()
    out = io.StringIO()
    call_command("benchmark_bulk", genre="drama", add="comedy", direct=True, stdout=out)
    text = out.getvalue()
    rows = re.findall(
        r"^((?:bulk add|undo) (?:request|job|direct)|export csv|export json) .*?\s([\d,]+)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+([\d,]+)\s+(-?[\d.]+)$",
        text,
        re.M,
    )
    assert [r[0] for r in rows] == [
        "bulk add request",
        "bulk add job",
        "undo request",
        "undo job",
        "bulk add direct",
        "undo direct",
        "export csv",
        "export json",
    ], text
    assert int(rows[1][1].replace(",", "")) == dramas and int(rows[6][1].replace(",", "")) == 60
    paged, direct = ChangeSet.objects.filter(kind=ChangeSet.Kind.BULK).order_by("pk")
    for bulk in (paged, direct):
        assert bulk.status == ChangeSet.Status.SUCCEEDED and bulk.matched == dramas
        assert bulk.changed + bulk.unchanged == dramas and bulk.changed == direct.changed
        assert ChangeSet.objects.get(undoes=bulk).changed == bulk.changed
    assert list(Job.objects.order_by("pk").values_list("params__change_set", "status")) == [
        (paged.pk, "succeeded"),
        (ChangeSet.objects.get(undoes=paged).pk, "succeeded"),
    ]
    assert set(MovieGenre.objects.values_list("movie_id", "genre__name")) == before


def test_benchmark_bulk_needs_known_genres():
    with pytest.raises(CommandError, match="unknown genre"):
        call_command("benchmark_bulk", genre="nope", stdout=io.StringIO())
