"""Split a score page into its systems, and read PDF pages as images (for inference on whole pages).

The translator is trained on *system* images (one line of music, all its staves). A page is split
by a horizontal projection:

1. **Staff lines.** A row is a staff-line row when its longest run of dark pixels covers at least
   ``min_line_fraction`` of the page's ink width; adjacent line rows form one line.
2. **Staves.** Five consecutive lines with near-equal spacing form a staff.
3. **Systems.** Two consecutive staves belong to one system when a vertical line (the system's
   left barline, a brace or a bracket, or barlines drawn through the staves) joins them: some
   column is dark over (nearly) the whole gap between them. When no two staves on the page are
   joined that way (single-staff systems, or a scan whose barlines broke), staves are grouped by
   their vertical gaps instead: when the gaps are clearly of two sizes, the small ones lie inside
   systems.
4. **Crops.** Each system is cut out with up to ``1.5`` staff heights above its top staff and below
   its bottom staff (never past the middle of the gap to the next system), then trimmed to its ink
   with a small white margin.

An image with at most one system (or no detectable staff at all) passes through unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umt.errors import InputError

PDF_DPI = 200
"""Resolution at which PDF pages are rasterised (the tokenizer rescales to its staff height)."""
MAX_PDF_PAGES = 500
MAX_PDF_PAGE_PIXELS = 60_000_000
"""About an A0 page at 200 dpi (9,362 x 6,623 px); larger pages are refused, not rendered."""


@dataclass(frozen=True)
class Staff:
    """One five-line staff: first and last row (inclusive) of its outer lines, its column span."""

    top: int
    bottom: int
    left: int
    right: int
    span: float = 0.0
    """Distance between the centres of the top and bottom lines (the render module's staff height)."""

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1


@dataclass(frozen=True)
class SystemBox:
    """A system's crop box in page pixels: rows ``[top, bottom)``, columns ``[left, right)``."""

    top: int
    bottom: int
    left: int
    right: int
    staves: int


def _dark_mask(gray: np.ndarray, level: float = 0.25) -> np.ndarray | None:
    """Pixels darker than ``level`` of the way from the paper (median) to the ink (minimum).

    Staff lines at small sizes are thin and anti-aliased (light grey), so lines and the vertical
    lines joining staves are looked for with a low level; ink extents with a higher one.
    """
    paper, ink = float(np.median(gray)), float(gray.min())
    if paper - ink < 32:
        return None
    return gray < paper - level * (paper - ink)


LINE_LEVEL = 0.06


def _longest_runs(mask: np.ndarray) -> np.ndarray:
    """Length of the longest run of True in each row of ``mask [H, W]``."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    out = np.zeros(height, dtype=np.int64)
    for row in np.flatnonzero(mask.any(axis=1)):
        starts = np.flatnonzero(edges[row] == 1)
        stops = np.flatnonzero(edges[row] == -1)
        out[row] = int((stops - starts).max())
    return out


def find_staves(gray: np.ndarray, min_line_fraction: float = 0.3) -> list[Staff]:
    """The five-line staves of a grayscale page ``uint8 [H, W]``, top to bottom."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.size == 0:
        return []
    dark = _dark_mask(gray, LINE_LEVEL)
    if dark is None:
        return []
    columns = np.flatnonzero(dark.any(axis=0))
    ink_width = columns[-1] - columns[0] + 1
    is_line = _longest_runs(dark) >= max(8, min_line_fraction * ink_width)
    lines: list[tuple[int, int]] = []  # (top, bottom) rows, inclusive
    for row in np.flatnonzero(is_line):
        if lines and row == lines[-1][1] + 1:
            lines[-1] = (lines[-1][0], int(row))
        else:
            lines.append((int(row), int(row)))
    staves: list[Staff] = []
    index = 0
    while index + 5 <= len(lines):
        group = lines[index : index + 5]
        centres = np.array([(top + bottom) / 2 for top, bottom in group])
        gaps = np.diff(centres)
        thickness = max(bottom - top + 1 for top, bottom in group)
        if gaps.min() > thickness and gaps.max() <= 1.3 * gaps.min() + 1:
            top, bottom = group[0][0], group[-1][1]
            band = dark[top : bottom + 1]
            line_columns = np.flatnonzero(band.mean(axis=0) > 0.5)
            left, right = (int(line_columns[0]), int(line_columns[-1])) if line_columns.size else (0, 0)
            staves.append(Staff(top, bottom, left, right, float(centres[-1] - centres[0])))
            index += 5
        else:
            index += 1
    return staves


def staff_height(gray: np.ndarray) -> float | None:
    """Median distance between the outer line centres of the staves in ``gray`` (None: no staff).

    This is the staff height :mod:`umt.data.render` engraves training images at (18 px), so it is
    the fallback when :func:`umt.tokenizers.image.measure_staff_height` finds no staff (its
    threshold misses the thin, anti-aliased lines of small renders).
    """
    staves = find_staves(gray)
    return float(np.median([s.span for s in staves])) if staves else None


def _joined(dark: np.ndarray, upper: Staff, lower: Staff, min_cover: float = 0.9) -> bool:
    """Whether a vertical line joins ``upper`` to ``lower`` (see the module docstring)."""
    gap = dark[upper.bottom + 1 : lower.top]
    if gap.shape[0] == 0:
        return True
    left = max(0, min(upper.left, lower.left) - upper.height)  # braces sit left of the staff lines
    right = min(dark.shape[1], max(upper.right, lower.right) + 1)
    gap = gap[:, left:right]
    # A line may be anti-aliased over two columns: take each column with its neighbours.
    widened = gap.copy()
    widened[:, 1:] |= gap[:, :-1]
    widened[:, :-1] |= gap[:, 1:]
    return bool(widened.size) and float(widened.mean(axis=0).max()) >= min_cover


def group_staves(gray: np.ndarray, staves: list[Staff]) -> list[list[Staff]]:
    """Staves grouped into systems, top to bottom (see the module docstring)."""
    if len(staves) <= 1:
        return [list(staves)]
    dark = _dark_mask(np.asarray(gray), LINE_LEVEL)
    joined = [_joined(dark, a, b) for a, b in itertools.pairwise(staves)] if dark is not None else []
    if not any(joined):
        gaps = np.array([b.top - a.bottom for a, b in itertools.pairwise(staves)], dtype=np.float64)
        if len(gaps) >= 2 and gaps.max() > 1.6 * gaps.min():
            threshold = (gaps.min() + gaps.max()) / 2
            joined = [bool(gap < threshold) for gap in gaps]
        else:
            joined = [False] * len(gaps)
    systems = [[staves[0]]]
    for staff, with_previous in zip(staves[1:], joined):
        if with_previous:
            systems[-1].append(staff)
        else:
            systems.append([staff])
    return systems


def system_boxes(gray: np.ndarray, min_line_fraction: float = 0.3) -> list[SystemBox]:
    """Crop boxes of the systems on a page (empty when no staff is found)."""
    gray = np.asarray(gray)
    staves = find_staves(gray, min_line_fraction)
    if not staves:
        return []
    systems = group_staves(gray, staves)
    dark = _dark_mask(gray)
    assert dark is not None  # staves were found, so the page has ink
    staff_height = float(np.median([s.height for s in staves]))
    reach = round(1.5 * staff_height)
    margin = max(2, round(staff_height * 4 / 18))
    boxes = []
    for index, system in enumerate(systems):
        top, bottom = system[0].top, system[-1].bottom
        limit_top = 0 if index == 0 else (systems[index - 1][-1].bottom + top) // 2 + 1
        limit_bottom = (
            gray.shape[0] if index == len(systems) - 1 else (bottom + systems[index + 1][0].top) // 2
        )
        band_top = max(limit_top, top - reach)
        band_bottom = min(limit_bottom, bottom + 1 + reach)
        band = dark[band_top:band_bottom]
        rows = np.flatnonzero(band.any(axis=1))
        cols = np.flatnonzero(band.any(axis=0))
        box_top = max(limit_top, band_top + int(rows[0]) - margin)
        box_bottom = min(limit_bottom, band_top + int(rows[-1]) + 1 + margin)
        box_left = max(0, int(cols[0]) - margin)
        box_right = min(gray.shape[1], int(cols[-1]) + 1 + margin)
        boxes.append(SystemBox(box_top, box_bottom, box_left, box_right, len(system)))
    return boxes


def split_systems(gray: np.ndarray, min_line_fraction: float = 0.3) -> list[np.ndarray]:
    """A page ``uint8 [H, W]`` -> its system images, top to bottom.

    A page with at most one system (or without a detectable staff) is returned unchanged, as the
    only element.
    """
    boxes = system_boxes(gray, min_line_fraction)
    if len(boxes) <= 1:
        return [np.asarray(gray)]
    return [np.ascontiguousarray(gray[b.top : b.bottom, b.left : b.right]) for b in boxes]


def read_pdf_pages(path: str | Path, dpi: int = PDF_DPI) -> list[np.ndarray]:
    """Every page of a PDF as grayscale ``uint8 [H, W]`` (pypdfium2, the ``pdf`` extra); see
    :func:`iter_pdf_pages`, which renders one page at a time."""
    return list(iter_pdf_pages(path, dpi))


def open_pdf(path: str | Path) -> Any:
    """A pypdfium2 document of at least one and at most :data:`MAX_PDF_PAGES` pages (close it);
    InputError naming the file when it is missing, not a PDF, damaged, encrypted or out of range."""
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise InputError("reading PDF needs pypdfium2: pip install 'umt[pdf]'", path) from None
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    try:
        document = pdfium.PdfDocument(str(path))
    except Exception as error:  # PdfiumError: not a PDF, truncated, encrypted (needs a password)
        if "password" in str(error).lower():
            raise InputError("is password-protected (save an unprotected copy)", path) from None
        raise InputError(f"not a readable PDF ({error})", path) from None
    count = len(document)
    if not 0 < count <= MAX_PDF_PAGES:
        document.close()
        problem = "has no pages" if count == 0 else f"has {count} pages (at most {MAX_PDF_PAGES})"
        raise InputError(f"PDF {problem}", path)
    return document


def pdf_page(document: Any, index: int, path: str | Path) -> Any:
    """Page ``index`` of an open document; InputError for a page the file's damage makes unloadable."""
    try:
        return document[index]
    except Exception as error:  # PdfiumError
        raise InputError(f"cannot load PDF page {index + 1} ({error})", path) from None


def iter_pdf_pages(path: str | Path, dpi: int = PDF_DPI) -> Iterator[np.ndarray]:
    """The pages of a PDF as grayscale ``uint8 [H, W]``, rendered one at a time (pypdfium2).

    Forms and scripts are never run (``may_draw_forms=False``; no form environment is made);
    encrypted, corrupt and empty files, more than :data:`MAX_PDF_PAGES` pages and pages that
    would exceed :data:`MAX_PDF_PAGE_PIXELS` raise InputError naming the file.
    """
    document = open_pdf(path)
    try:
        for index in range(len(document)):
            yield _render_page(pdf_page(document, index, path), index, dpi, Path(path))
    finally:
        document.close()


def _render_page(page, index: int, dpi: int, path: Path) -> np.ndarray:
    width, height = page.get_size()  # points
    scale = dpi / 72.0
    if width * scale * height * scale > MAX_PDF_PAGE_PIXELS:
        raise InputError(f"PDF page {index + 1} is {width:.0f}x{height:.0f} pt: too large to render", path)
    try:
        bitmap = page.render(scale=scale, grayscale=True, may_draw_forms=False)
        return np.asarray(bitmap.to_pil().convert("L"), dtype=np.uint8).copy()
    except Exception as error:
        raise InputError(f"cannot render PDF page {index + 1} ({error})", path) from None
    finally:
        page.close()
