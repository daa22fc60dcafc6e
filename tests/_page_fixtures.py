"""Score pages and non-score pages made at test time: Verovio-engraved systems stacked on a page,
and text or cover pages drawn with Pillow (MusicScore's classifier tells these apart)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tests import _inference_fixtures as fx

PAGE = (850, 1100)  # width, height: a letter page at 100 dpi

WORDS = [
    "sonata",
    "allegro",
    "piano",
    "violin",
    "opus",
    "edition",
    "preface",
    "contents",
    "plate",
    "publisher",
    "leipzig",
    "paris",
]


@functools.cache
def _systems() -> tuple[np.ndarray, ...]:
    """Six engraved piano systems, each scaled to a page's width (made once: engraving is slow)."""
    systems = []
    for seed in range(6):
        system = fx.render(fx.piano_musicxml(4, seed))
        height, width = system.shape
        scale = (PAGE[0] - 100) / width
        systems.append(np.asarray(Image.fromarray(system).resize((PAGE[0] - 100, int(height * scale)))))
    return tuple(systems)


def score_page(seed: int) -> np.ndarray:
    """Grayscale ``uint8 [H, W]``: engraved piano systems, drawn from a pool, down a white page."""
    rng = np.random.default_rng(seed)
    pool = _systems()
    page = np.full(PAGE[::-1], 255, dtype=np.uint8)
    y = int(rng.integers(40, 120))
    while True:
        system = pool[int(rng.integers(len(pool)))]
        if y + system.shape[0] > PAGE[1] - 40:
            return page
        page[y : y + system.shape[0], 50 : 50 + system.shape[1]] = system
        y += system.shape[0] + int(rng.integers(20, 60))


def text_page(seed: int) -> np.ndarray:
    """Grayscale ``uint8 [H, W]``: a cover (a big title, a frame) or a page of prose."""
    rng = np.random.default_rng(seed)
    image = Image.new("L", PAGE, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    if seed % 2:  # a cover
        draw.rectangle([30, 30, PAGE[0] - 30, PAGE[1] - 30], outline=0, width=4)
        title = " ".join(rng.choice(WORDS, size=2)).upper()
        big = ImageFont.load_default(size=48)
        draw.text((120, 300 + 10 * (seed % 5)), title, fill=0, font=big)
        draw.text((200, 700), " ".join(rng.choice(WORDS, size=3)), fill=0, font=font)
    else:  # prose
        for line in range(40):
            words = " ".join(rng.choice(WORDS, size=int(rng.integers(6, 11))))
            draw.text((60, 60 + 24 * line), words, fill=0, font=font)
    return np.asarray(image)


def labelled_folder(root: Path, count: int) -> Path:
    """``root/score/*.png`` and ``root/non-score/*.png``, ``count`` each."""
    for name, make in (("score", score_page), ("non-score", text_page)):
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.fromarray(make(index)).save(root / name / f"{name}-{index:03d}.png")
    return root
