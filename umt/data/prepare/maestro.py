"""MAESTRO v3.0.0 (Hawthorne et al., 2019): piano performances with aligned MIDI.

Published layout: ``ROOT/maestro-v3.0.0.csv`` (columns ``canonical_composer, canonical_title,
split, year, midi_filename, audio_filename, duration``; splits ``train``, ``validation``,
``test``, one per performance) and the files it names, ``ROOT/2004/....midi`` and ``.wav``.

Each performance becomes ``audio/SPLIT/STEM.flac`` (mono, 44.1 kHz, 16-bit: what the codec reads)
and ``midi/SPLIT/STEM.mid`` (the performance's MIDI file, checked to be readable),
one record with ``start_seconds`` 0 and ``end_seconds`` the recording's length. Baking cuts both
into the same time-exact windows (:mod:`umt.modalities.windows`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from umt.data.prepare.base import Converter, WorkUnit
from umt.errors import InputError, UserError
from umt.tokenizers.audio import resample
from umt.tokenizers.midi import notes_from_midi
from umt.utils.io import atomic_path, atomic_write_bytes

SAMPLE_RATE = 44100
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


class MaestroConverter(Converter):
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

    def convert(self, unit: WorkUnit) -> dict[str, Any]:
        audio_in = self.root / unit.sources["audio"]
        midi_in = self.root / unit.sources["midi"]
        for path in (audio_in, midi_in):
            if not path.is_file():
                raise InputError("named in the metadata, but no such file", path)
        notes_from_midi(midi_in)  # refuses a truncated or corrupt file (InputError)
        samples = read_mono(audio_in, SAMPLE_RATE)
        audio = Path("audio") / unit.split / f"{unit.key}.flac"
        midi = Path("midi") / unit.split / f"{unit.key}.mid"
        for relative in (audio, midi):
            (self.out / relative).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out / audio, suffix=".flac") as tmp:
            soundfile.write(str(tmp), samples, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        atomic_write_bytes(self.out / midi, midi_in.read_bytes())  # the performance's own file
        return {
            "key": unit.key,
            "split": unit.split,
            "piece": unit.piece,
            "audio": audio.as_posix(),
            "midi": midi.as_posix(),
            "start_seconds": 0.0,
            "end_seconds": round(len(samples) / SAMPLE_RATE, 6),
            **unit.extra,
        }


def read_mono(path: Path, sample_rate: int) -> np.ndarray:
    """A recording as mono float32 at ``sample_rate`` (a truncated or unreadable file raises
    InputError naming it)."""
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile's error for a corrupt file
        raise InputError(f"not a readable audio file ({error})", path) from None
    if samples.size == 0:
        raise InputError("holds no audio samples", path)
    # A matrix-vector product: numpy's mean over the channel axis is 3x slower than reading.
    mono = samples @ np.full(samples.shape[1], 1.0 / samples.shape[1], dtype=np.float32)
    return resample(mono, int(rate), sample_rate) if rate != sample_rate else mono
