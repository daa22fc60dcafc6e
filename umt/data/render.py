"""Render a MusicXML excerpt to a tightly cropped grayscale PNG of one system.

Verovio lays the excerpt out as one system (``breaks="none"`` on a very wide page, no header or
footer) and draws SVG; cairosvg rasterises it at a high resolution; we crop to the ink bounding box
plus a margin and scale so that the distance between the top and bottom line of a staff is
``staff_height`` pixels (18 by default, measured on the raster, not assumed from Verovio units).
"""

from __future__ import annotations

import io

import numpy as np

from umt.errors import InputError

STAFF_HEIGHT_PX = 18
MARGIN_PX = 4  # white border kept around the ink, in output pixels
_INK_LEVEL = 200  # gray value below which a pixel is ink


def _verovio_svg(musicxml: bytes | str, options: dict | None = None, one_page: bool = True) -> str:
    """The first page of the score as SVG (``options`` override the single-system layout below)."""
    import verovio

    verovio.enableLog(verovio.LOG_OFF)
    toolkit = verovio.toolkit()
    toolkit.setOptions(
        {
            "breaks": "none",
            "adjustPageHeight": True,
            "pageWidth": 100000,
            "pageHeight": 60000,
            "header": "none",
            "footer": "none",
            "scale": 100,
            "pageMarginTop": 50,
            "pageMarginBottom": 50,
            "pageMarginLeft": 50,
            "pageMarginRight": 50,
            "svgViewBox": False,
            "mnumInterval": 0,
            **(options or {}),
        }
    )
    text = musicxml.decode("utf-8") if isinstance(musicxml, bytes) else musicxml
    if not toolkit.loadData(text):
        raise InputError("Verovio could not read the MusicXML")
    if one_page and toolkit.getPageCount() != 1:
        raise InputError(f"excerpt does not fit one page ({toolkit.getPageCount()} pages)")
    return toolkit.renderToSVG(1)


def page_svg(musicxml: bytes | str) -> str:
    """The score's first page as a scalable SVG (line breaks as they fall), for a web page."""
    options = {"breaks": "auto", "pageWidth": 2100, "scale": 40, "svgViewBox": True, "mnumInterval": 1}
    return _verovio_svg(musicxml, options, one_page=False)


def _longest_runs(mask: np.ndarray) -> np.ndarray:
    """Per row of a bool array [H, W], the length of the longest run of True."""
    out = np.zeros(mask.shape[0], dtype=np.int64)
    for row, values in enumerate(mask):
        edges = np.diff(np.concatenate(([0], values.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        if starts.size:
            out[row] = int((stops - starts).max())
    return out


def staff_line_rows(gray: np.ndarray) -> list[float]:
    """Centres (row coordinates) of horizontal staff lines in a grayscale image [H, W] (uint8).

    A staff-line row holds a horizontal run of not-quite-white pixels over at least half the ink
    width (noteheads, beams and ledger lines are shorter). At 18 px staves a line is thinner than
    a pixel and often spread over two rows, so adjacent line rows are merged into one line whose
    centre is their darkness-weighted mean.
    """
    darkness = 1.0 - gray.astype(np.float64) / 255.0
    columns = np.flatnonzero((gray < _INK_LEVEL).any(axis=0))
    if columns.size == 0:
        return []
    span = slice(columns[0], columns[-1] + 1)
    is_line = _longest_runs(gray[:, span] < 240) >= 0.5 * (columns[-1] - columns[0] + 1)
    weight = darkness[:, span].sum(axis=1)
    centres: list[float] = []
    row = 0
    while row < len(is_line):
        if is_line[row]:
            start = row
            while row < len(is_line) and is_line[row]:
                row += 1
            centres.append(float(np.average(np.arange(start, row), weights=weight[start:row] + 1e-9)))
        row += 1
    return centres


def staff_heights(gray: np.ndarray) -> list[float]:
    """Top-to-bottom line distance of each five-line staff found in ``gray`` [H, W]."""
    lines = staff_line_rows(gray)
    heights = []
    index = 0
    while index + 4 < len(lines):
        group = lines[index : index + 5]
        gaps = np.diff(group)
        if gaps.max() <= 1.5 * gaps.min():
            heights.append(group[-1] - group[0])
            index += 5
        else:
            index += 1
    return heights


def render_musicxml(musicxml: bytes | str, staff_height: int = STAFF_HEIGHT_PX, margin: int = MARGIN_PX):
    """A cropped grayscale ``PIL.Image`` (mode "L") of one system, staves ``staff_height`` px high."""
    import cairosvg
    from PIL import Image

    svg = _verovio_svg(musicxml)
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), background_color="white")
    image = Image.open(io.BytesIO(png)).convert("L")
    gray = np.asarray(image)
    heights = staff_heights(gray)
    if not heights:
        raise InputError("no staff found in the rendered image")
    factor = staff_height / float(np.median(heights))
    ink = np.argwhere(gray < _INK_LEVEL)
    (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0)
    pad = int(np.ceil(margin / factor))
    box = (
        max(0, left - pad),
        max(0, top - pad),
        min(gray.shape[1], right + 1 + pad),
        min(gray.shape[0], bottom + 1 + pad),
    )
    cropped = image.crop(box)
    size = (max(1, round(cropped.width * factor)), max(1, round(cropped.height * factor)))
    return cropped.resize(size, Image.Resampling.LANCZOS)


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
