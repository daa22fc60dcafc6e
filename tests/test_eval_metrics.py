"""Known-answer tests of the paper's other metrics: DTW-aligned onset F1 (image-to-audio), the LMX
token EMD (audio-to-image) and the Fréchet audio distance."""

from __future__ import annotations

import numpy as np
import pytest

from umt.tokenizers.midi import Note

pytest.importorskip("librosa")


def _melody(seed: int, count: int = 60) -> list[Note]:
    """A piece: ``count`` notes (chords now and then) at irregular onsets over ~20 s."""
    rng = np.random.default_rng(seed)
    notes, t = [], 0.3
    for _ in range(count):
        for pitch in rng.choice(np.arange(48, 84), size=int(rng.integers(1, 3)), replace=False):
            notes.append(Note(int(pitch), 0, False, t, t + float(rng.uniform(0.15, 0.6))))
        t += float(rng.choice([0.2, 0.3, 0.4]))
    return notes


def _warp(notes: list[Note], curve) -> list[Note]:
    return [Note(n.pitch, n.program, n.is_drum, curve(n.onset), curve(n.offset)) for n in notes]


def test_dtw_onset_f1_undoes_a_tempo_curve():
    from umt.metrics.alignment import dtw_onset_f1, onset_f1

    reference = _melody(0)
    # slower, with a gradual rubato: a smooth increasing time map
    warped = _warp(reference, lambda t: 0.5 + 1.3 * t + 0.4 * np.sin(t / 2.5))
    assert onset_f1(reference, warped)["onset_f1_50ms"] < 0.2  # unaligned, the timing is all wrong
    scores = dtw_onset_f1(reference, warped)
    assert scores == {"onset_f1_50ms": 1.0, "onset_f1_100ms": 1.0, "onset_f1_200ms": 1.0}


def test_dtw_onset_f1_is_low_for_shuffled_notes():
    from umt.metrics.alignment import dtw_onset_f1

    reference = _melody(1)
    rng = np.random.default_rng(2)
    onsets = rng.permutation([n.onset for n in reference])
    shuffled = [Note(n.pitch, 0, False, t, t + 0.3) for n, t in zip(reference, onsets)]
    scores = dtw_onset_f1(reference, shuffled)
    assert scores["onset_f1_50ms"] < 0.3 and scores["onset_f1_200ms"] < 0.5


def test_onset_f1_tolerances():
    from umt.metrics.alignment import onset_f1

    reference = [Note(60, 0, False, 1.0, 1.5)]
    late = [Note(60, 0, False, 1.08, 1.5)]  # 80 ms late
    assert onset_f1(reference, late) == {"onset_f1_50ms": 0.0, "onset_f1_100ms": 1.0, "onset_f1_200ms": 1.0}


def test_lmx_emd_known_answers():
    from umt.metrics.emd import duration_emd, lmx_emd, pitch_emd

    gold = ["measure", "C4", "quarter", "D4", "quarter", "E4", "half"]
    assert lmx_emd(gold, gold) == {"pitch_emd": 0.0, "duration_emd": 0.0}
    # every pitch one diatonic step higher: the EMD is one step
    assert pitch_emd(["D4", "quarter", "E4", "quarter", "F4", "half"], gold) == pytest.approx(1.0)
    # one of three pitches two steps off: 2/3
    assert pitch_emd(["C4", "D4", "G4"], gold) == pytest.approx(2 / 3)
    # all durations halved: forgiven by the shift; halved twice: one step left
    assert duration_emd(["eighth", "eighth", "quarter"], gold) == 0.0
    assert duration_emd(["16th", "16th", "eighth"], gold) == pytest.approx(1.0)
    # one quarter became a whole note: unshifted 2/3 (sorted 8,9,10 against 8,8,9); shifted down
    # one step (7,8,9) only the first token is off, by one: 1/3
    assert duration_emd(["quarter", "whole", "half"], gold) == pytest.approx(1 / 3)
    assert lmx_emd(["measure"], gold) == {"pitch_emd": None, "duration_emd": None}


def test_frechet_distance_closed_forms():
    from umt.metrics.fad import frechet_distance, statistics

    rng = np.random.default_rng(0)
    frames = rng.standard_normal((5000, 4))
    mu, sigma = statistics([frames])
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    # same covariance, shifted mean: |delta mu|^2
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert frechet_distance(mu + shift, sigma, mu, sigma) == pytest.approx(float(shift @ shift))
    # diagonal covariances: sum (sqrt(a) - sqrt(b))^2 plus the mean term
    a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 9.0])
    expected = (1 - 2) ** 2 + (2 - 1) ** 2 + 0 + 3.0**2
    assert frechet_distance(np.zeros(3), a, np.array([3.0, 0, 0]), b) == pytest.approx(expected)


def test_fad_of_identical_sets_is_zero_and_grows_with_a_difference(tmp_path):
    from umt.metrics.fad import cached_statistics, fad

    rate = 16000
    t = np.arange(rate * 2) / rate
    tones = [(0.3 * np.sin(2 * np.pi * f * t).astype(np.float32), rate) for f in (220, 330, 440)]
    noise = [
        (0.3 * np.random.default_rng(k).standard_normal(t.size).astype(np.float32), rate) for k in range(3)
    ]
    assert fad(tones, tones) == pytest.approx(0.0, abs=1e-6)
    assert fad(noise, tones) > 10 * max(fad(tones[:2], tones), 1e-3)
    files = []
    for index, (audio, _) in enumerate(tones):
        path = tmp_path / f"{index}.npy"
        np.save(path, audio)
        files.append(path)
    calls = []

    def load(path):
        calls.append(path)
        return np.load(path), rate

    first = cached_statistics(tmp_path / "cache", files, load)
    again = cached_statistics(tmp_path / "cache", files, load)
    assert len(calls) == 3 and all(np.array_equal(x, y) for x, y in zip(first, again))
    assert fad(tones, first) == pytest.approx(0.0, abs=1e-6)


def test_statistics_add_up_from_per_item_sums():
    from umt.metrics.fad import frame_sums, statistics, statistics_from_sums

    rng = np.random.default_rng(1)
    parts = [rng.standard_normal((n, 3)) for n in (5, 40, 17)]
    mu, sigma = statistics(parts)
    mu2, sigma2 = statistics_from_sums(frame_sums(p) for p in parts)
    assert np.allclose(mu, mu2) and np.allclose(sigma, sigma2)
