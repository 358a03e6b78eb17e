"""The empty catalog's one-click import of the development set beside the project: offered to
staff only when the folder (settings.GENREWEB_DEVSET_DIR) holds a movies.csv, allowed as an
import root without GENREWEB_IMPORT_ROOTS naming it, queued as an ordinary import job. Tests
use a fake folder, never the real devset."""

from __future__ import annotations

import pytest
from django.test import Client

from catalog.importers import registry
from catalog.models import Movie
from tests.factories import make_user, write_csv_folder
from workers.models import Job
from workers.runners import run_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def roots(settings, tmp_path):
    """Import roots that do not include the fake devset (so only the devset rule allows it)."""
    elsewhere = tmp_path / "imports"
    elsewhere.mkdir()
    settings.GENREWEB_IMPORT_ROOTS = [elsewhere]
    return settings


@pytest.fixture
def devset(roots, tmp_path):
    folder = write_csv_folder(tmp_path / "shared" / "data" / "devset", 3)
    roots.GENREWEB_DEVSET_DIR = folder
    return folder.resolve()


@pytest.fixture
def clients(monkeypatch):
    monkeypatch.setattr("workers.jobs.send_job_message", lambda *args: None)
    staff, labeler = Client(), Client()
    staff.force_login(make_user("sam", staff=True))
    labeler.force_login(make_user("lena"))
    return staff, labeler


def test_the_devset_is_an_import_root_only_when_it_is_there(roots, tmp_path):
    roots.GENREWEB_DEVSET_DIR = tmp_path / "no-devset"
    assert registry.devset_dir() is None and registry.import_roots() == [(tmp_path / "imports").resolve()]
    (tmp_path / "no-devset").mkdir()
    assert registry.devset_dir() is None  # a folder without movies.csv is not the devset
    (tmp_path / "no-devset" / "movies.csv").write_text("id,title\n")
    assert registry.devset_dir() == (tmp_path / "no-devset").resolve()
    assert (tmp_path / "no-devset").resolve() in registry.import_roots()
    roots.GENREWEB_DEVSET_DIR = None
    assert registry.devset_dir() is None


def test_staff_import_the_devset_in_one_click(devset, clients):
    staff, labeler = clients
    html = staff.get("/").content.decode()
    assert "No movies yet" in html and 'action="/import/devset/"' in html and str(devset) in html
    assert 'action="/import/devset/"' not in labeler.get("/").content.decode()
    assert labeler.post("/import/devset/").status_code == 403

    response = staff.post("/import/devset/")
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert (job.kind, job.params) == ("import", {"source": "csv", "path": str(devset)})
    # A second click while it is queued shows that job rather than queueing another.
    assert staff.post("/import/devset/")["Location"] == f"/jobs/{job.pk}/" and Job.objects.count() == 1

    result = run_import(job, lambda message, fraction: None)  # what the worker runs
    assert result["created"] == 3 and result["posters_stored"] == 3
    assert Movie.objects.count() == 3
    assert 'action="/import/devset/"' not in staff.get("/").content.decode()  # the catalog is not empty now


def test_no_devset_no_offer(roots, clients, tmp_path):
    roots.GENREWEB_DEVSET_DIR = tmp_path / "missing"
    staff, _ = clients
    html = staff.get("/").content.decode()
    assert "No movies yet" in html and "/import/devset/" not in html
    response = staff.post("/import/devset/", follow=True)
    assert "no development set" in response.content.decode() and not Job.objects.exists()
    assert staff.get("/import/devset/").status_code == 405
