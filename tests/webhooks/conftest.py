"""A real HTTP receiver on 127.0.0.1 (http.server in a thread) and the settings that allow it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.factories import make_user


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next of ``codes`` (the last one repeats), records what came."""

    codes: list[int] = field(default_factory=lambda: [200])
    body: bytes = b"ok"
    headers: dict = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def next_code(self) -> int:
        index = min(len(self.received) - 1, len(self.codes) - 1)
        return self.codes[index]


@pytest.fixture
def receiver():
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state.received.append(Received(self.path, dict(self.headers.items()), body))
                code = state.next_code()
            self.send_response(code)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook?source=genreweb"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def loopback_allowed(settings):
    settings.GENREWEB_WEBHOOK_ALLOWED_NETWORKS = "127.0.0.1/32"
    return settings


@pytest.fixture
def staff(db):
    return make_user("sam", staff=True)


@pytest.fixture
def labeler(db):
    return make_user("lena")


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _broker_not_known_down(monkeypatch):
    """Each test starts without a remembered broker failure (webhooks.delivery)."""
    from webhooks import delivery

    monkeypatch.setattr(delivery, "_broker_down_until", 0.0)
