"""Excerpts of one to four measures from music21 scores, as self-contained scores.

Multi-part scores (chorales, string quartets, songs) are turned into a *piano-style reduction*: the
upper half of the parts is chordified onto a treble staff and the lower half onto a bass staff of
one grand-staff part. That reduction is what the corpus stores as the excerpt's MusicXML, renders
as its image and linearizes as its LMX (LMX, like the paper's, describes pianoform music). The MIDI
keeps the original parts, one track and General MIDI program per part, with the same notes
(pitches and onsets) as the reduction. Scores that already are one piano grand staff (two
``PartStaff`` objects) and single-part scores are kept as they are.

Every excerpt restates clef, key and time signature in its first measure, carries no title or
credits, and is laid out as one system (no ``<print new-system>``/page breaks).
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from umt.errors import InputError

if TYPE_CHECKING:
    from music21 import stream

# Corpus sources: name -> music21 corpus composer directories (files of the parseable kinds).
SOURCES: dict[str, tuple[str, ...]] = {
    "bach": ("bach",),
    "quartets": ("beethoven", "mozart", "haydn"),
    "joplin": ("joplin",),
    "schumann": ("schumann_clara", "schumann_robert"),
    "others": ("chopin", "handel", "schubert", "corelli"),
}
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")
DEFAULT_QPM = 100.0
SPLIT_FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))


@dataclass(frozen=True)
class PieceRef:
    """One piece to draw excerpts from: a music21 corpus file or a user file."""

    piece: str  # stable id, e.g. "bach/bwv66.6" or "procedural/00003"
    source: str  # "bach", "quartets", ..., "procedural", "files"
    path: str | None = None  # file to parse (None for procedural pieces)


@dataclass(frozen=True)
class ExcerptSpec:
    """Measures ``start..end`` (indices into the score's measure list, inclusive) of a piece."""

    start: int
    end: int
    first_number: int  # printed measure numbers, for the manifest
    last_number: int


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def corpus_pieces(sources: list[str]) -> list[PieceRef]:
    """All music21 corpus pieces of the named sources, sorted by id (deterministic)."""
    from music21 import corpus

    unknown = [name for name in sources if name not in SOURCES]
    if unknown:
        raise InputError(f"unknown corpus source(s) {unknown}; choose from {sorted(SOURCES)}")
    pieces: list[PieceRef] = []
    for source in sources:
        for composer in SOURCES[source]:
            for path in corpus.getComposer(composer):
                path = Path(str(path))
                if path.suffix.lower() not in SCORE_SUFFIXES:
                    continue
                piece = str(path).split("/corpus/")[-1].rsplit(".", 1)[0]
                pieces.append(PieceRef(piece=piece, source=source, path=str(path)))
    pieces.sort(key=lambda ref: ref.piece)
    # one entry per piece id (a corpus may hold the same piece as .mxl and .krn)
    unique: dict[str, PieceRef] = {}
    for ref in pieces:
        unique.setdefault(ref.piece, ref)
    return list(unique.values())


def assign_split(piece: str, seed: int, fractions: tuple[tuple[str, float], ...] = SPLIT_FRACTIONS) -> str:
    """The split of a piece, from a hash of (seed, piece): stable when other pieces come and go
    (``fractions``: each split's share, in order)."""
    digest = hashlib.sha256(f"{seed}:{piece}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, share in fractions:
        cumulative += share
        if fraction < cumulative:
            return name
    return fractions[-1][0]


def _read_user_musicxml(path: Path) -> bytes:
    """The MusicXML document of a user file, read and checked by the safe XML reader (no DTD
    entities, no external resources, zip limits for ``.mxl``) before music21 sees it."""
    from umt.utils.safe_xml import parse_xml_bytes, read_xml_file_bytes

    data = read_xml_file_bytes(path)
    parse_xml_bytes(data, path)  # raises InputError on hostile or malformed XML
    return data


def load_score(ref: PieceRef) -> stream.Score:
    """Parse a piece; raise InputError with the reason when it cannot be used."""
    from music21 import converter, stream

    if ref.path is None:
        raise InputError("no file to parse", ref.piece)
    path = Path(ref.path)
    try:
        if ref.source == "files" and path.suffix.lower() in (".xml", ".musicxml", ".mxl"):
            data = _read_user_musicxml(path)
            score = converter.parseData(data.decode("utf-8", errors="replace"), format="musicxml")
        else:
            if not path.is_file():
                raise InputError("no such file", path)
            score = converter.parse(str(path))
    except InputError:
        raise
    except Exception as error:  # music21 raises many types for corrupt files
        raise InputError(f"cannot parse score ({type(error).__name__}: {error})", path) from None
    if isinstance(score, stream.Opus):
        score = score.scores[0] if score.scores else None
    if not isinstance(score, stream.Score) or not score.parts:
        raise InputError("no parts in score", path)
    if not score.parts[0].getElementsByClass("Measure"):
        raise InputError("score has no measures", path)
    return score


def plan_excerpts(
    score: stream.Score, rng: np.random.Generator, max_excerpts: int | None, max_measures: int = 4
) -> list[ExcerptSpec]:
    """Cut the score into consecutive windows of 1..max_measures measures, then pick some.

    Windows are drawn left to right with random lengths; ``max_excerpts`` of them are kept
    (a random, sorted subset) so long pieces do not dominate the corpus.
    """
    measures = list(score.parts[0].getElementsByClass("Measure"))
    windows: list[ExcerptSpec] = []
    index = 0
    while index < len(measures):
        length = int(rng.integers(1, max_measures + 1))
        end = min(index + length, len(measures)) - 1
        windows.append(
            ExcerptSpec(index, end, int(measures[index].number or 0), int(measures[end].number or 0))
        )
        index = end + 1
    if max_excerpts is not None and len(windows) > max_excerpts:
        keep = np.sort(rng.choice(len(windows), size=max_excerpts, replace=False))
        windows = [windows[i] for i in keep]
    return windows


def tempo_at(score: stream.Score, offset: float) -> float:
    """Quarter notes per minute in force at ``offset`` (first tempo mark at or before it)."""
    qpm = None
    for start, _end, mark in score.metronomeMarkBoundaries():
        if start <= offset + 1e-9:
            qpm = mark.getQuarterBPM()
    return float(qpm) if qpm else DEFAULT_QPM


def _is_grand_staff(score: stream.Score) -> bool:
    from music21 import stream as m21stream

    parts = list(score.parts)
    return len(parts) == 2 and all(isinstance(p, m21stream.PartStaff) for p in parts)


def slice_measures(score: stream.Score, spec: ExcerptSpec) -> stream.Score:
    """The measures of ``spec`` of every part, clef/key/time restated at the first measure."""
    from music21 import stream

    excerpt = stream.Score()
    for part in score.parts:
        measures = list(part.getElementsByClass("Measure"))
        new_part = part.__class__()
        new_part.id = part.id
        instrument = part.getInstrument(returnDefault=False)
        if instrument is not None:
            new_part.insert(0, copy.deepcopy(instrument))
        context = measures[spec.start]
        selected = [copy.deepcopy(m) for m in measures[spec.start : spec.end + 1]]
        first = selected[0]
        for kind in ("Clef", "KeySignature", "TimeSignature"):
            if not first.getElementsByClass(kind):
                found = context.getContextByClass(kind)
                if found is not None:
                    first.insert(0, copy.deepcopy(found))
        offset = 0.0
        for measure in selected:
            for item in list(measure.getElementsByClass(("LayoutBase", "SystemLayout", "PageLayout"))):
                measure.remove(item)
            new_part.insert(offset, measure)
            offset += measure.duration.quarterLength
        excerpt.insert(0, new_part)
    if _is_grand_staff(score):
        from music21 import layout

        excerpt.insert(0, layout.StaffGroup(list(excerpt.parts), symbol="brace", barTogether=True))
    return excerpt


def _chordify_staff(parts: list, clef_obj, first_measure_context) -> stream.PartStaff:
    from music21 import stream

    chords = stream.Score([copy.deepcopy(p) for p in parts]).chordify()
    staff = stream.PartStaff()
    for measure in chords.getElementsByClass("Measure"):
        staff.append(measure)
    first = staff.getElementsByClass("Measure").first()
    for kind in ("Clef", "KeySignature", "TimeSignature"):
        for old in list(first.getElementsByClass(kind)):
            first.remove(old)
    first.insert(0, clef_obj)
    for kind in ("KeySignature", "TimeSignature"):
        found = first_measure_context.getElementsByClass(kind).first()
        if found is not None:
            first.insert(0, copy.deepcopy(found))
    return staff


def piano_view(excerpt: stream.Score) -> stream.Score:
    """The score that is rendered and linearized: a grand-staff reduction of multi-part excerpts."""
    from music21 import clef, instrument, layout, stream

    parts = list(excerpt.parts)
    if len(parts) == 1 or _is_grand_staff(excerpt):
        view = copy.deepcopy(excerpt)
    else:
        split = (len(parts) + 1) // 2
        first_measure = parts[0].getElementsByClass("Measure").first()
        upper = _chordify_staff(parts[:split], clef.TrebleClef(), first_measure)
        lower = _chordify_staff(parts[split:], clef.BassClef(), first_measure)
        view = stream.Score()
        upper.insert(0, instrument.Piano())
        view.insert(0, upper)
        view.insert(0, lower)
        view.insert(0, layout.StaffGroup([upper, lower], symbol="brace", barTogether=True))
    return view


def to_musicxml(score: stream.Score) -> bytes:
    """MusicXML bytes of an excerpt score, without title/credits (nothing but the music is drawn)."""
    from music21 import metadata
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    score = copy.deepcopy(score)
    # tempo goes to the MIDI and the manifest, not into the image (Verovio would draw it)
    for mark in list(score.recurse().getElementsByClass("TempoIndication")):
        mark.activeSite.remove(mark)
    for part in score.parts:  # no part names drawn left of the staves
        part.partName = None
        part.partAbbreviation = None
        for inst in part.recurse().getElementsByClass("Instrument"):
            inst.partName = None
            inst.partAbbreviation = None
            inst.instrumentName = None
            inst.instrumentAbbreviation = None
    score.metadata = metadata.Metadata()
    score.metadata.title = ""
    score.metadata.movementName = ""
    data = GeneralObjectExporter(score).parse()
    # music21 fills an empty title/composer with "Music21 Fragment"/"Music21"; drop those lines.
    data = re.sub(rb"\s*<movement-title>[^<]*</movement-title>", b"", data)
    data = re.sub(rb"\s*<work>.*?</work>", b"", data, flags=re.S)
    data = re.sub(rb"\s*<creator type=\"composer\">[^<]*</creator>", b"", data)
    data = re.sub(rb"\s*<credit\b.*?</credit>", b"", data, flags=re.S)
    data = re.sub(rb"\s*<encoding-date>[^<]*</encoding-date>", b"", data)  # reproducible bytes
    return _canonical_ids(data)


def _canonical_ids(data: bytes) -> bytes:
    """Replace music21's random part and instrument ids by P1, P2, ... and P1-I1, ... ."""
    mapping: dict[bytes, bytes] = {}
    for number, old in enumerate(dict.fromkeys(re.findall(rb'<score-part id="([^"]+)"', data)), 1):
        mapping[old] = b"P%d" % number
    instrument_ids = dict.fromkeys(re.findall(rb'<score-instrument id="([^"]+)"', data))
    for number, old in enumerate(instrument_ids, 1):
        mapping[old] = b"I%d" % number
    if not mapping:
        return data
    pattern = re.compile(rb'"(' + b"|".join(re.escape(k) for k in mapping) + rb')"')
    return pattern.sub(lambda match: b'"' + mapping[match.group(1)] + b'"', data)
