"""How much notation an image tokenizer keeps: the F1 of ink pixels between an image and its round trip.

Ink is every pixel darker than ``threshold`` (128 of 255). Precision is the share of the
reconstruction's ink that is ink in the original, recall the share of the original's ink that the
reconstruction keeps; F1 is their harmonic mean. Staff lines, stems and note heads are thin, so a
blurred reconstruction loses them below the threshold and scores low, which a mean squared error
on mostly white pages would hide.
"""

from __future__ import annotations

import numpy as np

INK_THRESHOLD = 128


def ink_f1(original: np.ndarray, reconstruction: np.ndarray, threshold: int = INK_THRESHOLD) -> float:
    """F1 of the ink pixels of two grayscale ``uint8 [H, W]`` images of the same shape.

    Two images without any ink agree perfectly (1.0); ink on one side only scores 0.0.
    """
    original, reconstruction = np.asarray(original), np.asarray(reconstruction)
    if original.shape != reconstruction.shape:
        raise ValueError(f"images differ in shape: {original.shape} and {reconstruction.shape}")
    ink, kept = original < threshold, reconstruction < threshold
    both = int(np.count_nonzero(ink & kept))
    total = int(np.count_nonzero(ink)) + int(np.count_nonzero(kept))
    return 1.0 if total == 0 else 2.0 * both / total
