"""The items of a test set: what ``umt eval`` reads from a manifest.

Two manifest shapes are read, both ``manifest.jsonl`` with one JSON record a line:

* a prepared data set (``umt data prepare``): each modality's file under its name (``image``,
  ``lmx``, ``audio``, ``midi``), relative to the manifest; the test set is named after the data
  set (``prepare.json`` beside the manifest: its data set and the root's folder name, such as
  ``olimpic/olimpic-1.0-scanned``);
* a built corpus (``umt corpus build``): ``png``, ``lmx``, ``mid``, ``wav``; the test set is
  ``corpus``.

Only records of the chosen split are read; a path that leaves the manifest's folder is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from umt.errors import InputError, UserError

FIELDS = {"image": ("image", "png"), "lmx": ("lmx",), "audio": ("audio", "wav"), "midi": ("midi", "mid")}
"""Modality -> the record fields that may hold its file (prepared data set first, then corpus)."""


@dataclass(frozen=True)
class EvalItem:
    """One test example: its key, test set and files (absolute; None where the record has none)."""

    key: str
    test_set: str
    image: Path | None = None
    lmx: Path | None = None
    audio: Path | None = None
    midi: Path | None = None
    tempo_qpm: float | None = None

    def file(self, modality: str) -> Path | None:
        return getattr(self, modality)


def test_set_name(manifest: Path) -> str:
    """``corpus`` for a built corpus, else ``DATASET/ROOT_FOLDER`` from ``prepare.json``."""
    stamp = manifest.parent / "prepare.json"
    if not stamp.is_file():
        return "corpus"
    try:
        found = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return manifest.parent.name
    return f"{found.get('dataset')}/{Path(str(found.get('root', ''))).name}"


def read_items(
    manifest: str | Path, split: str = "test", limit: int | None = None, needs: tuple[str, ...] = ()
) -> list[EvalItem]:
    """The manifest's items of ``split`` that have every modality of ``needs``, in manifest order."""
    manifest = Path(manifest)
    if manifest.is_dir():
        manifest = manifest / "manifest.jsonl"
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UserError(f"cannot read the manifest ({error.strerror or error})", manifest) from None
    base, name = manifest.parent.resolve(), test_set_name(manifest)
    items, splits = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"line {number} is not JSON", manifest) from None
        splits.add(record.get("split"))
        if record.get("split") != split:
            continue
        files = {m: _file(base, record, fields, manifest) for m, fields in FIELDS.items()}
        if any(files[m] is None for m in needs):
            continue
        tempo = record.get("tempo_qpm")
        items.append(EvalItem(str(record["key"]), name, **files, tempo_qpm=float(tempo) if tempo else None))
    if not items:
        have = ", ".join(sorted(str(s) for s in splits)) or "none"
        wanted = f" with {' and '.join(needs)}" if needs else ""
        raise UserError(f"no {split!r} items{wanted} (splits here: {have})", manifest)
    return items[:limit] if limit is not None else items


def _file(base: Path, record: dict, fields: tuple[str, ...], manifest: Path) -> Path | None:
    for field in fields:
        value = record.get(field)
        if isinstance(value, str) and value:
            path = (base / value).resolve()
            if not path.is_relative_to(base):
                raise InputError(
                    f"record {record.get('key')!r}: {value!r} leaves the manifest's folder", manifest
                )
            return path
    return None
