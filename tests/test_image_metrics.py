"""Ink F1: how much notation an image tokenizer's round trip keeps (known answers by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from umt.metrics.image import ink_f1


def page(rows: list[str]) -> np.ndarray:
    """'#' ink (0), '-' light grey (200: paper, above the threshold), '.' white."""
    values = {"#": 0, "-": 200, ".": 255, "+": 127}
    return np.array([[values[c] for c in row] for row in rows], dtype=np.uint8)


def test_identical_and_empty_images_agree_perfectly():
    staff = page(["....", "####", "...."])
    assert ink_f1(staff, staff) == 1.0
    assert ink_f1(page(["..", ".."]), page(["--", ".."])) == 1.0  # no ink on either side


def test_f1_of_ink_pixels():
    original = page(["####", "....", "#..."])  # 5 ink pixels
    blurred = page(["##-+", "..+.", "...."])  # keeps 3 of them (127 < 128 is ink), adds 1
    # precision 3/4, recall 3/5: F1 = 2 * 3 / (4 + 5)
    assert ink_f1(original, blurred) == pytest.approx(6 / 9)
    assert ink_f1(original, page(["....", "....", "...."])) == 0.0
    assert ink_f1(original, blurred, threshold=100) == pytest.approx(2 * 2 / (5 + 2))


def test_images_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        ink_f1(page(["#."]), page(["#", "."]))
