"""What a model sees of an example: the text its encoder reads and which inputs it has.

No torch here. A config's ``text_fields`` say which of an example's title, year and
overview make up the text input ("overview" alone is the historical default). Which
inputs an example has decides the per-input-set calibration and thresholds of a model
that fuses text and poster (``INPUT_SETS``): "all" (every input it uses), "text" (no
poster) or "image" (no text). A one-modality model has only "all".
"""

from __future__ import annotations

import dataclasses

from .contracts import Example

TEXT_FIELDS = ("title", "year", "overview")
OVERVIEW_ONLY = ("overview",)  # the historical default text input
# Which inputs an example has; a model keeps calibration and thresholds for each.
ALL, TEXT_ONLY, IMAGE_ONLY = "all", "text", "image"
INPUT_SETS = (ALL, TEXT_ONLY, IMAGE_ONLY)


def compose_text(example: Example, fields: tuple[str, ...] = ("overview",)) -> str:
    """The text input: e.g. ``"Spectre (2015). A cryptic message ..."`` for title, year, overview.

    Empty when none of the named fields has content (the example then has no text input).
    """
    if tuple(fields) == ("overview",):
        return example.text or ""
    title = (example.title or "").strip() if "title" in fields else ""
    year = str(example.year) if "year" in fields and example.year else ""
    overview = (example.text or "").strip() if "overview" in fields else ""
    head = f"{title} ({year})" if title and year else (title or year)
    if head and overview:
        return f"{head}. {overview}"
    return head or overview


def with_composed_text(examples: list[Example], fields: tuple[str, ...]) -> list[Example]:
    """The examples with ``text`` replaced by the composed text input (same objects when unchanged)."""
    if tuple(fields) == ("overview",):
        return examples
    return [dataclasses.replace(ex, text=compose_text(ex, fields)) for ex in examples]


def input_sets(has_text, has_image, fused: bool) -> list[str]:
    """Each example's input set from its [n] has_text / has_image flags."""
    if not fused:
        return [ALL] * len(has_text)
    return [
        TEXT_ONLY if t and not i else IMAGE_ONLY if i and not t else ALL
        for t, i in zip(has_text, has_image, strict=True)
    ]


def without(examples: list[Example], modality: str) -> list[Example]:
    """Copies of ``examples`` with one input removed: "image" (no poster) or "text" (no
    overview, title or year): how the benchmark's missing-modality rows are made."""
    if modality == "image":
        return [dataclasses.replace(ex, image=None) for ex in examples]
    if modality == "text":
        return [dataclasses.replace(ex, text="", title="", year=None) for ex in examples]
    raise ValueError(f"modality must be 'text' or 'image', got {modality!r}")
