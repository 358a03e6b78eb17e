"""Row -> record validation helpers shared by sources: text, years, ids, numbers, genres.

They raise ``RowError`` with a reason fit for the import summary; the row is then skipped
and reported, and the rest of the file imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .records import GenreRef, MovieRecord, RowError

IMDB_ID_RE = re.compile(r"^tt\d{5,10}$")


def clean_text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def parse_year(value: Any) -> int | None:
    text = clean_text(value)
    if not text:
        return None
    try:
        year = int(float(text)) if re.fullmatch(r"\d{4}(\.0+)?", text) else int(text)
    except ValueError:
        raise RowError(f"year {text!r} is not a number") from None
    if not 1870 <= year <= 2100:
        raise RowError(f"year {year} is out of range 1870-2100")
    return year


def parse_imdb_id(value: Any) -> str | None:
    text = clean_text(value).lower()
    if not text or text in {"nan", "none", "null", "0"}:
        return None
    if text.isdigit():
        text = f"tt{int(text):07d}"
    if not IMDB_ID_RE.match(text):
        raise RowError(f"IMDb id {value!r} is not of the form tt1234567")
    return text


def parse_float(value: Any, name: str) -> float | None:
    text = clean_text(value)
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise RowError(f"{name} {text!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise RowError(f"{name} {text!r} is not a finite number")
    return number


def parse_positive_int(value: Any, name: str) -> int:
    text = clean_text(value)
    if not text.isdigit() or int(text) <= 0:
        raise RowError(f"{name} {text!r} is not a positive whole number")
    return int(text)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (PostgreSQL refuses NUL, UTF-8 has no lone
    surrogates), or None. Names the character and its position, never echoes the value."""
    for position, ch in enumerate(value, start=1):
        if ch == "\x00":
            return (
                f"contains a NUL character (U+0000) at position {position}; "
                "the file may be damaged or in another encoding (UTF-16?)"
            )
        if "\ud800" <= ch <= "\udfff":
            return f"contains an invalid character (lone surrogate U+{ord(ch):04X}) at position {position}"
    return None


def storable(text: str) -> str:
    """``text`` with unstorable characters written as escapes (for reports, never for data)."""
    if text_problem(text) is None:
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def require_storable(value: Any, name: str) -> None:
    """RowError when ``value`` is text that cannot be stored (see ``text_problem``)."""
    if isinstance(value, str) and (problem := text_problem(value)):
        raise RowError(f"{name} {problem}")


RECORD_TEXT_FIELDS = ("source_id", "imdb_id", "title", "original_title", "overview", "original_language")


def record_problem(rec: MovieRecord) -> str | None:
    """The first field of ``rec`` that cannot be stored, as a readable reason; or None.

    Policy: such a row is skipped and reported, not stripped. A NUL or a lone surrogate in an
    export means the file is damaged or was decoded wrongly; a stripped id could silently
    merge two movies, and a stripped text would hide the damage the person should fix at the
    source. The rest of the file imports.
    """
    fields = [(name, getattr(rec, name)) for name in RECORD_TEXT_FIELDS]
    fields += [("genre", ref.name) for ref in rec.genres or []]
    if rec.poster is not None:
        fields += [
            ("poster file name", rec.poster.filename),
            ("poster URL", rec.poster.source_url),
            ("poster note", rec.poster.missing_reason),
        ]
    for name, value in fields:
        if isinstance(value, str) and (problem := text_problem(value)):
            return f"{name} {problem}"
    return None


def genre_refs(names: Iterable[str]) -> list[GenreRef]:
    seen: set[str] = set()
    refs = []
    for name in names:
        name = clean_text(name)
        if name and name.lower() not in seen:
            seen.add(name.lower())
            refs.append(GenreRef(name))
    return refs
