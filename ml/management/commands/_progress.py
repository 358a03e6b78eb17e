"""Progress printing shared by the ml management commands."""

from __future__ import annotations

import time


class ConsoleProgress:
    """A progress(message, fraction) callback that prints at most every ``interval`` seconds."""

    def __init__(self, stream, interval: float = 2.0):
        self.stream = stream
        self.interval = interval
        self.last = 0.0

    def __call__(self, message: str, fraction: float) -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - self.last >= self.interval:
            self.stream.write(f"[{fraction * 100:5.1f}%] {message}")
            self.last = now
