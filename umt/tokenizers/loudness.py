"""Integrated loudness (ITU-R BS.1770-4, LUFS) and loudness normalisation of mono audio.

descript-audio-codec's ``DAC.compress`` normalises what it encodes to -16 LUFS (then scales any
peak above 1 down to 1), so the tokens U-MusT trained on are codes of normalised audio. An audio
tokenizer with ``loudness_db`` set does the same before encoding, so that a model imported from
U-MusT reads codes like the ones it was trained on.

The meter follows BS.1770-4 as descript-audiotools measures it: K-weighting (a high shelf, +4 dB
above 1.5 kHz, and a 38 Hz high pass, as pyloudnorm designs them for the sample rate), mean
squares of 400 ms blocks every 100 ms (the last block zero-padded), an absolute gate at -70 LUFS
and a relative gate 10 LU below the absolutely gated level; audio shorter than 0.5 s is measured
zero-padded to 0.5 s, and the result is at least -70.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK_SECONDS = 0.4
STEP = 0.25
"""Blocks overlap by 75 %."""
ABSOLUTE_GATE = -70.0
MIN_LOUDNESS = -70.0


def _biquad(kind: str, gain_db: float, q: float, centre: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(b, a) of one K-weighting stage (RBJ cookbook forms, normalised by a0)."""
    a_gain = 10 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * centre / rate
    alpha = math.sin(w0) / (2.0 * q)
    cos = math.cos(w0)
    if kind == "high_shelf":
        root = 2 * math.sqrt(a_gain) * alpha
        b = [
            a_gain * ((a_gain + 1) + (a_gain - 1) * cos + root),
            -2 * a_gain * ((a_gain - 1) + (a_gain + 1) * cos),
            a_gain * ((a_gain + 1) + (a_gain - 1) * cos - root),
        ]
        a = [(a_gain + 1) - (a_gain - 1) * cos + root, 2 * ((a_gain - 1) - (a_gain + 1) * cos),
             (a_gain + 1) - (a_gain - 1) * cos - root]  # fmt: skip
    else:  # high pass
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    return np.array(b) / a[0], np.array(a) / a[0]


def k_weighted(signal: np.ndarray, rate: int) -> np.ndarray:
    """``signal [T]`` through the two K-weighting stages."""
    from scipy.signal import lfilter

    out = np.asarray(signal, dtype=np.float64)
    for stage in (("high_shelf", 4.0, 1 / math.sqrt(2), 1500.0), ("high_pass", 0.0, 0.5, 38.0)):
        b, a = _biquad(*stage, rate)
        out = lfilter(b, a, out)
    return out


def integrated_loudness(signal: np.ndarray, rate: int) -> float:
    """Integrated loudness of mono ``signal [T]`` in LUFS (at least :data:`MIN_LOUDNESS`)."""
    signal = np.asarray(signal, dtype=np.float64)
    if len(signal) < 0.5 * rate:
        signal = np.pad(signal, (0, int((0.5 - len(signal) / rate) * rate)))
    weighted = k_weighted(signal, rate)
    size, stride = int(BLOCK_SECONDS * rate), int(BLOCK_SECONDS * rate * STEP)
    count = 1 + max(0, math.ceil((len(weighted) - size) / stride))
    padded = np.pad(weighted, (0, max(0, (count - 1) * stride + size - len(weighted))))
    squares = np.cumsum(np.concatenate([[0.0], padded**2]))
    starts = np.arange(count) * stride
    blocks = (squares[starts + size] - squares[starts]) / size  # mean squares [count]
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(blocks)
    above = levels > ABSOLUTE_GATE
    if not above.any():
        return MIN_LOUDNESS
    relative_gate = -0.691 + 10 * math.log10(blocks[above].mean()) - 10.0
    kept = above & (levels > relative_gate)
    loudness = -0.691 + 10 * math.log10(blocks[kept].mean()) if kept.any() else MIN_LOUDNESS
    return max(loudness, MIN_LOUDNESS)


def normalise_loudness(signal: np.ndarray, rate: int, target_db: float) -> np.ndarray:
    """``signal [T]`` scaled to ``target_db`` LUFS, then down to a peak of 1 if it goes over."""
    gain = 10 ** ((target_db - integrated_loudness(signal, rate)) / 20.0)
    out = np.asarray(signal, dtype=np.float64) * gain
    peak = float(np.abs(out).max()) if out.size else 0.0
    if peak > 1.0:
        out = out / peak
    return out.astype(np.float32)
