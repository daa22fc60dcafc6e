"""Fréchet inception distance (FID, Heusel et al., 2017) between a folder of real and a folder of
generated page images, and MusicScore's FID-n.

``FID = |mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` over image features, with
``scipy.linalg.sqrtm`` as pytorch-fid computes it (:func:`umt.metrics.fad.frechet_distance`, the
same Fréchet distance as FAD's). **FID-n** follows the MusicScore paper: ``n`` images drawn at
random from each set per evaluation (seeded), repeated, reported as the mean and standard
deviation over the repeats; ``n`` of 8 to 64 leaves the covariances singular, which the distance
handles as pytorch-fid does (a small offset on the diagonal).

Features are pluggable (:data:`FEATURES`, a name -> a function of the grayscale pages):
``inception`` is FID's own Inception-v3 (:mod:`umt.models.inception`, the paper's features) with
the user's weights file (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``; its outputs
equal pytorch-fid's, tested with seeded weights); ``page-classifier`` is the pooled penultimate
layer of a page classifier this project trains on score pages (:mod:`umt.musicscore.classifier`),
whose figures compare runs of this project with each other, not with the paper's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from umt.metrics.fad import frechet_distance, statistics

Features = Callable[[Sequence[np.ndarray]], np.ndarray]
"""Grayscale pages ``uint8 [H, W]`` -> features ``[N, D]``."""


def fid(real: np.ndarray, generated: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets ``[N, D]``, ``[M, D]``."""
    return frechet_distance(*statistics([real]), *statistics([generated]))


@dataclass
class FidN:
    n: int
    mean: float
    std: float
    values: list[float]


def fid_n(real: np.ndarray, generated: np.ndarray, n: int, repeats: int = 10, seed: int = 0) -> FidN:
    """MusicScore's FID-n: ``repeats`` times, FID between ``n`` features drawn without replacement
    from each set (seeded), and the mean and standard deviation of those values."""
    if n < 2 or n > min(len(real), len(generated)):
        raise ValueError(f"FID-{n} needs 2 <= n <= the smaller set ({min(len(real), len(generated))} images)")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(repeats):
        a = real[rng.choice(len(real), size=n, replace=False)]
        b = generated[rng.choice(len(generated), size=n, replace=False)]
        values.append(fid(a, b))
    return FidN(n, float(np.mean(values)), float(np.std(values)), values)


def page_classifier_features(folder: str) -> Features:
    """The ``page-classifier`` features of a classifier folder."""
    from umt.musicscore.classifier import PageClassifier

    classifier = PageClassifier.from_pretrained(folder)
    return classifier.features


def inception_features(weights_file: str) -> Features:
    """The ``inception`` features: FID's Inception-v3 (:mod:`umt.models.inception`) with the user's
    weights file (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``)."""
    from umt.models.inception import fid_features, load_fid_inception

    model = load_fid_inception(weights_file)
    return lambda pages: fid_features(model, pages).double().numpy()


FEATURES: dict[str, Callable[[str], Features]] = {
    "inception": inception_features,
    "page-classifier": page_classifier_features,
}
"""Feature extractors by name, each made from a model folder or file the user gives."""
