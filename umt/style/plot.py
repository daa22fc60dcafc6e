"""The sheet-music autoencoder's bottleneck feature maps of a page, as one PNG (the poster's figures).

For each page, a patch of the model's size with enough ink (the first seeded draw of
:func:`umt.data.patches.sample_patches`; a smaller page is padded with white), then its ``C``
bottleneck maps, each scaled to [0, 255] on its own and enlarged to ``cell`` px, in rows of eight.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from umt.data.patches import sample_patches
from umt.style.autoencoder import AutoencoderFolder

COLUMNS = 8


def page_patch(gray: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """A ``size`` px patch of a page with ink in it (the page padded with white when smaller)."""
    height, width = gray.shape
    if height < size or width < size:
        canvas = np.full((max(height, size), max(width, size)), 255, np.uint8)
        canvas[:height, :width] = gray
        gray = canvas
    found = sample_patches(gray, size, 1, 0.97, np.random.default_rng(seed))
    x, y = (found[0][0], found[0][1]) if found else (0, 0)
    return gray[y : y + size, x : x + size]


@torch.no_grad()
def feature_sheet(folder: AutoencoderFolder, pages: list[np.ndarray], cell: int = 64) -> np.ndarray:
    """One grayscale image ``uint8``: per page, its patch and the bottleneck maps below it."""
    blocks = []
    for gray in pages:
        patch = page_patch(gray, folder.patch_size)
        code = folder.model.encode(torch.tensor(patch, dtype=torch.float32)[None, None] / 255.0)[0].numpy()
        low, high = code.min(axis=(1, 2), keepdims=True), code.max(axis=(1, 2), keepdims=True)
        maps = ((code - low) / np.maximum(high - low, 1e-9) * 255).astype(np.uint8)
        cells = [np.asarray(Image.fromarray(m).resize((cell, cell), Image.NEAREST)) for m in maps]
        cells += [np.full((cell, cell), 255, np.uint8)] * (-len(cells) % COLUMNS)
        rows = [np.concatenate(cells[i : i + COLUMNS], axis=1) for i in range(0, len(cells), COLUMNS)]
        grid = np.concatenate(rows, axis=0)
        shown = np.asarray(Image.fromarray(patch).resize((grid.shape[1], grid.shape[1]), Image.BILINEAR))
        blocks += [
            shown,
            np.full((8, grid.shape[1]), 255, np.uint8),
            grid,
            np.full((16, grid.shape[1]), 255, np.uint8),
        ]
    return np.concatenate(blocks, axis=0)
