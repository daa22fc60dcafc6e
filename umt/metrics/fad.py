"""Fréchet audio distance (FAD): the Fréchet distance between Gaussians fitted to two sets of
audio embeddings (Kilgour et al., 2019).

``FD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, with ``scipy.linalg.sqrtm``.

The embedding is pluggable (any ``audio [N], sample_rate -> frames [T, D]``). The default,
:func:`log_mel_frames`, is computed offline by this project: 64-band log-mel frames of the audio
at 16 kHz (25 ms windows, 10 ms hop). It is **not** the paper's embedding (VGGish or CLAP), so its
figures are comparable between runs of this project, not with the paper's. CLAP (laion-clap)
needs its weights from the user; VGGish-style models are left out (they want torchaudio).

Reference statistics are cached per test set (:func:`cached_statistics`): an ``.npz`` of the mean
and covariance, keyed by the reference files and the embedding's name.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

Embedding = Callable[[np.ndarray, int], np.ndarray]
LOG_MEL_RATE = 16000
"""The sample rate :func:`log_mel_frames` works at."""


def frechet_distance(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray) -> float:
    """The Fréchet distance between ``N(mu_a, sigma_a)`` and ``N(mu_b, sigma_b)``."""
    from scipy import linalg

    diff = np.asarray(mu_a, np.float64) - np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.atleast_2d(sigma_a).astype(np.float64), np.atleast_2d(sigma_b).astype(np.float64)
    with warnings.catch_warnings():  # a singular product (few samples) is expected and handled
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(sigma_a @ sigma_b)
        if not np.isfinite(root).all():  # singular product: nudge both, as the FID/FAD references do
            offset = np.eye(sigma_a.shape[0]) * 1e-6
            root = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    root = np.real(root)
    return float(max(0.0, diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(root)))


def statistics(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` of all embedding frames of a set (each ``[T_i, D]``;
    FID's image features are one such array)."""
    stacked = np.concatenate([np.atleast_2d(f) for f in frames], axis=0).astype(np.float64)
    if stacked.shape[0] < 2:
        raise ValueError("a Fréchet distance needs at least two embedding frames")
    return stacked.mean(axis=0), np.cov(stacked, rowvar=False)


def frame_sums(frames: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(count, sum, sum of outer products)`` of embedding frames ``[T, D]``: what
    :func:`statistics_from_sums` needs, kept per item so that a set's statistics add up."""
    frames = np.atleast_2d(frames).astype(np.float64)
    return len(frames), frames.sum(axis=0), frames.T @ frames


def statistics_from_sums(sums: Iterable[tuple[int, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The mean and (unbiased) covariance of all frames behind ``sums`` (same as :func:`statistics`)."""
    count, total, outer = 0, 0.0, 0.0
    for n, s, o in sums:
        count, total, outer = count + n, total + s, outer + o
    if count < 2:
        raise ValueError("FAD needs at least two embedding frames")
    mean = np.asarray(total) / count
    return mean, (np.asarray(outer) - count * np.outer(mean, mean)) / (count - 1)


def log_mel_frames(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The default embedding: 64-band log-mel frames ``[T, 64]`` at 16 kHz (see the module)."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate != LOG_MEL_RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=LOG_MEL_RATE)
    mel = librosa.feature.melspectrogram(y=audio, sr=LOG_MEL_RATE, n_fft=400, hop_length=160, n_mels=64)
    return np.log(mel + 1e-6).T


def fad(
    generated: Sequence[tuple[np.ndarray, int]],
    reference: Sequence[tuple[np.ndarray, int]] | tuple[np.ndarray, np.ndarray],
    embedding: Embedding = log_mel_frames,
) -> float:
    """FAD of generated audio ``[(samples, rate), ...]`` against reference audio, or against
    reference statistics ``(mu, sigma)``."""
    mu_g, sigma_g = statistics(embedding(audio, rate) for audio, rate in generated)
    if isinstance(reference, tuple) and len(reference) == 2 and isinstance(reference[0], np.ndarray):
        mu_r, sigma_r = reference
    else:
        mu_r, sigma_r = statistics(embedding(audio, rate) for audio, rate in reference)
    return frechet_distance(mu_g, sigma_g, mu_r, sigma_r)


def cached_statistics(
    cache_dir: Path,
    files: Sequence[Path],
    load: Callable[[Path], tuple[np.ndarray, int]],
    embedding: Embedding = log_mel_frames,
    name: str = "log-mel",
) -> tuple[np.ndarray, np.ndarray]:
    """Reference statistics of ``files`` under ``embedding`` (called ``name``), computed once and
    kept in ``cache_dir`` (keyed by the files' paths, sizes and times, and the name)."""
    from umt.utils.io import atomic_path

    key = json.dumps([name, *[(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]])
    path = Path(cache_dir) / f"fad-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return data["mu"], data["sigma"]
    mu, sigma = statistics(embedding(*load(f)) for f in files)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, mu=mu, sigma=sigma)
    return mu, sigma
