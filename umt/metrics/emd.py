"""Audio-to-image scores on LMX: Earth Mover's Distance between token histograms (U-MusT).

The generated image is read back by an OMR model; its LMX and the gold LMX are compared by the
distributions of their **pitch tokens** (``C0 .. B9``, ordered by diatonic height: one step = one
staff position) and of their **duration tokens** (note types ``1024th .. maxima``, ordered by
length: one step = doubling). Each is the 1-D Wasserstein distance between the two sets of
ordinal positions (``scipy.stats.wasserstein_distance``), in steps. The duration EMD is the
smallest over shifting every predicted duration by -1, 0 or +1 steps, as the paper defines it: a
score written in halved or doubled note values is not penalised for that alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from umt.tokenizers.lmx_vocabulary import NOTE_TYPE_TOKENS, PITCH_TOKENS

PITCH_INDEX = {token: index for index, token in enumerate(PITCH_TOKENS)}
DURATION_INDEX = {token: index for index, token in enumerate(NOTE_TYPE_TOKENS)}
DURATION_SHIFTS = (-1, 0, 1)


def positions(tokens: Iterable[str], index: dict[str, int]) -> np.ndarray:
    """The ordinal positions of the tokens that ``index`` knows, in order."""
    return np.array([index[token] for token in tokens if token in index], dtype=np.float64)


def _emd(predicted: np.ndarray, gold: np.ndarray) -> float | None:
    from scipy.stats import wasserstein_distance

    if predicted.size == 0 or gold.size == 0:
        return None  # undefined: the caller counts it
    return float(wasserstein_distance(predicted, gold))


def pitch_emd(predicted: Sequence[str], gold: Sequence[str]) -> float | None:
    """EMD in diatonic steps between the pitch-token histograms (None when a side has none)."""
    return _emd(positions(predicted, PITCH_INDEX), positions(gold, PITCH_INDEX))


def duration_emd(predicted: Sequence[str], gold: Sequence[str]) -> float | None:
    """EMD in doublings between the duration-token histograms, the minimum over shifting the
    prediction by -1, 0, +1 (None when a side has none)."""
    ours, theirs = positions(predicted, DURATION_INDEX), positions(gold, DURATION_INDEX)
    distances = [_emd(ours + shift, theirs) for shift in DURATION_SHIFTS]
    return None if distances[0] is None else min(d for d in distances if d is not None)


def lmx_emd(predicted: Sequence[str], gold: Sequence[str]) -> dict[str, float | None]:
    return {"pitch_emd": pitch_emd(predicted, gold), "duration_emd": duration_emd(predicted, gold)}
