"""Score images: a system (one line of music) as RQ-VAE codes, column by column.

Rows are code columns read top to bottom, ``height`` rows a column; a system starts with a height
token (its height in rows) and systems of a page are separated by ``sep``. Positions are planar
(row in column, column). A page or PDF is cut into its systems, one unit each; generated systems
are stacked into one PNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from umt.modalities.spec import CodebookSpec

if TYPE_CHECKING:
    from umt.vocab import VocabConfig

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
PDF_SUFFIXES = (".pdf",)
PAGE_SUFFIXES = tuple(suffix for suffix in RASTER_SUFFIXES if suffix != ".gif")
"""What a folder of page images is searched for (:func:`page_files`)."""


def page_files(folder: Path) -> list[Path]:
    """The page images anywhere under ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in PAGE_SUFFIXES and p.is_file())


@dataclass(frozen=True)
class ImageSpec(CodebookSpec):
    def specials(self, config: VocabConfig) -> tuple[tuple[str, int], ...]:
        return (("sep", 1), ("height", config.max_image_height))


IMAGE = ImageSpec(
    name="image",
    description="score images (systems) as RQ-VAE codes",
    tokenizer="umt.tokenizers.image:ImageTokenizer",
    positions="planar",
    files="umt.inference.modality_files:ImageFiles",
    suffixes=RASTER_SUFFIXES + PDF_SUFFIXES,
    target_specials=("sep", "height"),
    file_kind="an image or PDF",
    input_help="score image/PDF",
    output_help="score image (PNG)",
)
