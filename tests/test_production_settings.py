"""Issue 8: production mode (GENREWEB_PRODUCTION=1) is HTTPS-only by default, each part can be
changed from the environment, and X-Forwarded-Proto is trusted only when configured.
Settings are read in a fresh process, as gunicorn would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Every test starts a fresh Django process (seconds each): full suite only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = {"GENREWEB_PRODUCTION": "1", "SECRET_KEY": "prod-" + "k7#Q" * 12, "ALLOWED_HOSTS": "genreweb.example"}
NAMES = (
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_PROXY_SSL_HEADER",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_CONTENT_TYPE_NOSNIFF",
)


def run(args: list[str], tmp_path, **env) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "GENREWEB_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "genreweb.settings"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def settings_in_process(tmp_path, **env) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {NAMES!r}}}))"
    )
    result = run(["-c", code], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_defaults_are_https_only(tmp_path):
    values = settings_in_process(tmp_path, **PRODUCTION)
    assert values["SECURE_SSL_REDIRECT"] is True and values["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"] and values["SECURE_CONTENT_TYPE_NOSNIFF"]
    # No proxy header unless the operator says the proxy sets it: clients could claim HTTPS.
    assert values["SECURE_PROXY_SSL_HEADER"] is None
    trusted = settings_in_process(tmp_path, **PRODUCTION, GENREWEB_TRUST_X_FORWARDED_PROTO="1")
    assert trusted["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_production_https_settings_come_from_the_environment(tmp_path):
    values = settings_in_process(tmp_path, **PRODUCTION, SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="3600")
    assert values["SECURE_SSL_REDIRECT"] is False and values["SECURE_HSTS_SECONDS"] == 3600
    local = settings_in_process(tmp_path)
    assert local["SECURE_SSL_REDIRECT"] is False and local["SECURE_HSTS_SECONDS"] == 0


def test_check_deploy_passes_in_production_mode(tmp_path):
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        tmp_path,
        **PRODUCTION,
        SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        SECURE_HSTS_PRELOAD="1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Without the opt-in subdomain/preload switches, only those two (deliberate) notes remain.
    plain = run(["manage.py", "check", "--deploy"], tmp_path, **PRODUCTION)
    assert "W004" not in plain.stderr + plain.stdout and "W008" not in plain.stderr + plain.stdout
