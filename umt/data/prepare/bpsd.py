"""BPSD, the Beethoven Piano Sonata Dataset v2 (Zeitler et al., TISMIR 2024): the first movements of
Beethoven's 32 piano sonatas in several performances, with the times of every bar.

Published layout (``Beethoven_Piano_Sonata_Dataset_v2.zip``, Zenodo record 12783403):

* ``0_RawData/score_xml_unfolded/Beethoven_PIECE.xml``: the score with every repeat written out;
  its bars are numbered in playing order;
* ``1_Audio/Beethoven_PIECE_PERFORMER.wav``: the performances the archive distributes (AS35, FG58,
  FJ62, WK64; the commercial ones are not in it);
* ``2_Annotations/ann_audio_measure/Beethoven_PIECE_PERFORMER.csv``: ``start;measure`` rows, the
  second at which each bar of the unfolded score starts, and a last row for the end.

U-MusT evaluates OMR and image<->audio on BPSD *systems*: a system's image, its LMX, and the audio of
each performance while that system is played. This converter makes those triples. One work unit is
a piece: its unfolded score is cut into systems (the score's own system breaks where it has them,
otherwise :data:`MEASURES_PER_SYSTEM` bars each), each system is engraved once with Verovio
(``image/SPLIT/PIECE/mFIRST-LAST.png``) and linearized (``lmx/...lmx``), and every performance's
audio is cut to the system's bars (``audio/SPLIT/PIECE/PERFORMER/mFIRST-LAST.flac``) with U-MusT's
margins (from 0.1 s before the first bar's start to 0.05 s before the next system's start). Each
(system, performance) is one record, keyed ``PIECE_PERFORMER/mFIRST-LAST``, with ``start_seconds``
and ``end_seconds`` in the performance.

All of BPSD is a test set in the paper, so every piece goes to ``test``; ``--splits`` with U-MusT's
``dataset_pair_paths/bpsd_test_set.json`` (or any other) assigns pieces otherwise. Pieces with no
distributed recording, and recordings without bar times, are listed in ``left_out.jsonl``.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

from umt.data.prepare.base import Converter, WorkUnit
from umt.data.prepare.recordings import SAMPLE_RATE, read_mono, write_flac
from umt.errors import InputError, UserError
from umt.utils.io import atomic_write_bytes, atomic_write_text

SCORES = "0_RawData/score_xml_unfolded"
AUDIO = "1_Audio"
MEASURES = "2_Annotations/ann_audio_measure"
MEASURES_PER_SYSTEM = 4
START_MARGIN_SECONDS = 0.1
END_MARGIN_SECONDS = 0.05
"""U-MusT's cut (``lmx_utils/lmx_slice.py``): from 0.1 s before the first bar to 0.05 s before the
bar after the system, so that the next system's first onset stays out."""


