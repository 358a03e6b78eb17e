"""Where importers find poster bytes: a local folder (indexed once) or a URL base."""

from __future__ import annotations

import os
from pathlib import Path

from ..models import Poster
from .records import ImporterError, PosterRef

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


class PosterFolder:
    """Regular files of one folder, looked up by exact name or by stem (e.g. a TMDB id).

    Lookups only ever match names listed in the folder, so a CSV value such as
    ``../../etc/passwd`` can never reach outside it.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ImporterError(f"poster folder {self.path} does not exist or is not a folder")
        self.by_name: dict[str, str] = {}
        self.by_stem: dict[str, str] = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                if not entry.is_file():
                    continue
                self.by_name[entry.name] = entry.name
                stem, suffix = os.path.splitext(entry.name)
                if suffix.lower() in IMAGE_SUFFIXES:
                    # First one wins; a sorted scan would cost more than it is worth here.
                    self.by_stem.setdefault(stem.lower(), entry.name)

    def __len__(self) -> int:
        return len(self.by_name)

    def by_file_name(self, name: str) -> PosterRef:
        name = (name or "").strip()
        if not name:
            return PosterRef(missing_reason="no poster file named in the row")
        found = self.by_name.get(name) or self.by_name.get(os.path.basename(name))
        if found is None:
            return PosterRef(filename=name, missing_reason=f"poster file {name!r} not found in {self.path}")
        return self.read(found)

    def by_stems(self, *stems: object) -> PosterRef:
        tried = [str(s) for s in stems if s]
        for stem in tried:
            found = self.by_stem.get(stem.lower())
            if found is not None:
                return self.read(found)
        return PosterRef(missing_reason=f"no poster named {' or '.join(tried) or '(no id)'}.* in {self.path}")

    def read(self, name: str) -> PosterRef:
        path = self.path / name
        try:
            return PosterRef(filename=name, data=path.read_bytes())
        except OSError as exc:
            return PosterRef(filename=name, missing_reason=f"cannot read poster {name}: {exc.strerror or exc}")


def stored_from_url(url: str, *, tmdb_id: int) -> bool:
    """Whether this movie's stored poster came from ``url`` (so a re-run need not download it).

    Image CDNs such as TMDB's name files by content, so the same URL means the same bytes.
    """
    return Poster.objects.filter(movie__tmdb_id=tmdb_id, source_url=url).exclude(original="").exists()
