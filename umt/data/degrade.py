"""Image degradations for training, deterministic from a seed (numpy/scipy/Pillow only).

Modelled on the augmentations of the Zeus OMR model (ufal/olimpic-icdar24, ``zeus/zeus.py``, used
there as ``h:8,rotate:1,v:4,de,en3:0.2,n:0.01,c:-1:1,b:-0.5:0.2``): each operation is applied with
probability 1/2, on a grayscale image in [0, 1] (white = 1):

- horizontal / vertical shift by up to 8 / 4 px (white fill),
- rotation by up to ±1 degree (bilinear, white fill),
- "de": erosion or dilation of the ink by a sub-pixel shifted copy (direction drawn in ±90°,
  offset (cos d, sin d / 2)), combined by max (thinner ink) or by a + b - 1 (thicker ink),
- "en3": flip pixels on ink edges (3×3 mean not near 0 or 1) with probability U(0, 0.2),
- "n": flip any pixel with probability U(0, 0.01) (salt-and-pepper noise),
- contrast factor 2**U(-1, 1) around the mean, brightness shift U(-0.5, 0.2), clipped to [0, 1].

Unlike Zeus, shifts keep the image size (the shifted-out border is refilled with white), so the
output always has the input's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DegradeConfig:
    probability: float = 0.5
    shift_x: int = 8
    shift_y: int = 4
    rotate_degrees: float = 1.0
    erode_dilate: bool = True
    edge_noise: float = 0.2
    noise: float = 0.01
    contrast_log2: tuple[float, float] = (-1.0, 1.0)
    brightness: tuple[float, float] = (-0.5, 0.2)


def _shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.ones_like(image)
    height, width = image.shape
    src_y = slice(max(0, -dy), min(height, height - dy))
    dst_y = slice(max(0, dy), min(height, height + dy))
    src_x = slice(max(0, -dx), min(width, width - dx))
    dst_x = slice(max(0, dx), min(width, width + dx))
    out[dst_y, dst_x] = image[src_y, src_x]
    return out


def degrade_array(image: np.ndarray, seed: int, config: DegradeConfig | None = None) -> np.ndarray:
    """Degrade a float image [H, W] in [0, 1] (white = 1); same seed, same result; same shape."""
    from scipy import ndimage

    config = config or DegradeConfig()
    rng = np.random.default_rng(seed)
    image = np.asarray(image, dtype=np.float32).copy()

    def chosen() -> bool:
        return bool(rng.random() < config.probability)

    if chosen() and config.shift_x:
        image = _shift(image, 0, int(rng.integers(-config.shift_x, config.shift_x + 1)))
    if chosen() and config.rotate_degrees:
        angle = float(rng.uniform(-config.rotate_degrees, config.rotate_degrees))
        image = ndimage.rotate(image, angle, reshape=False, order=1, mode="constant", cval=1.0)
    if chosen() and config.shift_y:
        image = _shift(image, int(rng.integers(-config.shift_y, config.shift_y + 1)), 0)
    if chosen() and config.erode_dilate:
        direction = float(rng.uniform(-np.pi / 2, np.pi / 2))
        moved = ndimage.shift(
            image, (0.5 * np.sin(direction), np.cos(direction)), order=1, mode="constant", cval=1.0
        )
        image = np.maximum(image, moved) if rng.random() < 0.5 else np.clip(image + moved - 1.0, 0.0, 1.0)
    if chosen() and config.edge_noise:
        mean = ndimage.uniform_filter(image, size=3, mode="nearest")
        edge = (mean > 0.1) & (mean < 0.9)
        flip = edge & (rng.random(image.shape) < rng.uniform(0.0, config.edge_noise))
        image = np.where(flip, 1.0 - image, image)
    if chosen() and config.noise:
        flip = rng.random(image.shape) < rng.uniform(0.0, config.noise)
        image = np.where(flip, 1.0 - image, image)
    if chosen():
        factor = 2.0 ** rng.uniform(*config.contrast_log2)
        image = np.clip((image - image.mean()) * factor + image.mean(), 0.0, 1.0)
    if chosen():
        image = np.clip(image + rng.uniform(*config.brightness), 0.0, 1.0)
    return image.astype(np.float32)


def degrade_image(image, seed: int, config: DegradeConfig | None = None):
    """Degrade a ``PIL.Image`` (any mode; returned as mode "L", same size)."""
    from PIL import Image

    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    out = degrade_array(gray, seed, config)
    return Image.fromarray(np.round(out * 255.0).astype(np.uint8), mode="L")