class BpsdConverter(Converter):
    name = "bpsd"
    description = "BPSD v2 systems: engraved image, LMX and each performance's audio per system"
    missing_source = "not in the BPSD folder"

    def units(self) -> list[WorkUnit]:
        scores = sorted((self.root / SCORES).glob("*.xml"))
        if not scores:
            raise UserError(
                f"no {SCORES}/*.xml: not the BPSD v2 folder (give the unpacked archive)", self.root
            )
        units, self.left_out = [], []
        for score in scores:
            piece = score.stem
            sources = {"score": f"{SCORES}/{score.name}"}
            for wav in sorted((self.root / AUDIO).glob(f"{piece}_*.wav")):
                performer = wav.stem[len(piece) + 1 :]
                if not (self.root / MEASURES / f"{wav.stem}.csv").is_file():
                    self.left_out.append({"key": wav.stem, "piece": piece, "reason": "no bar times for it"})
                    continue
                sources[f"audio:{performer}"] = f"{AUDIO}/{wav.name}"
                sources[f"measures:{performer}"] = f"{MEASURES}/{wav.stem}.csv"
            if len(sources) == 1:
                self.left_out.append({"key": piece, "piece": piece, "reason": f"no recording in {AUDIO}"})
                continue
            units.append(WorkUnit(key=piece, split="test", piece=piece, sources=sources))
        return units

    def convert(self, unit: WorkUnit) -> list[dict[str, Any]]:
        files = self.source_files(unit)
        score, numbers = _read_score(files["score"])
        systems = system_spans(score)
        performers = sorted(role.split(":", 1)[1] for role in files if role.startswith("audio:"))
        times = {p: read_bar_times(files[f"measures:{p}"]) for p in performers}
        recordings = {p: read_mono(files[f"audio:{p}"], SAMPLE_RATE) for p in performers}
        records = []
        for first, last in systems:
            name = f"m{numbers[first]:04d}-{numbers[last]:04d}"
            image, lmx = self._engrave(score, unit, first, last, name)
            for performer in performers:
                span = _seconds(times[performer], numbers, first, last, len(recordings[performer]))
                if span is None:
                    continue  # bars the performance's annotation does not time
                audio = self.output_path("audio", unit, ".flac", f"{unit.piece}/{performer}/{name}")
                samples = recordings[performer]
                write_flac(
                    self.out / audio, samples[round(span[0] * SAMPLE_RATE) : round(span[1] * SAMPLE_RATE)]
                )
                records.append(
                    {
                        "key": f"{unit.piece}_{performer}/{name}",
                        "split": unit.split,
                        "piece": unit.piece,
                        "performer": performer,
                        "measures": [numbers[first], numbers[last]],
                        "image": image.as_posix(),
                        "lmx": lmx.as_posix(),
                        "audio": audio.as_posix(),
                        "start_seconds": round(span[0], 6),
                        "end_seconds": round(span[1], 6),
                    }
                )
        if not records:
            raise InputError("no system whose bars the annotations time", files["score"])
        return records

    def _engrave(self, score: Any, unit: WorkUnit, first: int, last: int, name: str) -> tuple[Path, Path]:
        """The system's image and LMX files (written once, shared by the performances' records)."""
        from umt.data import excerpts
        from umt.data.render import png_bytes, render_musicxml
        from umt.tokenizers.lmx import linearize_string

        image = self.output_path("image", unit, ".png", f"{unit.piece}/{name}")
        lmx = self.output_path("lmx", unit, ".lmx", f"{unit.piece}/{name}")
        spec = excerpts.ExcerptSpec(first, last, first, last)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # music21 on odd notation it still exports
            musicxml = excerpts.to_musicxml(excerpts.piano_view(excerpts.slice_measures(score, spec)))
        tokens = linearize_string(musicxml, name=f"{unit.piece} {name}")
        atomic_write_text(self.out / lmx, " ".join(tokens) + "\n")
        atomic_write_bytes(self.out / image, png_bytes(render_musicxml(musicxml)))
        return image, lmx


def _read_score(path: Path) -> tuple[Any, list[int]]:
    """The unfolded score (parsed safely) and its bar numbers, one per measure, in order."""
    from umt.data.excerpts import PieceRef, load_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        score = load_score(PieceRef(path.stem, "files", str(path)))
    numbers = [int(m.number or 0) for m in score.parts[0].getElementsByClass("Measure")]
    if len(set(numbers)) != len(numbers):
        raise InputError(
            "bar numbers repeat: expected BPSD's unfolded score (bars numbered in playing order)", path
        )
    return score, numbers


def system_spans(score: Any, measures_per_system: int = MEASURES_PER_SYSTEM) -> list[tuple[int, int]]:
    """``(first, last)`` measure indices (inclusive) of each system: the score's own new-system
    marks where it has any, else runs of ``measures_per_system`` bars."""
    measures = list(score.parts[0].getElementsByClass("Measure"))
    breaks = [
        index
        for index, measure in enumerate(measures)
        if index > 0 and any(getattr(s, "isNew", False) for s in measure.getElementsByClass("SystemLayout"))
    ]
    if not breaks:
        breaks = list(range(measures_per_system, len(measures), measures_per_system))
    starts = [0, *breaks]
    ends = [*(b - 1 for b in breaks), len(measures) - 1]
    return list(zip(starts, ends))


def read_bar_times(path: Path) -> dict[int, float]:
    """Bar number -> start second, from an ``ann_audio_measure`` CSV (``start;measure`` with a
    header; commas are read too). The last row (the end of the movement) times the bar after the
    last one."""
    text = path.read_text(encoding="utf-8-sig")
    delimiter = ";" if ";" in text.splitlines()[0] else ","
    times: dict[int, float] = {}
    for row in csv.reader(io.StringIO(text), delimiter=delimiter):
        if len(row) < 2:
            continue
        try:
            seconds, bar = float(row[0]), float(row[1])
        except ValueError:
            continue  # the header
        if bar == int(bar):
            times.setdefault(int(bar), seconds)
    if len(times) < 2:
        raise InputError("holds no bar times (expected start;measure rows)", path)
    return times


def _seconds(
    times: dict[int, float], numbers: list[int], first: int, last: int, samples: int
) -> tuple[float, float] | None:
    """The system's span in the performance, or None when its bars are not all timed."""
    start, after = numbers[first], numbers[last] + 1
    if start not in times or after not in times or times[after] <= times[start]:
        return None
    length = samples / SAMPLE_RATE
    begin = max(0.0, times[start] - START_MARGIN_SECONDS)
    end = min(length, times[after] - END_MARGIN_SECONDS)
    return (begin, end) if end > begin else None
