"""Image-to-audio and MIDI-to-audio scores: note onset F1 between two transcriptions, after
aligning them in time by dynamic time warping where their timing may differ (U-MusT).

A generated performance of a score need not keep the reference recording's tempo. Both are
transcribed to notes (by an AMT model, or any audio -> notes callable); :func:`dtw_onset_f1` then

1. turns each note list into frame features at :func:`frame_rate` frames/s: a 12-bin chroma of
   the sounding notes and a 12-bin chroma of the onsets (weighted x2), each frame normalised;
2. aligns the two feature sequences with ``librosa.sequence.dtw`` (cosine cost);
3. maps each estimated onset through the warping path onto the reference's time axis (the mean
   reference frame matched to its frame, interpolated between frames);
4. scores onsets with mir_eval at 50, 100 and 200 ms (:data:`TOLERANCES`), as the paper does.

:func:`onset_f1` is the same without step 1-3, for aligned pairs (MIDI-to-audio, or a reference
MIDI as the ground truth where one exists).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from umt.metrics.transcription import NoteLike, note_scores

TOLERANCES = (0.05, 0.1, 0.2)
MAX_FRAMES = 6000
"""The finer of 100 frames/s and what keeps the DTW matrix at most ``MAX_FRAMES`` per side."""


def frame_rate(duration: float) -> float:
    return min(100.0, MAX_FRAMES / max(duration, 1e-3))


def note_features(notes: Sequence[NoteLike], rate: float, frames: int) -> np.ndarray:
    """``[24, frames]``: sounding chroma and onset chroma (x2), each frame L2-normalised; a
    silent frame gets a small constant so that the cosine cost stays defined."""
    features = np.zeros((24, frames), dtype=np.float64)
    for note in notes:
        if note.is_drum:
            continue
        start = min(frames - 1, max(0, round(note.onset * rate)))
        stop = min(frames, max(start + 1, round(note.offset * rate)))
        features[note.pitch % 12, start:stop] += 1.0
        features[12 + note.pitch % 12, start] += 2.0
    features += 1e-3
    return features / np.linalg.norm(features, axis=0, keepdims=True)


def warp_onsets(reference: Sequence[NoteLike], estimate: Sequence[NoteLike]) -> list[float]:
    """The estimated notes' onsets mapped onto the reference's time axis by DTW."""
    import librosa

    duration = max([n.offset for n in (*reference, *estimate)], default=0.0) + 0.5
    rate = frame_rate(duration)
    frames_ref = int(np.ceil(max([n.offset for n in reference], default=0.0) * rate)) + 2
    frames_est = int(np.ceil(max([n.offset for n in estimate], default=0.0) * rate)) + 2
    ref_features = note_features(reference, rate, frames_ref)
    est_features = note_features(estimate, rate, frames_est)
    _, path = librosa.sequence.dtw(X=ref_features, Y=est_features, metric="cosine")
    path = path[::-1]
    ref_of_est = np.zeros(frames_est)
    counts = np.zeros(frames_est)
    np.add.at(ref_of_est, path[:, 1], path[:, 0])
    np.add.at(counts, path[:, 1], 1)
    ref_of_est /= np.maximum(counts, 1)
    grid = np.arange(frames_est)
    return [float(np.interp(n.onset * rate, grid, ref_of_est)) / rate for n in estimate]


def onset_f1(reference: Sequence[NoteLike], estimate: Sequence[NoteLike]) -> dict[str, float]:
    """Note onset F1 (pitched notes, mir_eval) at each of :data:`TOLERANCES`, for aligned notes."""
    pitched_ref = [n for n in reference if not n.is_drum]
    pitched_est = [n for n in estimate if not n.is_drum]
    return {
        f"onset_f1_{round(tolerance * 1000)}ms": note_scores(
            pitched_ref, pitched_est, onset_tolerance=tolerance, offset_ratio=None
        ).f1
        for tolerance in TOLERANCES
    }


def dtw_onset_f1(reference: Sequence[NoteLike], estimate: Sequence[NoteLike]) -> dict[str, float]:
    """:func:`onset_f1` after warping the estimate onto the reference (see the module docstring)."""
    from dataclasses import replace

    pitched_ref = [n for n in reference if not n.is_drum]
    pitched_est = [n for n in estimate if not n.is_drum]
    if not pitched_ref or not pitched_est:
        return {f"onset_f1_{round(t * 1000)}ms": 0.0 for t in TOLERANCES}
    onsets = warp_onsets(pitched_ref, pitched_est)
    warped = [
        replace(n, onset=t, offset=t + max(n.offset - n.onset, 1e-3)) for n, t in zip(pitched_est, onsets)
    ]
    return onset_f1(pitched_ref, warped)
