"""The style probe: which visual features of sheet music carry its style (composer, period).

A linear probe (multinomial logistic regression on standardised features, full-batch L-BFGS with
a small L2 penalty) is fitted on frozen features of the training pages' patches and scored on the
held-out pages' (a page's patches stay together), for three kinds of features of the same patches:

* ``autoencoder``: the sheet-music autoencoder's pooled bottleneck (:mod:`umt.style.autoencoder`);
* ``rqvae``: the image tokenizer's continuous latents, pooled (what the translator's codes come from);
* ``pixels``: the patch itself, downsampled to 16 x 16;

beside the majority class's share of the held-out patches (what a probe that learnt nothing gets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

PIXEL_SIDE = 16


@dataclass
class ProbeResult:
    name: str
    accuracy: float
    dimensions: int


def held_out_groups(groups: Sequence[str], share: float, seed: int) -> set[str]:
    """A seeded draw of ``share`` of the distinct groups (pieces, pages; at least one): their
    patches are held out together, so no group is on both sides of a split."""
    distinct = sorted(set(groups))
    rng = np.random.default_rng(seed)
    return set(rng.choice(distinct, size=max(1, round(share * len(distinct))), replace=False).tolist())


def linear_probe(
    train: np.ndarray,
    train_y: np.ndarray,
    test: np.ndarray,
    test_y: np.ndarray,
    classes: int,
    l2: float = 1e-3,
) -> float:
    """Held-out accuracy of a logistic regression on standardised features."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    x = torch.from_numpy((train - mean) / std).float()
    y = torch.from_numpy(train_y).long()
    torch.manual_seed(0)
    layer = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.LBFGS(layer.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(x), y) + l2 * layer.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = layer(torch.from_numpy((test - mean) / std).float()).argmax(-1).numpy()
    return float((predicted == test_y).mean())


def pixel_features(patches: Sequence[np.ndarray]) -> np.ndarray:
    """Each patch downsampled to 16 x 16 (box filter), flattened ``[N, 256]``."""
    return np.stack(
        [
            np.asarray(Image.fromarray(p).resize((PIXEL_SIDE, PIXEL_SIDE), Image.BOX), np.float64).ravel()
            for p in patches
        ]
    )


def rqvae_features(tokenizer, patches: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """The image tokenizer's continuous latents of each patch (in its [-1, 1] range), pooled ``[N, D]``."""
    out = []
    with torch.no_grad():
        for start in range(0, len(patches), batch_size):
            batch = (
                torch.from_numpy(np.stack(patches[start : start + batch_size])).float()[:, None] / 127.5 - 1
            )
            out.append(tokenizer.model.encode(batch).mean(dim=(1, 2)).double().numpy())
    return np.concatenate(out)


def style_probe(
    patches: np.ndarray,
    pages: Sequence[str],
    labels: Sequence[str | None],
    features: dict[str, Callable[[Sequence[np.ndarray]], np.ndarray]],
    held_out: float = 0.2,
    seed: int = 0,
) -> tuple[list[ProbeResult], dict]:
    """Probe each kind of features; the patches without a label are left out. Returns the results
    and the split (pages, patches and classes on each side)."""
    keep = [i for i, label in enumerate(labels) if label]
    classes = sorted({labels[i] for i in keep})
    if len(classes) < 2:
        raise ValueError("a style probe needs patches of at least two labels")
    held = held_out_groups([pages[i] for i in keep], held_out, seed)
    test = np.array([pages[i] in held for i in keep])
    y = np.array([classes.index(labels[i]) for i in keep])
    chosen = [patches[i] for i in keep]
    results = []
    majority = np.bincount(y[~test], minlength=len(classes)).argmax()
    results.append(ProbeResult("majority class", float((y[test] == majority).mean()), 0))
    for name, extract in features.items():
        values = np.asarray(extract(chosen), dtype=np.float64)
        accuracy = linear_probe(values[~test], y[~test], values[test], y[test], len(classes))
        results.append(ProbeResult(name, accuracy, values.shape[1]))
    split = {"classes": classes, "train_patches": int((~test).sum()), "test_patches": int(test.sum()),
             "test_pages": len(held)}  # fmt: skip
    return results, split
