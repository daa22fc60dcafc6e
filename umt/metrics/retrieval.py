"""Cross-modal retrieval figures: recall at k and mean reciprocal rank.

``scores [Q, N]``: query ``i``'s score for candidate ``j``; query ``i``'s right answer is candidate
``i``. A tie with the right answer counts against it (its rank is 1 + the number of other
candidates scored at least as high), so a model that scores everything alike gets chance figures,
not perfect ones.
"""

from __future__ import annotations

import numpy as np

RECALL_AT = (1, 5, 10)


def ranks(scores: np.ndarray) -> np.ndarray:
    """The right answer's rank ``int64 [Q]`` (1 = first) under the pessimistic tie rule."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] > scores.shape[1]:
        raise ValueError(f"scores must be [Q, N] with Q <= N, got {scores.shape}")
    right = np.diagonal(scores)[:, None]
    at_least = (scores >= right).sum(axis=1)  # counts the right answer itself once
    return at_least.astype(np.int64)


def retrieval_metrics(scores: np.ndarray) -> dict[str, float]:
    """``recall@1/5/10`` and ``mrr`` of a ``[Q, N]`` score matrix (see the module docstring)."""
    rank = ranks(scores)
    metrics = {f"recall@{k}": float((rank <= k).mean()) for k in RECALL_AT}
    metrics["mrr"] = float((1.0 / rank).mean())
    return metrics


def chance_metrics(candidates: int) -> dict[str, float]:
    """What a random ranking of ``candidates`` gets on average (the table's reference row)."""
    metrics = {f"recall@{k}": min(k, candidates) / candidates for k in RECALL_AT}
    metrics["mrr"] = float(np.mean(1.0 / np.arange(1, candidates + 1)))
    return metrics
