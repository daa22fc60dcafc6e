"""Bars of a score excerpt in time, and masking whole bars of MIDI event ids (SIM's masked
bar-attribute modelling).

Bar borders come from the score: :func:`measure_borders` reads the measures of a MusicXML
document's first part (``divisions``, note durations, ``backup`` and ``forward``), so a pickup bar
or a change of metre is timed as written. At ``qpm`` quarter notes per minute the borders are in
seconds from the excerpt's start, the clock the excerpt's MIDI was written on.

A masked bar's attributes are read from the ids themselves (:func:`bar_attributes`): the set of
pitches whose note-on falls in the bar, and the set of onset bins (the bar cut into
``onset_bins`` equal parts) where some note starts. :func:`mask_bars` replaces all the rows of the
chosen bars by one mask row each, so the model is not told how many events a bar held.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umt.tokenizers.midi import TICKS_PER_SECOND
from umt.vocab import Vocabulary

PITCHES = 128


def measure_borders(musicxml: bytes | str, qpm: float, name: str | Path = "<musicxml>") -> np.ndarray:
    """Seconds ``float64 [M + 1]``: the start of each of the first part's ``M`` measures, then the
    end of the last. A measure lasts as long as its longest voice (``backup`` / ``forward`` kept)."""
    from umt.utils.safe_xml import parse_musicxml

    root = parse_musicxml(musicxml.encode("utf-8") if isinstance(musicxml, str) else musicxml, name)
    part = next((child for child in root if _local(child.tag) == "part"), None)
    if part is None:
        return np.zeros(0)
    divisions = 1.0
    borders = [0.0]
    for measure in (child for child in part if _local(child.tag) == "measure"):
        position = longest = 0.0
        for element in measure:
            tag = _local(element.tag)
            if tag == "attributes":
                found = _child_text(element, "divisions")
                divisions = float(found) if found else divisions
            elif tag in ("note", "backup", "forward"):
                is_chord = tag == "note" and any(_local(c.tag) in ("chord", "grace") for c in element)
                duration = float(_child_text(element, "duration") or 0) / max(divisions, 1e-9)
                if is_chord:
                    continue
                position += -duration if tag == "backup" else duration
                longest = max(longest, position)
        borders.append(borders[-1] + longest)
    return np.asarray(borders) * 60.0 / qpm


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child_text(element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


@dataclass(frozen=True)
class MidiIds:
    """The id ranges of MIDI events that bar masking reads (from the vocabulary)."""

    shift: range
    pitch: range
    drum: range
    velocity: range
    tie: int

    @classmethod
    def of(cls, vocab: Vocabulary) -> MidiIds:
        def ids(name: str) -> range:
            block = vocab[name]
            return range(block.start, block.stop)

        return cls(
            ids("midi/shift"),
            ids("midi/pitch"),
            ids("midi/drum"),
            ids("midi/velocity"),
            vocab["midi/tie"].start,
        )


def row_ticks(ids: Sequence[int], midi: MidiIds) -> np.ndarray:
    """Each row's time in ticks ``int64 [L]``; rows of the tie section (before ``tie``) get -1."""
    times = np.full(len(ids), -1, dtype=np.int64)
    now = None
    for index, token in enumerate(ids):
        if token == midi.tie:
            now = 0
        elif now is not None and token in midi.shift:
            now = token - midi.shift.start
        if now is not None and token != midi.tie:
            times[index] = now
    return times


def bar_of_rows(ids: Sequence[int], bar_ticks: np.ndarray, midi: MidiIds) -> np.ndarray:
    """The bar each row falls in ``int64 [L]`` (-1: tie section, or outside every bar)."""
    times = row_ticks(ids, midi)
    bars = np.searchsorted(bar_ticks, times, side="right") - 1
    return np.where((times >= 0) & (bars < len(bar_ticks) - 1), bars, -1)


def bar_attributes(
    ids: Sequence[int], bar_ticks: np.ndarray, midi: MidiIds, onset_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per bar: pitches with a note-on ``bool [N, 128]`` and onset bins ``bool [N, onset_bins]``
    (``N = len(bar_ticks) - 1``; drum onsets count as onsets, not pitches)."""
    count = max(len(bar_ticks) - 1, 0)
    pitches = np.zeros((count, PITCHES), dtype=bool)
    onsets = np.zeros((count, onset_bins), dtype=bool)
    times = row_ticks(ids, midi)
    bars = bar_of_rows(ids, bar_ticks, midi)
    note_on = False
    for token, tick, bar in zip(ids, times, bars):
        if token in midi.velocity:
            note_on = token != midi.velocity.start
            continue
        is_pitch, is_drum = token in midi.pitch, token in midi.drum
        if bar < 0 or not (is_drum or (is_pitch and note_on)):
            continue
        if is_pitch:
            pitches[bar, token - midi.pitch.start] = True
        share = (tick - bar_ticks[bar]) / max(bar_ticks[bar + 1] - bar_ticks[bar], 1)
        onsets[bar, min(int(share * onset_bins), onset_bins - 1)] = True
    return pitches, onsets


def mask_bars(
    ids: Sequence[int], bar_ticks: np.ndarray, chosen: Sequence[int], midi: MidiIds, mask_id: int
) -> list[int]:
    """``ids`` with the rows of each bar in ``chosen`` replaced by one ``mask_id`` row, placed where
    the bar begins (a bar without events still gets its mask row, before the next bar's rows).
    The note-offs of notes that began in a masked bar go too, wherever they fall: an offset in a
    later bar would tell the masked pitch."""
    bars = bar_of_rows(ids, bar_ticks, midi)
    wanted = set(int(b) for b in chosen)
    out: list[int] = []
    placed: set[int] = set()
    hidden_onsets: Counter[int] = Counter()  # pitch -> masked note-ons not yet closed
    note_on = False

    def place_up_to(bar: int) -> None:
        for pending in sorted(wanted - placed):
            if pending <= bar:
                out.append(mask_id)
                placed.add(pending)

    for token, bar in zip(ids, bars):
        if token in midi.velocity:
            note_on = token != midi.velocity.start
        if bar >= 0:
            place_up_to(int(bar))
        if int(bar) in wanted:
            if token in midi.pitch and note_on:
                hidden_onsets[token] += 1
            continue
        if token in midi.pitch and not note_on and hidden_onsets[token] > 0:
            hidden_onsets[token] -= 1
            continue
        out.append(int(token))
    place_up_to(len(bar_ticks))
    return out


def seconds_to_bar_ticks(borders: np.ndarray) -> np.ndarray:
    """Bar borders in seconds -> ticks ``int64``, the clock of the MIDI ids."""
    return np.floor(np.asarray(borders, dtype=np.float64) * TICKS_PER_SECOND + 0.5).astype(np.int64)
