"""IMSLP work metadata, as MusicScore keeps it with every page, and the text prompt made from it.

A work's JSON holds fields of IMSLP's "General Information" section under their IMSLP names
("Work Title", "Composer", "Key", "Instrumentation", "Piece Style", "Genre Categories", "Composer
Time Period", ...). :func:`read_metadata` reads the ones UMT uses into :data:`FIELDS`, matching
names without regard to case or punctuation; a missing field, an empty one, or one whose value is
not text (a number, a mapping: garbled) becomes ``None`` and is counted, never an error. IMSLP's
``{{flat}}`` / ``{{sharp}}`` templates become the signs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

FIELDS = ("title", "composer", "key", "instrumentation", "piece_style", "genre", "period")
IMSLP_NAMES: dict[str, tuple[str, ...]] = {
    "title": ("work title", "title"),
    "composer": ("composer",),
    "key": ("key",),
    "instrumentation": ("instrumentation",),
    "piece_style": ("piece style",),
    "genre": ("genre categories", "genre"),
    "period": ("composer time period", "time period", "period"),
}
PROMPT_FIELDS = ("composer", "instrumentation", "key", "piece_style", "genre")
"""The prompt's fields, in its fixed order (MusicScore's: "a music score, composer is ..., ...")."""
MAX_METADATA_BYTES = 1 << 20
TEMPLATES = {"{{flat}}": "♭", "{{sharp}}": "♯", "{{natural}}": "♮"}


def _name(text: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", text.lower()).split())


def _clean(value: Any) -> str | None:
    """A field's text, or None when it is empty or not text."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = "; ".join(v for v in value if v.strip())
    if not isinstance(value, str):
        return None
    for template, sign in TEMPLATES.items():
        value = value.replace(template, sign)
    value = " ".join(value.split())
    return value or None


def read_metadata(path: Path) -> tuple[dict[str, str | None], list[str]]:
    """The work's :data:`FIELDS` and what was wrong (``"no metadata file"``, ``"not JSON"``,
    ``"garbled key"`` for a field whose value is not text, ``"missing key"``)."""
    empty: dict[str, str | None] = dict.fromkeys(FIELDS)
    if not path.is_file():
        return empty, ["no metadata file"]
    if path.stat().st_size > MAX_METADATA_BYTES:
        return empty, [f"metadata larger than {MAX_METADATA_BYTES >> 20} MiB"]
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return empty, ["not JSON"]
    if not isinstance(raw, dict):
        return empty, ["not a JSON object"]
    by_name = {_name(str(key)): value for key, value in raw.items()}
    fields, problems = dict(empty), []
    for field in FIELDS:
        found = next((by_name[n] for n in IMSLP_NAMES[field] if n in by_name), None)
        fields[field] = _clean(found)
        if fields[field] is None:
            problems.append(f"{'garbled' if found not in (None, '', []) else 'missing'} {field}")
    return fields, problems


def prompt(fields: dict[str, str | None]) -> str:
    """MusicScore's text prompt: "a music score, composer is X, instrumentation is Y, key is Z,
    piece style is S, genre is G", with the fields the work has, in that order."""
    parts = [f"{name.replace('_', ' ')} is {fields[name]}" for name in PROMPT_FIELDS if fields.get(name)]
    return ", ".join(["a music score", *parts])


def work_id(fields: dict[str, str | None], score_id: str) -> str:
    """The work a score belongs to (its composer and title), or the score itself when unknown."""
    if fields.get("composer") and fields.get("title"):
        return f"{_name(fields['composer'])}/{_name(fields['title'])}"
    return score_id


CORPUS_COMPOSERS = {
    "bach": "Johann Sebastian Bach",
    "beethoven": "Ludwig van Beethoven",
    "mozart": "Wolfgang Amadeus Mozart",
    "haydn": "Joseph Haydn",
    "joplin": "Scott Joplin",
    "schumann_clara": "Clara Schumann",
    "schumann_robert": "Robert Schumann",
    "chopin": "Frédéric Chopin",
    "handel": "George Frideric Handel",
    "schubert": "Franz Schubert",
    "corelli": "Arcangelo Corelli",
}
"""music21's corpus folders -> their composers (its files rarely name them)."""


def score_fields(score: Any, piece: str) -> dict[str, str | None]:
    """The metadata :data:`FIELDS` music21 knows of a score (``piece``: its corpus id, such as
    ``bach/bwv66.6``): composer (from the corpus folder, else the file), title, key (the first
    key, else the first key signature read as major), instrumentation (the parts' instruments)."""
    from music21 import key as m21key

    fields: dict[str, str | None] = dict.fromkeys(FIELDS)
    metadata = getattr(score, "metadata", None)
    fields["composer"] = CORPUS_COMPOSERS.get(piece.split("/")[0]) or _clean(
        getattr(metadata, "composer", None)
    )
    fields["title"] = _clean(getattr(metadata, "title", None))
    flat = score.flatten()
    found = next(iter(flat.getElementsByClass(m21key.Key)), None)
    if found is None:
        signature = next(iter(flat.getElementsByClass(m21key.KeySignature)), None)
        found = signature.asKey("major") if signature is not None else None
    if found is not None:
        tonic = found.tonic.name.replace("-", "♭").replace("#", "♯")
        fields["key"] = f"{tonic} {found.mode}"
    names = []
    for part in getattr(score, "parts", []):
        instrument = part.getInstrument(returnDefault=False)
        name = getattr(instrument, "instrumentName", None)
        if not name or re.fullmatch(r"Instrument \d+", name):
            name = part.partName
        if name and name.lower() not in names:
            names.append(name.lower())
    fields["instrumentation"] = ", ".join(names) or None
    return fields
