"""Note-level transcription metrics, computed as mir_eval's ``transcription`` module does.

A reference note and an estimated note *match* when (mir_eval ``match_notes``, ``strict=False``):

- their pitches are equal (MIDI keys; mir_eval's 50-cent tolerance on Hz is the same thing for
  integer keys),
- their onsets differ by at most ``onset_tolerance`` (50 ms),
- and, for the onset+offset scores, their offsets differ by at most
  ``max(offset_min_tolerance, offset_ratio * reference duration)`` (50 ms, 0.2).

Distances are rounded to 4 decimals before the ``<=`` test (mir_eval's ``N_DECIMALS``), each note
matches at most one note, and the number of matches is that of a maximum bipartite matching
(Hopcroft–Karp here, as mir_eval's ``_bipartite_match``). Precision = matches / estimated notes,
recall = matches / reference notes, F1 their harmonic mean; all 0 when either side is empty.

Program-agnostic scores (``onset_*``, ``onset_offset_*``) use the pitched notes only (drums
dropped, as MT3's flat note metrics do). The multi-instrument scores (``multi_*``) use all notes and
also require equal programs for pitched notes; drums match drums by key and onset only (they have no
meaningful offset). mir_eval itself is not a dependency.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

N_DECIMALS = 4


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


def _max_matching(hits: np.ndarray) -> int:
    """Size of a maximum matching in a boolean bipartite graph ``[num_ref, num_est]``."""
    if not hits.any():
        return 0
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    matching = maximum_bipartite_matching(csr_matrix(hits.astype(np.int8)), perm_type="column")
    return int((matching >= 0).sum())


def _group_matches(
    ref: np.ndarray, est: np.ndarray, onset_tolerance, offset_ratio, offset_min_tolerance
) -> int:
    """Matches between notes already known to agree in pitch (and program): ``[n, 2]`` intervals."""
    onset_distance = np.around(np.abs(ref[:, :1] - est[None, :, 0]), decimals=N_DECIMALS)
    hits = onset_distance <= onset_tolerance
    if offset_ratio is not None:
        offset_distance = np.around(np.abs(ref[:, 1:] - est[None, :, 1]), decimals=N_DECIMALS)
        tolerance = np.maximum(offset_ratio * (ref[:, 1] - ref[:, 0]), offset_min_tolerance)
        hits &= offset_distance <= tolerance[:, None]
    return _max_matching(hits)


def count_matches(
    reference: Iterable[NoteLike],
    estimate: Iterable[NoteLike],
    *,
    onset_tolerance: float = 0.05,
    offset_ratio: float | None = 0.2,
    offset_min_tolerance: float = 0.05,
    match_program: bool = False,
) -> int:
    """Size of the maximum matching (see the module docstring); drums never use offsets."""

    def groups(notes: Iterable[NoteLike]) -> dict[tuple, list[tuple[float, float]]]:
        result: dict[tuple, list[tuple[float, float]]] = {}
        for note in notes:
            program = note.program if match_program and not note.is_drum else -1
            result.setdefault((bool(note.is_drum), program, int(note.pitch)), []).append(
                (float(note.onset), float(note.offset))
            )
        return result

    est_groups = groups(estimate)
    total = 0
    for key, ref_intervals in groups(reference).items():
        est_intervals = est_groups.get(key)
        if not est_intervals:
            continue
        ratio = None if key[0] else offset_ratio
        total += _group_matches(
            np.asarray(ref_intervals), np.asarray(est_intervals), onset_tolerance, ratio, offset_min_tolerance
        )
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
    """mir_eval ``precision_recall_f1_overlap`` (without the overlap ratio) on the given notes.

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
