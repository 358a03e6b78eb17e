"""A new import source is one module plus one registration (catalog.importers.registry).

The tiny source below (a JSON-lines file of movies) is registered by a fixture and, with no
other edit anywhere, runs as an import job, is offered and checked by the queue-job form,
has its ``import_movies`` command, and is refused everywhere again once unregistered.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from catalog.importers import registry, run_import
from catalog.importers.parsing import clean_text, genre_refs, parse_year
from catalog.importers.records import ImporterError, MovieRecord, RowError, SkippedRow, Source
from catalog.models import ImportRun, Movie, validate_source
from workers.jobs import enqueue
from workers.kinds import InvalidJobParams, validate_params
from workers.models import Job

pytestmark = pytest.mark.django_db


# --- the whole new source: one class and one registration -------------------------------------


class JsonLinesSource(Source):
    """One JSON object per line: {"id": ..., "title": ..., "year": ..., "genres": [...]}."""

    def __init__(self, params: dict):
        super().__init__()
        try:
            self.lines = Path(params["path"]).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ImporterError(f"cannot read {params['path']}: {exc.strerror}") from None
        self.total = len(self.lines)

    def rows(self) -> Iterator[MovieRecord | SkippedRow]:
        for row, line in enumerate(self.lines, start=1):
            try:
                yield self._record(row, json.loads(line))
            except (ValueError, RowError) as exc:  # json.JSONDecodeError is a ValueError
                yield SkippedRow(row, str(exc), {"line": row})

    def _record(self, row: int, data: dict) -> MovieRecord:
        title = clean_text(data.get("title"))
        if not title:
            raise RowError("title is empty")
        return MovieRecord(
            row=row,
            source=self.kind,
            source_id=clean_text(data.get("id")),
            title=title,
            year=parse_year(data.get("year")),
            genres=genre_refs(data.get("genres") or []),
            where={"line": row},
        )


def jsonl_path_check(params: dict) -> dict[str, str]:
    if params.get("path") and not str(params["path"]).endswith(".jsonl"):
        return {"path": "a JSON lines import reads a .jsonl file"}
    return {}


@pytest.fixture
def jsonl_source():
    registry.register(
        "jsonl",
        "JSON lines file",
        params={"path"},
        check=jsonl_path_check,
        help="Import a JSON lines file of movies.",
        arguments=[registry.argument("path", help="the .jsonl file")],
    )(JsonLinesSource)
    yield registry.get("jsonl")
    registry.unregister("jsonl")


@pytest.fixture
def movies_jsonl(tmp_path) -> Path:
    path = tmp_path / "movies.jsonl"
    rows = [
        {"id": "j1", "title": "Line One", "year": 1999, "genres": ["Drama"]},
        {"id": "j2", "title": "Line Two", "year": 2001, "genres": ["Comedy", "Horror"]},
        {"id": "j3", "title": "", "year": 2002},  # reported and skipped, the rest imports
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n{not json\n", encoding="utf-8")
    return path


@pytest.fixture
def eager_tasks():
    from genreweb.celery import app

    old = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, False
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = old


@pytest.fixture
def staff_client(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("staffer", password="x-long-pass-42", is_staff=True))
    return client


# --- through the job ------------------------------------------------------------------------------


def test_a_registered_source_runs_as_an_import_job(
    jsonl_source, movies_jsonl, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = enqueue("import", {"source": "jsonl", "path": str(movies_jsonl)})
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, (job.status, job.error, job.log)
    assert (job.result["source"], job.result["created"], job.result["skipped"]) == ("jsonl", 2, 2)

    run = ImportRun.objects.get(pk=job.result["import_run_id"])
    assert (run.kind, run.kind_label, run.status) == ("jsonl", "JSON lines file", "succeeded")
    assert [(skip["row"], skip["reason"]) for skip in run.skipped_rows][0] == (3, "title is empty")
    assert run.skipped_rows[1]["row"] == 4 and "Expecting property name" in run.skipped_rows[1]["reason"]
    two = Movie.objects.get(source="jsonl", source_id="j2")
    assert (two.title, two.year, two.source_label) == ("Line Two", 2001, "JSON lines file")
    assert sorted(two.genres.values_list("name", flat=True)) == ["Comedy", "Horror"]
    two.full_clean()  # the model accepts the registered kind

    # Idempotent like every importer: the same file again changes nothing.
    again = run_import("jsonl", {"path": str(movies_jsonl)})
    assert (again.created, again.unchanged) == (0, 2)


def test_job_validation_uses_the_entry_params_and_checks(jsonl_source, movies_jsonl, tmp_path):
    cleaned = validate_params("import", {"source": "jsonl", "path": str(movies_jsonl), "limit": "1"})
    assert cleaned == {"source": "jsonl", "path": str(movies_jsonl.resolve()), "limit": 1}
    with pytest.raises(InvalidJobParams) as err:
        validate_params("import", {"source": "jsonl", "path": str(movies_jsonl), "encoding": "latin-1"})
    assert set(err.value.errors) == {"encoding"}  # not a param of this source
    other = tmp_path / "movies.csv"
    other.write_text("id,title\n")
    with pytest.raises(InvalidJobParams) as err:
        validate_params("import", {"source": "jsonl", "path": str(other)})
    assert err.value.errors == {"path": "a JSON lines import reads a .jsonl file"}


# --- through the queue-job form -------------------------------------------------------------------


def test_the_queue_form_offers_the_source_and_checks_its_params(
    jsonl_source, movies_jsonl, staff_client, monkeypatch, tmp_path, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: sent.append(args))
    page = staff_client.get(reverse("workers:jobs"))
    assert ("jsonl", "JSON lines file") in page.context["form"].fields["import-source"].choices
    assert '<option value="jsonl">JSON lines file</option>' in page.content.decode()

    wrong = tmp_path / "movies.csv"
    wrong.write_text("id,title\n")
    response = staff_client.post(
        reverse("workers:jobs"), {"kind": "import", "import-source": "jsonl", "import-path": str(wrong)}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["import-path"] == ["a JSON lines import reads a .jsonl file"]
    assert not Job.objects.exists()

    # Fields the source does not take (a TMDB key) are not sent; the job gets exactly its params.
    form = {
        "kind": "import",
        "import-source": "jsonl",
        "import-path": str(movies_jsonl),
        "import-api_key": "k",
        "import-limit": "5",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("workers:jobs"), form)
    job = Job.objects.get()
    assert response.status_code == 302 and sent and sent[0][0] == job.pk
    assert job.params == {
        "source": "jsonl",
        "path": str(movies_jsonl.resolve()),
        "limit": 5,
        "allow_new_genres": False,
    }


# --- through the command --------------------------------------------------------------------------


def test_the_import_movies_command_is_built_from_the_entry(jsonl_source, movies_jsonl):
    out = io.StringIO()
    call_command("import_movies", "jsonl", str(movies_jsonl), "--limit", "1", stdout=out, skip_checks=True)
    assert "JSON lines file import #" in out.getvalue() and "succeeded: 1 created" in out.getvalue()
    assert list(Movie.objects.values_list("source_id", flat=True)) == ["j1"]


# --- and gone again once unregistered -------------------------------------------------------------


def test_an_unregistered_source_is_refused_everywhere(movies_jsonl, staff_client):
    assert "jsonl" not in dict(registry.choices())
    with pytest.raises(ImporterError, match="unknown import kind 'jsonl'"):
        run_import("jsonl", {"path": str(movies_jsonl)})
    with pytest.raises(InvalidJobParams) as err:
        validate_params("import", {"source": "jsonl", "path": str(movies_jsonl)})
    assert "source" in err.value.errors
    with pytest.raises(ValidationError):
        validate_source("jsonl")
    validate_source("manual")  # movies entered by hand stay valid
    response = staff_client.post(
        reverse("workers:jobs"), {"kind": "import", "import-source": "jsonl", "import-path": "x.jsonl"}
    )
    assert "import-source" in response.context["form"].errors


def test_every_built_in_source_is_registered_with_its_params():
    assert [entry.kind for entry in registry.importers()] == ["csv", "kaggle", "mmimdb", "tmdb"]
    assert registry.get("csv").all_params == {"path", "posters", "encoding", "limit", "allow_new_genres"}
    assert not registry.get("tmdb").needs_path and registry.get("mmimdb").needs_path


def test_built_in_commands_keep_their_options(capsys):
    with pytest.raises(SystemExit):
        call_command("import_kaggle", "--help")
    assert "[--posters POSTERS | --poster-url-base POSTER_URL_BASE]" in capsys.readouterr().out
    with pytest.raises(CommandError, match="not allowed with argument --posters"):
        call_command("import_kaggle", "movies.csv", "--posters", "p", "--poster-url-base", "http://x")


def test_admin_lists_show_the_registry_label(jsonl_source, movies_jsonl, admin_client):
    run_import("jsonl", {"path": str(movies_jsonl)})
    assert "JSON lines file" in admin_client.get("/admin/catalog/movie/").content.decode()
    assert "JSON lines file" in admin_client.get("/admin/catalog/importrun/").content.decode()
