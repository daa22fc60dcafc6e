"""MAESTRO v3.0.0 (Hawthorne et al., 2019): piano performances with aligned MIDI.

Published layout: ``ROOT/maestro-v3.0.0.csv`` (columns ``canonical_composer, canonical_title,
split, year, midi_filename, audio_filename, duration``; splits ``train``, ``validation``,
``test``, one per performance) and the files it names, ``ROOT/2004/....midi`` and ``.wav``.

Each performance becomes one record of :class:`~umt.data.prepare.recordings.RecordingConverter`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from umt.data.prepare.base import WorkUnit
from umt.data.prepare.recordings import RecordingConverter
from umt.errors import UserError

COLUMNS = (
    "canonical_composer",
    "canonical_title",
    "split",
    "year",
    "midi_filename",
    "audio_filename",
    "duration",
)
METADATA_FILE = "maestro-v3.0.0.csv"


def write_metadata(root: Path, rows: list[list[Any]]) -> Path:
    """``ROOT/maestro-v3.0.0.csv`` with :data:`COLUMNS` (fixtures of the tests and benchmarks)."""
    path = root / METADATA_FILE
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


class MaestroConverter(RecordingConverter):
    name = "maestro"
    description = "MAESTRO v3.0.0 piano performances (audio + MIDI), published splits"

    def metadata_file(self) -> Path:
        candidates = sorted(self.root.glob("maestro-v*.csv"))
        if not candidates:
            raise UserError("no maestro-v*.csv: not a MAESTRO folder (give the unpacked release)", self.root)
        return candidates[-1]

    def units(self) -> list[WorkUnit]:
        path = self.metadata_file()
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"lacks the columns {', '.join(missing)}", path)
            rows = list(reader)
        units = []
        for row in rows:
            stem = Path(row["audio_filename"]).stem
            units.append(
                WorkUnit(
                    key=stem,
                    split=row["split"],
                    piece=stem,
                    sources={"audio": row["audio_filename"], "midi": row["midi_filename"]},
                    extra={"composer": row["canonical_composer"], "title": row["canonical_title"]},
                )
            )
        return units
