"""Reading CSV files the way real exports arrive: odd encodings, cut-off last rows, bad lines."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

from .records import ImporterError, MovieRecord, RowError, SkippedRow

# Tried in order once UTF-8 fails. cp1252 is what spreadsheet tools on Windows write;
# latin-1 decodes any byte, so the import always goes on, with a warning saying how.
FALLBACK_ENCODINGS = ("cp1252", "latin-1")

csv.field_size_limit(16 * 1024 * 1024)


_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\f")


def _binary_offset(raw: bytes, sample: int = 65536) -> int | None:
    """Offset of the first control byte when the start of ``raw`` is mostly not text.

    A stray NUL in one row is that row's problem (reported and skipped); a file whose first
    64 KiB are over 1% control bytes (UTF-16 text is ~50%, random data ~11%) is binary.
    """
    head = raw[:sample]
    controls = sum(head.count(b) for b in _CONTROL_BYTES)
    if controls <= max(8, len(head) // 100):
        return None
    return min(i for i in (head.find(bytes([b])) for b in _CONTROL_BYTES) if i >= 0)


def read_text(path: Path, warnings: list[str], encoding: str | None = None) -> str:
    """Decode a text file: the given encoding, else UTF-8 (BOM aware), else a reported fallback."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImporterError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if encoding:
        try:
            return raw.decode(encoding)
        except LookupError:
            raise ImporterError(f"unknown encoding {encoding!r}") from None
        except UnicodeDecodeError as exc:
            raise ImporterError(f"{path.name} is not valid {encoding} (byte {exc.start}): {exc.reason}") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    binary_at = _binary_offset(raw)
    if binary_at is not None:
        # UTF-16 without a BOM, or not text at all: say so, never echo the bytes.
        raise ImporterError(f"{path.name} is not a text CSV (binary data at byte {binary_at})")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    for fallback in FALLBACK_ENCODINGS:
        try:
            text = raw.decode(fallback)
        except UnicodeDecodeError:
            continue
        warnings.append(
            f"{path.name} is not valid UTF-8 (first bad byte at offset {first_bad}); decoded it as {fallback}. "
            "Pass encoding=... if that is wrong."
        )
        return text
    raise ImporterError(f"{path.name} could not be decoded")  # unreachable: latin-1 decodes anything


class CsvRows:
    """Data rows of a CSV as dicts keyed by lower-cased header names.

    Yields ``(row_number, line_number, dict)`` for good rows and ``SkippedRow`` for rows with
    the wrong number of columns or broken quoting (e.g. a last row cut off mid-field).
    Row numbers count data rows from 1; line numbers are the file's (header is line 1).
    """

    def __init__(self, text: str, name: str, required: set[str], warnings: list[str]):
        self.name = name
        self.reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(self.reader)
        except StopIteration:
            raise ImporterError(f"{name} is empty") from None
        except csv.Error as exc:
            raise ImporterError(f"{name}: the header line is not valid CSV: {exc}") from None
        self.header = [h.strip().lower() for h in header]
        missing = sorted(required - set(self.header))
        if missing:
            # Name what is missing, never what the first line holds: the error is shown to every
            # labeler, and a wrong file may be anything (a password file, a key).
            raise ImporterError(
                f"{name} lacks column(s) {', '.join(missing)} in its header line (line 1, {len(self.header)} columns)"
            )
        if text and not text.endswith(("\n", "\r")):
            warnings.append(f"{name} does not end with a line break; its last row may be cut off")
        # Rough total for progress: physical lines minus the header.
        self.total = max(text.count("\n") - (1 if text.endswith("\n") else 0), 0)

    def __iter__(self) -> Iterator[tuple[int, int, dict] | SkippedRow]:
        row = 0
        width = len(self.header)
        while True:
            start_line = self.reader.line_num + 1
            try:
                fields = next(self.reader)
            except StopIteration:
                return
            except csv.Error as exc:
                row += 1
                yield SkippedRow(row, f"not valid CSV ({exc}); cut off or broken quoting", {"line": start_line})
                continue
            if not any(f.strip() for f in fields):
                continue  # blank line
            row += 1
            if len(fields) != width:
                cut = " (cut off?)" if len(fields) < width else ""
                yield SkippedRow(row, f"has {len(fields)} columns, the header has {width}{cut}", {"line": start_line})
                continue
            yield row, start_line, dict(zip(self.header, fields, strict=False))

    def records(self, build: Callable[[int, int, dict], MovieRecord]) -> Iterator[MovieRecord | SkippedRow]:
        """Turn each well-formed row into a record with ``build(row, line, values)``; a row that
        ``build`` rejects with RowError, or that is not valid CSV, becomes a SkippedRow."""
        for item in self:
            if isinstance(item, SkippedRow):
                yield item
                continue
            row, line, values = item
            try:
                yield build(row, line, values)
            except RowError as exc:
                yield SkippedRow(row, str(exc), {"line": line})
