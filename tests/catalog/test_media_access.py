"""Issue 8, "nobody gets what is not theirs": media over HTTP.

Only poster files are served, only to users who may read the catalog (the catalog pages'
rule, GENREWEB_ANONYMOUS_READ included), with the type of their detected format and nosniff.
Model artifacts and anything else under MEDIA_ROOT are never served (404)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _urls_see_this_tests_media_root(media_root):
    """Build the URL map again for this test's MEDIA_ROOT: a map that captured the folder when
    it was imported (as django.views.static.serve's document_root did) must not hide a leak."""
    import importlib

    from django.urls import clear_url_caches

    import genreweb.urls

    importlib.reload(genreweb.urls)
    clear_url_caches()
    yield
    importlib.reload(genreweb.urls)
    clear_url_caches()


@pytest.fixture
def artifact(db, media_root):
    """A model artifact where ml.services.registry stores them (models/<uid>/...)."""
    name = default_storage.save("models/0123abcd/model.safetensors", ContentFile(b"\x00weights" * 64))
    return name


def poster_path(world) -> str:
    movie = next(iter(world["movies"].values()))
    return "/media/" + movie.poster.original.name


@pytest.mark.django_db
def test_model_artifacts_are_never_served(world, artifact, labeler_client, staff_client):
    for client in (Client(), labeler_client, staff_client):
        assert client.get(f"/media/{artifact}").status_code == 404
    # Nor are other folders, directory listings, or ways around the poster folders.
    default_storage.save("embeddings/x.npy", ContentFile(b"\x93NUMPY"))
    for path in (
        "/media/embeddings/x.npy",
        "/media/",
        "/media/posters/",
        "/media/posters/original/",
        "/media/posters/original/001/../../../models/0123abcd/model.safetensors",
        "/media/posters/original/001/%2e%2e/%2e%2e/%2e%2e/models/0123abcd/model.safetensors",
        "/media/posters/original/..%2f..%2fmodels/x.jpg",
    ):
        assert labeler_client.get(path).status_code == 404, path


@pytest.mark.django_db
def test_posters_follow_the_catalog_read_rule(world, labeler_client, settings):
    url = poster_path(world)
    anonymous = Client()
    settings.GENREWEB_ANONYMOUS_READ = False
    denied = anonymous.get(url)
    assert denied.status_code == 302 and "/accounts/login/" in denied["Location"]

    response = labeler_client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content)[:3] == b"\xff\xd8\xff"

    settings.GENREWEB_ANONYMOUS_READ = True
    assert anonymous.get(url).status_code == 200


@pytest.mark.django_db
def test_a_non_image_file_in_a_poster_folder_is_not_served_as_a_page(world, labeler_client):
    # Left by an older version that kept the source's extension.
    for name, data in (
        ("posters/original/001/evil.html", b"<script>alert(1)</script>"),
        ("posters/original/001/evil.svg", b"<svg onload='alert(1)'/>"),
    ):
        default_storage.save(name, ContentFile(data))
        assert labeler_client.get(f"/media/{name}").status_code == 404


@pytest.mark.django_db
def test_pages_api_and_admin_show_posters_through_the_checked_url(
    world, labeler_client, api_clients, django_user_model
):
    movie = next(iter(world["movies"].values()))
    expected = f"/media/{movie.poster.original.name}"
    assert movie.poster.display_url == expected
    assert expected in labeler_client.get("/").content.decode()
    assert expected in labeler_client.get(f"/movies/{movie.pk}/").content.decode()
    api = api_clients["labeler"].get(f"/api/movies/{movie.pk}/").json()
    assert api["poster"]["url"] == f"http://testserver{expected}"
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", password="a-long-test-password-42"))
    assert expected in admin.get("/admin/catalog/movie/").content.decode()


class SigningStorage(Storage):
    """Stands in for S3: builds a URL per call, as S3's presigned URLs do."""

    def url(self, name):
        return f"https://bucket.example/{name}?X-Amz-Expires=300&X-Amz-Signature=sig"

    def exists(self, name):
        return True


@pytest.mark.django_db
def test_other_storages_give_their_own_short_lived_url(world):
    poster = next(iter(world["movies"].values())).poster
    poster.original.storage = SigningStorage()
    assert poster.display_url.startswith("https://bucket.example/posters/original/")


@pytest.mark.slow  # a fresh Django process
def test_s3_settings_sign_every_url_with_a_short_expiry():
    code = (
        "from django.conf import settings; o = settings.STORAGES['default']['OPTIONS']; "
        "print(o['querystring_auth'], o['querystring_expire'])"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_STORAGE_BUCKET_NAME": "b",
        "AWS_QUERYSTRING_AUTH": "0",
        "GENREWEB_MEDIA_URL_TTL_S": "120",
        "DJANGO_SETTINGS_MODULE": "genreweb.settings",
        "GENREWEB_DATA_DIR": str(ROOT / "var"),
    }
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["True", "120"]
