"""Note-level transcription metrics on hand-made cases (mir_eval's rules, see the module)."""

from __future__ import annotations

import pytest

from umt.metrics.transcription import count_matches, note_scores, transcription_metrics
from umt.tokenizers.midi import Note


def n(pitch, onset, offset, program=0, is_drum=False):
    return Note(pitch, program, is_drum, onset, offset)


REF = [n(60, 0.0, 1.0), n(64, 1.0, 1.1), n(67, 2.0, 4.0)]


def test_identical_notes_score_one():
    metrics = transcription_metrics(REF, REF)
    assert all(value == 1.0 for value in metrics.values())
    assert set(metrics) == {
        f"{name}_{kind}"
        for name in ("onset", "onset_offset", "multi_onset", "multi_onset_offset")
        for kind in ("precision", "recall", "f1")
    }


def test_onset_tolerance_is_inclusive_50_ms():
    assert count_matches([n(60, 1.0, 2.0)], [n(60, 1.05, 2.0)]) == 1  # exactly 50 ms (rounded)
    assert count_matches([n(60, 1.0, 2.0)], [n(60, 0.95, 2.0)]) == 1
    assert count_matches([n(60, 1.0, 2.0)], [n(60, 1.0501, 2.0)]) == 0
    assert count_matches([n(60, 1.0, 2.0)], [n(61, 1.0, 2.0)]) == 0  # pitch must match


def test_offset_tolerance_is_max_of_50_ms_and_20_percent_of_reference_duration():
    long_ref = [n(60, 0.0, 1.0)]  # tolerance 0.2 s
    assert count_matches(long_ref, [n(60, 0.0, 1.2)]) == 1
    assert count_matches(long_ref, [n(60, 0.0, 0.8)]) == 1
    assert count_matches(long_ref, [n(60, 0.0, 1.21)]) == 0
    assert count_matches(long_ref, [n(60, 0.0, 1.21)], offset_ratio=None) == 1
    short_ref = [n(60, 0.0, 0.1)]  # 20 % = 20 ms < 50 ms
    assert count_matches(short_ref, [n(60, 0.0, 0.15)]) == 1
    assert count_matches(short_ref, [n(60, 0.0, 0.16)]) == 0
    # the tolerance follows the reference's duration, not the estimate's
    assert count_matches([n(60, 0.0, 0.1)], [n(60, 0.0, 1.0)]) == 0
    assert count_matches([n(60, 0.0, 1.0)], [n(60, 0.0, 0.81)]) == 1


def test_matching_is_a_maximum_matching_not_greedy():
    # est X fits both references; est Y fits only A. First-fit (A->X) would leave B unmatched.
    ref = [n(60, 0.0, 1.0), n(60, 0.09, 1.0)]
    est = [n(60, 0.045, 1.0), n(60, -0.02, 1.0)]
    assert count_matches(ref, est) == 2
    scores = note_scores(ref, est)
    assert (scores.precision, scores.recall, scores.f1) == (1.0, 1.0, 1.0)


def test_precision_recall_f1_values():
    est = [n(60, 0.01, 1.0), n(60, 0.02, 1.0), n(64, 1.0, 1.5), n(70, 3.0, 3.5)]
    onset = note_scores(REF, est, offset_ratio=None)
    # 60 matches once (duplicates do not both count), 64 matches on onset; 67 missed; 70 spurious
    assert (onset.num_matched, onset.precision, onset.recall) == (2, 0.5, pytest.approx(2 / 3))
    assert onset.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    with_offsets = note_scores(REF, est)
    # 64's offset is 0.4 s late against a 50 ms tolerance
    assert (with_offsets.num_matched, with_offsets.precision, with_offsets.recall) == (
        1,
        0.25,
        pytest.approx(1 / 3),
    )


def test_empty_sides_score_zero():
    for ref, est in [([], []), (REF, []), ([], REF)]:
        scores = note_scores(ref, est)
        assert (scores.precision, scores.recall, scores.f1) == (0.0, 0.0, 0.0)


def test_multi_instrument_requires_program_and_drums_ignore_offsets():
    ref = [n(60, 0.0, 1.0, program=0), n(64, 0.0, 1.0, program=40), n(36, 0.5, 0.51, is_drum=True)]
    est = [n(60, 0.0, 1.0, program=0), n(64, 0.0, 1.0, program=41), n(36, 0.52, 2.0, is_drum=True)]
    metrics = transcription_metrics(ref, est)
    # flat scores: pitched notes only, program ignored -> 2 of 2
    assert metrics["onset_f1"] == metrics["onset_offset_f1"] == 1.0
    # multi: the violin-vs-viola note fails; the drum matches despite its offset
    assert metrics["multi_onset_precision"] == metrics["multi_onset_recall"] == pytest.approx(2 / 3)
    assert metrics["multi_onset_offset_f1"] == pytest.approx(2 / 3)
    # a drum never matches a pitched note of the same key
    assert count_matches([n(36, 0.0, 0.1, is_drum=True)], [n(36, 0.0, 0.1)], match_program=True) == 0


def test_large_inputs_are_grouped_by_key():
    import random

    rng = random.Random(1)
    ref = [n(rng.randrange(40, 80), t * 0.05, t * 0.05 + rng.uniform(0.05, 2.0)) for t in range(5000)]
    est = [Note(r.pitch, r.program, r.is_drum, r.onset + rng.uniform(-0.03, 0.03), r.offset) for r in ref]
    scores = note_scores(ref, est)
    assert scores.num_matched == 5000


def test_scores_are_mir_evals_on_random_notes():
    """The same figures as calling mir_eval directly (pitches in Hz, intervals in seconds)."""
    import mir_eval
    import numpy as np

    rng = np.random.default_rng(3)
    ref = [
        n(int(p), t, t + d)
        for p, t, d in zip(rng.integers(50, 70, 300), rng.uniform(0, 30, 300), rng.uniform(0.05, 1, 300))
    ]
    est = []
    for r in ref:
        onset = abs(r.onset + rng.normal(0, 0.03))
        est.append(
            n(r.pitch + int(rng.random() < 0.1), onset, max(onset + 0.02, r.offset + rng.normal(0, 0.1)))
        )

    def arrays(notes):
        return (
            np.array([[x.onset, x.offset] for x in notes]),
            np.array([440.0 * 2 ** ((x.pitch - 69) / 12) for x in notes]),
        )

    for ratio in (None, 0.2):
        expected = mir_eval.transcription.precision_recall_f1_overlap(
            *arrays(ref), *arrays(est), offset_ratio=ratio
        )
        ours = note_scores(ref, est, offset_ratio=ratio)
        assert (ours.precision, ours.recall, ours.f1) == pytest.approx(expected[:3])


def test_family_onset_f1_scores_each_instrument_family_of_the_reference():
    from umt.metrics.transcription import family_onset_f1

    ref = [n(60, 0.0, 1.0, program=0), n(64, 0.0, 1.0, program=41), n(36, 0.5, 0.6, is_drum=True)]
    est = [n(60, 0.0, 1.0, program=3), n(64, 0.0, 1.0, program=0), n(36, 0.5, 0.6, is_drum=True)]
    # the viola note was transcribed as piano: strings 0, and piano gets a false positive
    assert family_onset_f1(ref, est) == {"drums": 1.0, "piano": pytest.approx(2 / 3), "strings": 0.0}
