"""Reading inputs: images and PDFs into systems, MusicXML/LMX into systems, MIDI and MusicXML into notes;
stacking generated systems into a page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from umt.data.excerpts import tempo_at
from umt.data.synth import score_to_midi
from umt.data.systems import iter_pdf_pages, split_systems, system_boxes
from umt.errors import InputError
from umt.modalities.image import PDF_SUFFIXES
from umt.modalities.lmx import LMX_TEXT_SUFFIXES
from umt.tokenizers.image import read_image
from umt.tokenizers.lmx import linearize_systems, parse_lmx_text
from umt.tokenizers.lmx_vocabulary import LMX_TOKENS
from umt.tokenizers.midi import Note, sort_notes

SYSTEM_GAP_PX = 16
"""White rows between systems when generated system images are stacked into one page."""


def to_gray(image: Any, name: str = "<image>") -> np.ndarray:
    """A path, PIL image or array (``[H, W]``, ``[H, W, 3|4]``) -> grayscale ``uint8 [H, W]``."""
    if isinstance(image, str | Path):
        return read_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.asarray(image.convert("L"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = np.asarray(Image.fromarray(array.astype(np.uint8)).convert("L"))
    if array.ndim != 2 or array.size == 0:
        raise InputError(f"expected a grayscale [H, W] or colour [H, W, 3] image, got {array.shape}", name)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return array


def load_systems(source: Any, split_pages: bool = True) -> list[np.ndarray]:
    """The system images of an input: a PNG/JPG file or array (a page is split into its systems, a
    single system passes through), or a PDF (every page, split). ``uint8 [H, W]`` each, in reading
    order."""
    if isinstance(source, str | Path) and Path(source).suffix.lower() in PDF_SUFFIXES:
        return _pdf_systems(Path(source), split_pages)
    page = to_gray(source)
    return split_systems(page) if split_pages else [page]


def _pdf_systems(path: Path, split_pages: bool) -> list[np.ndarray]:
    """A PDF's systems, page by page as each is rendered (so memory holds systems, not pages); pages
    without a staff (title pages, blank backs) are passed over."""
    systems, pages = [], 0
    for page in iter_pdf_pages(path):
        pages += 1
        if not split_pages:
            systems.append(page)
        elif system_boxes(page):
            systems += split_systems(page)
    if not systems:
        raise InputError(f"no staff found on any of its {pages} page(s)", path)
    return systems


def read_lmx_systems(path: str | Path) -> list[list[str]]:
    """The LMX systems of a MusicXML/MXL file or an LMX text file (unknown tokens refused)."""
    path = Path(path)
    if path.suffix.lower() in LMX_TEXT_SUFFIXES:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError("no such file", path) from None
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"cannot read LMX text ({error})", path) from None
        systems = parse_lmx_text(text)
        known = set(LMX_TOKENS)
        for system in systems:
            unknown = [token for token in system if token not in known]
            if unknown:
                raise InputError(f"unknown LMX token {unknown[0]!r}", path)
    else:
        systems = linearize_systems(path)
    systems = [system for system in systems if system]
    if not systems:
        raise InputError("holds no music (no LMX tokens)", path)
    return systems


def split_measures(tokens: Sequence[str], limit: int) -> list[list[str]]:
    """Cut an LMX token list at ``measure`` tokens into pieces of at most ``limit`` tokens (a single
    measure longer than ``limit`` is cut where it must)."""
    measures: list[list[str]] = []
    for token in tokens:
        if token == "measure" or not measures:
            measures.append([])
        measures[-1].append(token)
    pieces: list[list[str]] = [[]]
    for measure in measures:
        if pieces[-1] and len(pieces[-1]) + len(measure) > limit:
            pieces.append([])
        pieces[-1].extend(measure)
    out = []
    for piece in pieces:
        out.extend(piece[i : i + limit] for i in range(0, len(piece), limit))
    return [piece for piece in out if piece]


def notes_from_pretty_midi(midi: Any) -> list[Note]:
    """The notes of a ``pretty_midi.PrettyMIDI`` as :class:`umt.tokenizers.midi.Note` s."""
    notes = [
        Note(n.pitch, instrument.program, instrument.is_drum, float(n.start), float(n.end), n.velocity)
        for instrument in midi.instruments
        for n in instrument.notes
    ]
    return sort_notes(notes)


def musicxml_to_notes(musicxml: str, name: str = "<musicxml>", qpm: float | None = None) -> list[Note]:
    """MusicXML text -> notes at ``qpm`` quarter notes per minute (default: the score's own tempo;
    music21 + :func:`umt.data.synth.score_to_midi`)."""
    # music21 (and the modules built on it) take seconds to import: only for MusicXML inputs.
    from music21 import converter, stream

    try:
        score = converter.parseData(musicxml, format="musicxml")
    except Exception as error:  # music21 raises many types for odd documents
        raise InputError(
            f"music21 cannot read the MusicXML ({type(error).__name__}: {error})", name
        ) from None
    if isinstance(score, stream.Opus):
        score = score.scores[0] if score.scores else None
    if not isinstance(score, stream.Score) or not score.parts:
        raise InputError("the MusicXML has no parts", name)
    notes = notes_from_pretty_midi(score_to_midi(score, tempo_at(score, 0.0) if qpm is None else qpm))
    if not notes:
        raise InputError("the MusicXML holds no notes", name)
    return notes


def stack_images(images: Sequence[np.ndarray], gap: int = SYSTEM_GAP_PX) -> np.ndarray:
    """Grayscale images stacked top to bottom on white, left-aligned, ``gap`` white rows between."""
    if not images:
        raise ValueError("no image to stack")
    width = max(image.shape[1] for image in images)
    height = sum(image.shape[0] for image in images) + gap * (len(images) - 1)
    page = np.full((height, width), 255, dtype=np.uint8)
    top = 0
    for image in images:
        page[top : top + image.shape[0], : image.shape[1]] = image
        top += image.shape[0] + gap
    return page
