"""Note-level transcription metrics: mir_eval's ``transcription`` module, on this project's notes.

A reference note and an estimated note *match* (``mir_eval.transcription.match_notes``) when
their pitches are equal, their onsets differ by at most ``onset_tolerance`` (50 ms), and, for
the onset+offset scores, their offsets differ by at most
``max(offset_min_tolerance, offset_ratio * reference duration)`` (50 ms, 0.2); each note matches
at most one, in a maximum bipartite matching. Precision = matches / estimated notes, recall =
matches / reference notes, F1 their harmonic mean; all 0 when either side is empty.

Program-agnostic scores (``onset_*``, ``onset_offset_*``) use the pitched notes only (drums
dropped, as MT3's flat note metrics do). The multi-instrument scores (``multi_*``) use all notes and
also require equal programs for pitched notes (notes are matched within each program, as MT3
scores each program's notes); drums match drums by key and onset only (they have no meaningful
offset).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

MIN_DURATION = 1e-3
"""mir_eval refuses zero-length intervals; a note shorter than this (a drum hit, a grace note)
is scored as this long (its offset never counts for drums, and is within tolerance otherwise)."""


class NoteLike(Protocol):
    pitch: int
    program: int
    is_drum: bool
    onset: float
    offset: float


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    num_reference: int
    num_estimated: int
    num_matched: int


def _arrays(notes: Sequence[NoteLike]) -> tuple[np.ndarray, np.ndarray]:
    """mir_eval's inputs: intervals ``[n, 2]`` in seconds and pitches in Hz."""
    if not notes:
        return np.zeros((0, 2)), np.zeros(0)
    onsets = np.array([float(note.onset) for note in notes])
    offsets = np.maximum(np.array([float(note.offset) for note in notes]), onsets + MIN_DURATION)
    pitches = 440.0 * 2.0 ** ((np.array([int(note.pitch) for note in notes], dtype=np.float64) - 69) / 12)
    return np.stack([onsets, offsets], axis=1), pitches


def _group_matches(
    ref: Sequence[NoteLike], est: Sequence[NoteLike], onset_tolerance, offset_ratio, offset_min_tolerance
) -> int:
    import mir_eval

    (ref_intervals, ref_pitches), (est_intervals, est_pitches) = _arrays(ref), _arrays(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns about empty sides, which score 0 here
        matched = mir_eval.transcription.match_notes(
            ref_intervals,
            ref_pitches,
            est_intervals,
            est_pitches,
            onset_tolerance=onset_tolerance,
            offset_ratio=offset_ratio,
            offset_min_tolerance=offset_min_tolerance,
        )
    return len(matched)


def count_matches(
    reference: Iterable[NoteLike],
    estimate: Iterable[NoteLike],
    *,
    onset_tolerance: float = 0.05,
    offset_ratio: float | None = 0.2,
    offset_min_tolerance: float = 0.05,
    match_program: bool = False,
) -> int:
    """Size of mir_eval's maximum matching (see the module docstring), drums and pitched notes
    apart (drums never use offsets), and within each program when ``match_program``."""

    def groups(notes: Iterable[NoteLike]) -> dict[tuple[bool, int], list[NoteLike]]:
        result: dict[tuple[bool, int], list[NoteLike]] = {}
        for note in notes:
            program = note.program if match_program and not note.is_drum else -1
            result.setdefault((bool(note.is_drum), program), []).append(note)
        return result

    est_groups = groups(estimate)
    total = 0
    for key, ref_notes in groups(reference).items():
        est_notes = est_groups.get(key)
        if not est_notes:
            continue
        ratio = None if key[0] else offset_ratio
        total += _group_matches(ref_notes, est_notes, onset_tolerance, ratio, offset_min_tolerance)
    return total


def scores(num_reference: int, num_estimated: int, num_matched: int) -> Scores:
    if num_reference == 0 or num_estimated == 0:
        return Scores(0.0, 0.0, 0.0, num_reference, num_estimated, num_matched)
    precision = num_matched / num_estimated
    recall = num_matched / num_reference
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return Scores(precision, recall, f1, num_reference, num_estimated, num_matched)


def note_scores(
    reference: Sequence[NoteLike],
    estimate: Sequence[NoteLike],
    *,
    onset_tolerance: float = 0.05,
    offset_ratio: float | None = 0.2,
    offset_min_tolerance: float = 0.05,
    match_program: bool = False,
) -> Scores:
    """mir_eval's ``precision_recall_f1_overlap`` (without the overlap ratio) on the given notes.

    ``offset_ratio=None`` scores onsets only. Pass the notes to score (see
    :func:`transcription_metrics` for which notes each standard score uses).
    """
    matched = count_matches(
        reference,
        estimate,
        onset_tolerance=onset_tolerance,
        offset_ratio=offset_ratio,
        offset_min_tolerance=offset_min_tolerance,
        match_program=match_program,
    )
    return scores(len(reference), len(estimate), matched)


def transcription_metrics(reference: Sequence[NoteLike], estimate: Sequence[NoteLike]) -> dict[str, float]:
    """The standard scores: ``{onset,onset_offset,multi_onset,multi_onset_offset}_{precision,recall,f1}``.

    ``onset*`` / ``onset_offset*``: pitched notes, program ignored. ``multi_*``: all notes, program
    must match (drums: key and onset only).
    """
    pitched_ref = [n for n in reference if not n.is_drum]
    pitched_est = [n for n in estimate if not n.is_drum]
    result: dict[str, float] = {}
    for name, ref, est, ratio, program in [
        ("onset", pitched_ref, pitched_est, None, False),
        ("onset_offset", pitched_ref, pitched_est, 0.2, False),
        ("multi_onset", reference, estimate, None, True),
        ("multi_onset_offset", reference, estimate, 0.2, True),
    ]:
        score = note_scores(ref, est, offset_ratio=ratio, match_program=program)
        result[f"{name}_precision"] = score.precision
        result[f"{name}_recall"] = score.recall
        result[f"{name}_f1"] = score.f1
    return result


FAMILIES = (
    "piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth_lead", "synth_pad", "synth_effects", "ethnic", "percussive", "sound_effects",
)  # fmt: skip
"""General MIDI's instrument families, 8 programs each (MT3's per-instrument groups)."""


def family(note: NoteLike) -> str:
    return "drums" if note.is_drum else FAMILIES[min(max(int(note.program), 0), 127) // 8]


def family_onset_f1(reference: Sequence[NoteLike], estimate: Sequence[NoteLike]) -> dict[str, float]:
    """Onset F1 within each instrument family the reference has (:data:`FAMILIES`, ``drums``):
    the notes of that family on both sides, as MT3 scores each instrument."""
    result = {}
    for name in sorted({family(note) for note in reference}):
        ref = [note for note in reference if family(note) == name]
        est = [note for note in estimate if family(note) == name]
        result[name] = note_scores(ref, est, offset_ratio=None).f1
    return result
