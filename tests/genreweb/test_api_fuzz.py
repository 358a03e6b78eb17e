"""A bounded schemathesis run over the whole API, against a live server.

Every operation of /api/schema/ gets schema-generated requests (valid and invalid data,
fixed seed: ``derandomize``), sent with a staff token and with a labeler token, to real
objects (ids from the ``world`` fixture) and to random ids. It fails on any 5xx, on a status
code the schema does not document, and on a body or content type that does not match the
schema. Failures are collected across all operations and reported together (no shrinking),
so one run gives the full list.

Bounds: ``GENREWEB_FUZZ_EXAMPLES`` examples per operation, mode and target (default 10),
sent once per role: about 1,000 requests, about a minute on a quiet machine (25: about 2,500
requests, 2-3 minutes). Nothing here needs a worker:
POST /api/jobs/ only enqueues (the test broker has no consumer), and POST /api/predict/
meets a production model whose artifact does not exist (a clean 503, never a 500).
"""

from __future__ import annotations

import os
import time

import pytest
import requests
import schemathesis  # a dev dependency (pyproject [dev]), like pytest itself
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.slow]

EXAMPLES = int(os.environ.get("GENREWEB_FUZZ_EXAMPLES", 10))
# Server errors are checked below (a documented 503 "model cannot be used" from POST
# /api/predict/ is the designed answer, not a crash); the rest is schemathesis's.
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
ALLOWED_5XX = {("POST /api/predict/", 503)}


def _tokens(*users) -> dict[str, str]:
    from rest_framework.authtoken.models import Token

    return {user.username: Token.objects.get_or_create(user=user)[0].key for user in users}


def _real_ids(world, job) -> dict[str, dict]:
    """Path parameters that name existing objects, per path prefix."""
    movie = world["movies"]["Long Road"]
    prediction = movie.predictions.first()
    genre = next(iter(world["genres"].values()))
    return {
        "/api/movies/": {"id": movie.pk},
        "/api/model-versions/": {"id": world["version"].pk},
        "/api/predictions/": {"id": prediction.pk},
        "/api/genres/": {"id": genre.pk},
        "/api/jobs/": {"id": job.pk},
    }


def _failure_titles(exc: BaseException) -> list[str]:
    found = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
    return [getattr(f, "title", None) or str(f).strip().splitlines()[0][:120] for f in found]


def _run_operation(operation, base_url, tokens, path_parameters, failures, counts):
    sessions = {role: requests.Session() for role in tokens}  # no cookie leaks between roles

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

        @given(case=strategy)
        @hypothesis_settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            for role, key in tokens.items():
                counts["requests"] += 1
                headers = {"Authorization": f"Token {key}"}
                try:
                    response = case.call(base_url=base_url, session=sessions[role], headers=headers, timeout=30)
                except requests.RequestException as exc:
                    failures.setdefault((operation.label, "no response", str(exc)[:120]), []).append("")
                    continue
                if (operation.label, response.status_code) in ALLOWED_5XX:
                    counts["allowed 503"] += 1
                elif response.status_code >= 500:
                    counts["5xx"] += 1
                    failures.setdefault((operation.label, response.status_code, "Server error"), []).append(
                        f"[{role}] {case.as_curl_command(headers=headers)[:300]}\n      -> {response.text[:200]}"
                    )
                try:
                    case.validate_response(response, checks=CHECKS, headers=headers)
                except (AssertionError, FailureGroup) as exc:
                    for title in _failure_titles(exc):
                        key = (operation.label, response.status_code, title)
                        failures.setdefault(key, []).append(
                            f"[{role}] {case.as_curl_command(headers=headers)[:300]}\n      -> {response.text[:200]}"
                        )

        try:
            run()
        except Unsatisfiable:
            # Nothing invalid to send (e.g. a GET without parameters in negative mode).
            counts["unsatisfiable"] += 1


@pytest.mark.django_db(transaction=True)
def test_api_fuzz_no_server_errors_and_schema_holds(live_server, world, staff, labeler):
    from workers.models import Job

    job = Job.objects.create(kind="snapshot", params={}, requested_by=staff)
    tokens = _tokens(staff, labeler)
    raw = requests.get(
        f"{live_server.url}/api/schema/?format=json",
        timeout=60,
        headers={"Authorization": f"Token {tokens[staff.username]}"},
    )
    assert raw.status_code == 200, raw.text[:300]
    schema = schemathesis.openapi.from_dict(raw.json())
    real_ids = _real_ids(world, job)

    failures: dict[tuple, list[str]] = {}
    counts = {"operations": 0, "requests": 0, "5xx": 0, "allowed 503": 0, "unsatisfiable": 0}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1
        targets = [None]
        if "{id}" in operation.path:
            prefix = next((p for p in real_ids if operation.path.startswith(p)), None)
            if prefix:
                targets.append(real_ids[prefix])
        for path_parameters in targets:
            _run_operation(operation, live_server.url, tokens, path_parameters, failures, counts)
    elapsed = time.monotonic() - started
    print(
        f"\nschemathesis: {counts['operations']} operations, {counts['requests']} requests, "
        f"{counts['5xx']} x 5xx (+{counts['allowed 503']} documented 503 from predict), {sum(map(len, failures.values()))} failing responses, {elapsed:.0f} s"
    )
    report = [
        f"{len(examples)} x {op} -> {status}: {title}\n    e.g. {examples[0]}"
        for (op, status, title), examples in sorted(failures.items(), key=lambda kv: str(kv[0]))
    ]
    assert not failures, f"{sum(map(len, failures.values()))} failing responses:\n" + "\n".join(report)
