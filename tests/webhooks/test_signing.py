"""Signatures against a reference HMAC computed here, independently of webhooks.signing."""

from __future__ import annotations

import hashlib
import hmac

from webhooks import signing

SECRET = "whsec_test-secret"
BODY = b'{"id":"e1","event":"labels.changed","data":{"movie":1}}'


def reference(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_header_carries_the_timestamp_and_the_reference_hmac():
    header = signing.signature_header(SECRET, BODY, timestamp=1_700_000_000)
    assert header == f"t=1700000000,v1={reference(SECRET, 1_700_000_000, BODY)}"


def test_verify_accepts_the_genuine_request_and_refuses_any_change():
    header = signing.signature_header(SECRET, BODY, timestamp=1_700_000_000)
    now = 1_700_000_060
    assert signing.verify(SECRET, BODY, header, now=now)
    assert not signing.verify(SECRET, BODY + b" ", header, now=now)  # body changed
    assert not signing.verify("whsec_other", BODY, header, now=now)  # another secret
    forged = header.replace("t=1700000000", "t=1700000050")  # replayed with a fresh timestamp
    assert not signing.verify(SECRET, BODY, forged, now=now)
    assert not signing.verify(SECRET, BODY, header, now=now + signing.DEFAULT_TOLERANCE_S)  # too old
    assert not signing.verify(SECRET, BODY, "v1=abc", now=now)
    assert not signing.verify(SECRET, BODY, "garbage", now=now)


def test_the_readme_snippet_verifies_a_delivery():
    """The receiver code in the README ("Webhooks") works on what genreweb sends."""
    import re
    import time
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Webhooks", 1)[1].split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 6
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 - our own README
    header = signing.signature_header(SECRET, BODY, timestamp=int(time.time()))
    assert namespace["verify"](SECRET, BODY, header)
    assert not namespace["verify"](SECRET, BODY + b"x", header)
    assert not namespace["verify"]("whsec_other", BODY, header)
    stale = signing.signature_header(SECRET, BODY, timestamp=int(time.time()) - 3600)
    assert not namespace["verify"](SECRET, BODY, stale)
