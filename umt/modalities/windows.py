"""Time-exact windows: how audio and MIDI (the modalities with a time axis) are cut.

A recording and its notes are cut into the same wall-clock windows of ``window_seconds`` (one
config value, ``data.window_seconds``, written into the shards and the exported model so that
baking, training and inference use the same length). Window ``i`` covers seconds
``[i W, (i + 1) W)``: the audio is the exact sample slice, the MIDI is the MT3/YourMT3 segment
(notes sounding at the window start in its tie section, onsets re-timed to the window, no EOS
inside). Each window is an item of its own, keyed ``"{key}@{i}"``, so an audio window and the
MIDI window of the same recording pair by key, and no example ever holds a second window's EOS.

Pairs without a shared time axis (an image or LMX with audio) are never cut: a time-axis file that
spans more than one window does not pair with a whole image (see
:class:`umt.data.pipeline.PairedDataset`).
"""

from __future__ import annotations

import math

from umt.modalities import MODALITY_SPECS

WINDOW_SECONDS = 20.0
"""The paper's window (20 s segments); the default of ``data.window_seconds``."""

WINDOW_MARK = "@"


def window_key(key: str, index: int) -> str:
    """The shard key of window ``index`` of input ``key``."""
    return f"{key}{WINDOW_MARK}{index}"


def split_window_key(key: str) -> tuple[str, int | None]:
    """``"piece@3"`` -> ``("piece", 3)``; a key without a window number -> ``(key, None)``."""
    base, mark, index = key.rpartition(WINDOW_MARK)
    if mark and index.isdigit():
        return base, int(index)
    return key, None


def has_time_axis(modality: str) -> bool:
    """Whether ``modality``'s rows run along time (audio, MIDI), so it is baked in windows."""
    spec = MODALITY_SPECS.get(modality)
    return spec is not None and spec.frames_per_second is not None


def check_window_seconds(seconds: float, name: str = "window_seconds") -> float:
    """``seconds`` as a float, refused (ValueError) unless a positive multiple of 10 ms (the MIDI
    tick: a window holds a whole number of them)."""
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds <= 0 or abs(seconds * 100 - round(seconds * 100)) > 1e-6:
        raise ValueError(f"{name} must be a positive multiple of 0.01 s (a multiple of 10 ms), got {seconds}")
    return seconds


def sample_windows(
    num_samples: int, sample_rate: int, seconds: float, min_samples: int = 1
) -> list[tuple[int, int]]:
    """``[start, stop)`` sample ranges of the windows of a signal: window ``i`` starts at sample
    ``round(i * seconds * sample_rate)``. A last window shorter than ``min_samples`` (e.g. one
    codec frame) is left out unless it is the only one."""
    if num_samples <= 0:
        return []
    bounds = []
    index = 0
    while True:
        start = round(index * seconds * sample_rate)
        if start >= num_samples:
            break
        stop = min(round((index + 1) * seconds * sample_rate), num_samples)
        if bounds and stop - start < min_samples:
            break
        bounds.append((start, stop))
        index += 1
    return bounds
