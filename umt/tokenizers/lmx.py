"""Linearized MusicXML (LMX): MusicXML part <-> token sequence, after Mayer et al. (ICDAR 2024).

The linearization is token-for-token the one of the reference implementation (ufal/olimpic-icdar24,
``app/linearization/Linearizer.py``) on every input the reference accepts without warnings; it is
checked against the reference's own test cases and against its output on music21's corpus.

Linearizing (MusicXML -> tokens)
    :func:`linearize` (a file, whole part), :func:`linearize_systems` (one token list per system:
    the part is split at ``<print new-system|new-page="yes">``, and each system re-states the clef
    and key signature at its start, like the reference's ``split_part_to_systems``; time
    signatures are not re-stated), and :func:`linearize_xml` / :func:`linearize_string` for an
    already-parsed document or an in-memory string (the corpus builder's fast path).
    Where the reference would stop with an assertion or an exception (invalid MusicXML, a value
    outside the LMX vocabulary) this implementation goes on: it leaves out what it cannot
    represent (the whole time signature, clef plus its staff token, the odd note field) and keeps
    going. Tokens outside the vocabulary are never emitted. Systems without measures are left out.
    The reference's consistency warnings (durations, chord pitch order) are not reproduced: they
    never change the tokens.

Delinearizing (tokens -> MusicXML)
    :func:`delinearize` never raises on a malformed sequence; it returns a :class:`Delinearized`
    with the score-partwise MusicXML text and how many tokens were dropped or repaired. It
    follows the reference's ``Delinearizer`` (prefix / root / suffix trees, pitch alterations
    inferred from key signature, accidentals and ties, divisions from the least common multiple
    of the durations) and is the exact inverse of the linearizer on well-formed input: voice,
    staff and stem state are reset at each ``backup`` as the linearizer does, and tie / tuplet /
    slur tokens keep their order. Several systems become one part with system breaks
    (``<print new-system="yes"/>``), so that splitting it again gives the same systems.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from umt.errors import InputError
from umt.tokenizers.lmx_vocabulary import (
    ACCIDENTAL_TOKENS,
    BEAM_TOKENS,
    BEAT_TYPE_TOKENS,
    BEATS_TOKENS,
    CLEF_TOKENS,
    KEY_TOKENS,
    LMX_TOKENS,
    NOTE_PREFIX_TOKENS,
    NOTE_ROOT_TOKENS,
    NOTE_SUFFIX_TOKENS,
    NOTE_TYPE_TO_QUARTERS,
    NOTE_TYPE_TOKENS,
    PITCH_TOKENS,
    STAFF_TOKENS,
    STEM_TOKENS,
    TIME_MODIFICATION_TOKENS,
    TREMOLO_MARKS_TOKENS,
    TREMOLO_TYPE_TOKENS,
    VOICE_TOKENS,
)
from umt.utils.safe_xml import parse_musicxml, read_musicxml

__all__ = [
    "Delinearized",
    "delinearize",
    "format_lmx",
    "linearize",
    "linearize_part",
    "linearize_part_systems",
    "linearize_string",
    "linearize_systems",
    "linearize_xml",
    "parse_lmx_text",
    "select_part",
]

_TOKEN_SET = frozenset(LMX_TOKENS)
_PITCH_SET = frozenset(PITCH_TOKENS)
_TYPE_SET = frozenset(NOTE_TYPE_TOKENS)
_ACCIDENTAL_SET = frozenset(ACCIDENTAL_TOKENS)
_STEMS = {"up": "stem:up", "down": "stem:down", "none": "stem:none"}
_BEAMS = {
    "begin": "beam:begin",
    "end": "beam:end",
    "forward hook": "beam:forward-hook",
    "backward hook": "beam:backward-hook",
}
# Largest to smallest, for splitting backup / forward durations into note types.
_TYPES_LONGEST_FIRST = tuple(reversed(NOTE_TYPE_TOKENS))
# The reference's piano lookup (app/symbolic/MxlFile.py, resolve_piano_part_id): exact names
_PIANO_INSTRUMENT_NAMES = frozenset(
    {"Piano", "Grand Piano", "Acoustic Grand Piano", "Harpsichord", "Pianoforte", "Piano (2)"}
)
_PIANO_PART_NAMES = frozenset({"Pianoforte"})


def _text(element: Any) -> str:
    text = element.text
    return text.strip() if text else ""


def _number(element: Any) -> str:
    return element.get("number", "1")


# ----------------------------------------------------------------------------------------------
# Linearizer
# ----------------------------------------------------------------------------------------------


class _Linearizer:
    """State machine over one part (or one system); appends tokens to ``self.tokens``."""

    __slots__ = ("divisions", "staff", "staves", "stem", "tokens", "voice")

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.reset_part()
        self.stem: str | None = None
        self.staff: str | None = None
        self.voice: str | None = None

    def reset_part(self) -> None:
        self.divisions: int | None = None
        self.staves: int | None = None

    # -- measures -------------------------------------------------------------------------------

    def measure(self, measure: Any, header: tuple | None = None, skip: Any = None) -> None:
        self.stem = self.staff = self.voice = None
        self.tokens.append("measure")
        if header is not None:
            self.apply_attributes(*header)
        for element in measure:
            tag = element.tag
            if tag == "note":
                self.note(element)
            elif tag == "attributes":
                if element is not skip:
                    self.attributes(element)
            elif tag == "backup":
                self.backup_forward(element, "backup")
            elif tag == "forward":
                self.backup_forward(element, "forward")

    # -- attributes -----------------------------------------------------------------------------

    def attributes(self, attributes: Any) -> None:
        divisions = key = time = staves = None
        clefs = []
        for child in attributes:
            tag = child.tag
            if tag == "clef":
                clefs.append(child)
            elif tag == "key":
                if key is None:
                    key = child
            elif tag == "time":
                if time is None:
                    time = child
            elif tag == "divisions":
                if divisions is None:
                    divisions = child
            elif tag == "staves" and staves is None:
                staves = child
        self.apply_attributes(divisions, key, time, staves, clefs)

    def apply_attributes(self, divisions: Any, key: Any, time: Any, staves: Any, clefs: list) -> None:
        emit = self.tokens.append
        if divisions is not None:
            try:
                value = int(_text(divisions))
            except ValueError:
                value = 0
            if value > 0:
                self.divisions = value
        if key is not None:
            fifths = key.find("fifths")
            if fifths is not None:
                token = "key:fifths:" + _text(fifths)
                if token in _TOKEN_SET:
                    emit(token)
        if time is not None:
            beats, beat_type = time.find("beats"), time.find("beat-type")
            if beats is not None and beat_type is not None:
                try:
                    beats_token = f"beats:{int(_text(beats))}"
                    beat_type_token = f"beat-type:{int(_text(beat_type))}"
                except ValueError:
                    pass  # e.g. "3+2": not representable, the time signature is left out
                else:
                    if beats_token in _TOKEN_SET and beat_type_token in _TOKEN_SET:
                        emit("time")
                        emit(beats_token)
                        emit(beat_type_token)
        if staves is not None:
            with contextlib.suppress(ValueError):
                self.staves = int(_text(staves))
        if clefs:
            to_print: dict[int, str | None] = {}
            for clef in clefs:
                try:
                    number = int(clef.get("number", "1"))
                except ValueError:
                    continue
                sign, line = clef.find("sign"), clef.find("line")
                if sign is None or line is None:
                    to_print[number] = None
                else:
                    to_print[number] = "clef:" + _text(sign).upper() + _text(line)
            for number in sorted(to_print):
                token = to_print[number]
                if token is None or token not in _TOKEN_SET:
                    continue
                emit(token)
                if self.staves is not None:
                    staff_token = f"staff:{number}"
                    if staff_token in _TOKEN_SET:
                        emit(staff_token)

    # -- backup / forward -----------------------------------------------------------------------

    def backup_forward(self, element: Any, kind: str) -> None:
        duration_element = element.find("duration")
        duration = 0
        if duration_element is not None:
            try:
                duration = int(_text(duration_element))
            except ValueError:
                duration = 0
        if duration > 0 and self.divisions is not None:
            emit = self.tokens.append
            for note_type in self.split_duration(duration):
                emit(kind)
                emit(note_type)
        if kind == "backup":
            self.voice = self.staff = self.stem = None

    def split_duration(self, duration: int) -> list[str]:
        # Greedy from the maxima down, halving the step with integer division exactly like the
        # reference (so divisions that are not powers of two give the same, lossy, answer).
        types = []
        remainder = duration
        step = self.divisions * 32  # quarters in a maxima
        for note_type in _TYPES_LONGEST_FIRST:
            if remainder <= 0:
                break
            if step <= remainder:
                types.append(note_type)
                remainder -= step
            step //= 2
        return types

    # -- notes ----------------------------------------------------------------------------------

    def note(self, note: Any) -> None:
        """A ``<note>``'s tokens, in the reference's order: grace, chord, rest or pitch, voice, type,
        tuplet ratio, dots, accidental, stem, staff, beams, notations."""
        if note.get("print-object") == "no":
            self.tokens.append("print-object:no")
        first, beams, notations, dots, is_chord = _note_children(note)
        is_measure_rest = self._note_head(first, is_chord)
        self._note_voice(first.get("voice"))
        self._note_duration(first, dots, is_measure_rest)
        self._note_glyphs(first)
        for beam in beams:
            token = _BEAMS.get(beam.text)
            if token is not None:
                self.tokens.append(token)
        if notations:
            self.notations(notations)

    def _note_head(self, first: dict, is_chord: bool) -> bool:
        """Grace, chord, and the rest or pitch token; whether the note is a whole-measure rest."""
        emit = self.tokens.append
        grace, rest, pitch = first.get("grace"), first.get("rest"), first.get("pitch")
        if grace is not None:
            emit("grace")
            if grace.get("slash") == "yes":
                emit("grace:slash")
        if is_chord:
            emit("chord")
        if rest is not None:
            emit("rest")
            return rest.get("measure") == "yes"
        if pitch is not None:
            step, octave = pitch.find("step"), pitch.find("octave")
            if step is not None and octave is not None:
                token = (step.text or "") + (octave.text or "")
                if token not in _PITCH_SET:
                    token = _text(step) + _text(octave)
                if token in _PITCH_SET:
                    emit(token)
        return False

    def _note_voice(self, voice: Any) -> None:
        """A voice token where the voice changes."""
        if voice is not None:
            value = voice.text
            if value != self.voice:
                token = "voice:" + (value or "")
                if token in _TOKEN_SET:
                    self.tokens.append(token)
                self.voice = value

    def _note_duration(self, first: dict, dots: int, is_measure_rest: bool) -> None:
        """The type (or ``rest:measure``), the tuplet ratio and the dots."""
        emit = self.tokens.append
        note_type, time_modification = first.get("type"), first.get("time-modification")
        if note_type is not None:
            value = note_type.text if note_type.text in _TYPE_SET else _text(note_type)
            if value in _TYPE_SET:
                emit(value)
        elif is_measure_rest:
            emit("rest:measure")
        if time_modification is not None:
            actual = time_modification.find("actual-notes")
            normal = time_modification.find("normal-notes")
            if actual is not None and normal is not None:
                token = _text(actual) + "in" + _text(normal)
                if token in _TOKEN_SET:
                    emit(token)
        for _ in range(dots):
            emit("dot")

    def _note_glyphs(self, first: dict) -> None:
        """The accidental, and stem and staff tokens where they change."""
        emit = self.tokens.append
        accidental, stem, staff = first.get("accidental"), first.get("stem"), first.get("staff")
        if accidental is not None:
            value = accidental.text if accidental.text in _ACCIDENTAL_SET else _text(accidental)
            if value in _ACCIDENTAL_SET:
                emit(value)
        if stem is not None:
            value = stem.text
            token = _STEMS.get(value) if value else None
            if token is not None and value != self.stem:
                emit(token)
                self.stem = value
        if staff is not None:
            value = staff.text
            # the reference requires <staves> >= 2 for staff tokens; without it they are left out
            if (
                value in ("1", "2", "3")
                and self.staves is not None
                and self.staves >= 2
                and value != self.staff
            ):
                emit("staff:" + value)
                self.staff = value

    def notations(self, notations_elements: list) -> None:
        emit = self.tokens.append
        # ties and tuplets are read from every <notations> element, the rest from the first one
        for notations in notations_elements:
            for child in notations:
                if child.tag == "tied":
                    kind = child.get("type")
                    if kind == "start" or kind == "stop":
                        emit("tied:" + kind)
        for notations in notations_elements:
            for child in notations:
                if child.tag == "tuplet":
                    kind = child.get("type")
                    if kind == "start" or kind == "stop":
                        emit("tuplet:" + kind)

        fermata = arpeggiate = False
        articulations: set[str] = set()
        tremolo = None
        trill_mark = False
        for child in notations_elements[0]:
            tag = child.tag
            if tag == "slur":
                kind = child.get("type")
                if kind == "start" or kind == "stop":
                    emit("slur:" + kind)
            elif tag == "fermata":
                fermata = True
            elif tag == "arpeggiate":
                arpeggiate = True
            elif tag == "articulations":
                for articulation in child:
                    articulations.add(articulation.tag)
            elif tag == "ornaments":
                for ornament in child:
                    if ornament.tag == "tremolo":
                        if tremolo is None:
                            tremolo = ornament
                    elif ornament.tag == "trill-mark":
                        trill_mark = True
        if fermata:
            emit("fermata")
        if arpeggiate:
            emit("arpeggiate")
        if articulations:
            for name in ("staccato", "accent", "strong-accent", "tenuto"):
                if name in articulations:
                    emit(name)
        if tremolo is not None:
            type_token = "tremolo:" + tremolo.get("type", "single")
            marks_token = "tremolo:" + _text(tremolo)
            if type_token in _TOKEN_SET and marks_token in _TOKEN_SET:
                emit(type_token)
                emit(marks_token)
        if trill_mark:
            emit("trill-mark")


# ----------------------------------------------------------------------------------------------
# System splitting (the reference's split_part_to_systems, without copying the tree)
# ----------------------------------------------------------------------------------------------


class _TrackedAttributes:
    """The attributes re-stated at each system start: divisions, key, staves and clefs."""

    __slots__ = ("clefs", "divisions", "key", "staves")

    def __init__(self) -> None:
        self.divisions: Any = None
        self.key: Any = None
        self.staves: Any = None
        self.clefs: dict[int, Any] = {}

    def anything(self) -> bool:
        # the reference also counts a time signature as "tracked"; only matters for a header with
        # nothing to re-state, which then emits no tokens either way
        return (
            self.divisions is not None or self.key is not None or self.staves is not None or bool(self.clefs)
        )

    def update(self, divisions: Any, key: Any, staves: Any, clefs: Iterable) -> None:
        if divisions is not None:
            self.divisions = divisions
        if key is not None:
            self.key = key
        if staves is not None:
            try:
                count = int(_text(staves))
            except ValueError:
                count = 0
            if count > 0:
                self.staves = staves
                for number in [n for n in self.clefs if n > count]:
                    del self.clefs[number]
        for clef in clefs:
            with contextlib.suppress(ValueError):
                self.clefs[int(clef.get("number", "1"))] = clef

    def update_from(self, attributes: Any) -> None:
        self.update(
            attributes.find("divisions"),
            attributes.find("key"),
            attributes.find("staves"),
            attributes.iter("clef"),
        )


def _children_by_tag(attributes: Any) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for child in attributes:
        grouped.setdefault(child.tag, []).append(child)
    return grouped


def _first_sorted(elements: list | None) -> Any:
    # the first element after the reference's stable sort by the "number" attribute
    return min(elements, key=_number) if elements else None


def _head_attributes(measure: Any) -> Any:
    for child in measure:
        tag = child.tag
        if tag == "print" or tag == "barline" or not isinstance(tag, str):
            continue
        return child if tag == "attributes" else None
    return None


def linearize_part_systems(part: Any) -> list[list[str]]:
    """One token list per system of a ``<part>`` element (lxml or ``xml.etree``)."""
    systems: list[list[str]] = []
    linearizer = _Linearizer()
    tracked = _TrackedAttributes()
    for measure in part:
        if measure.tag != "measure":
            continue
        print_element = measure.find("print")
        new_system = print_element is not None and (
            print_element.get("new-system") == "yes" or print_element.get("new-page") == "yes"
        )
        head = _head_attributes(measure)
        if new_system or not systems:
            linearizer.tokens = []
            systems.append(linearizer.tokens)
        if new_system:
            linearizer.reset_part()
        if head is not None:
            tracked.update_from(head)
        if new_system and tracked.anything():
            grouped = _children_by_tag(head) if head is not None else {}
            divisions = _first_sorted(grouped.get("divisions")) or tracked.divisions
            key = _first_sorted(grouped.get("key"))
            if key is None:
                key = tracked.key
            time = _first_sorted(grouped.get("time"))
            staves = _first_sorted(grouped.get("staves"))
            if staves is None:
                staves = tracked.staves
            clefs = list(grouped.get("clef", ()))
            present = {_number(clef) for clef in clefs}
            clefs += [tracked.clefs[n] for n in sorted(tracked.clefs) if str(n) not in present]
            clefs.sort(key=_number)
            linearizer.measure(measure, header=(divisions, key, time, staves, clefs), skip=head)
            tracked.update(divisions, key, staves, clefs)
            for attributes in measure.iter("attributes"):
                if attributes is not head:
                    tracked.update_from(attributes)
        else:
            linearizer.measure(measure)
            for attributes in measure.iter("attributes"):
                tracked.update_from(attributes)
    return [tokens for tokens in systems if tokens]


def linearize_part(part: Any) -> list[str]:
    """The LMX tokens of a whole ``<part>`` element (lxml or ``xml.etree``), not split into systems."""
    linearizer = _Linearizer()
    for measure in part:
        if measure.tag == "measure":
            linearizer.measure(measure)
    return linearizer.tokens


# ----------------------------------------------------------------------------------------------
# Documents and files
# ----------------------------------------------------------------------------------------------


def _timewise_to_partwise(root: Any) -> list:
    """Regroup a score-timewise document's measures by part (new elements; ``root`` is unchanged)."""

    from lxml import etree

    parts: dict[str, Any] = {}
    for measure in root.iter("measure"):
        for part in measure.iter("part"):
            part_id = part.get("id", "")
            if part_id not in parts:
                parts[part_id] = etree.Element("part", id=part_id)
            new_measure = etree.SubElement(parts[part_id], "measure", dict(measure.attrib))
            for child in part:
                new_measure.append(copy.deepcopy(child))
    return list(parts.values())


def _parts(root: Any, name: str | Path) -> list:
    tag = root.tag if isinstance(root.tag, str) else ""
    if tag == "part":
        return [root]
    if tag == "score-partwise":
        return [part for part in root if part.tag == "part"]
    if tag == "score-timewise":
        return _timewise_to_partwise(root)
    raise InputError(f"not a MusicXML score (root element <{tag}>)", name)


def select_part(root: Any, part_index: int | None = None, name: str | Path = "<xml>") -> Any:
    """The ``<part>`` element to linearize.

    ``part_index`` counts the ``<part>`` elements from 0. Without it, the part the reference's
    ``linearize`` command takes (see :func:`_piano_part_id`): the piano, else the first part.
    """
    parts = _parts(root, name)
    if not parts:
        raise InputError("the score has no <part>", name)
    if part_index is not None:
        if not -len(parts) <= part_index < len(parts):
            raise InputError(f"part index {part_index} out of range (the score has {len(parts)} parts)", name)
        return parts[part_index]
    part_list = root.find("part-list")
    piano_id = _piano_part_id(part_list) if part_list is not None else None
    pianos = [part for part in parts if piano_id is not None and part.get("id") == piano_id]
    return pianos[0] if len(pianos) == 1 else parts[0]


def _piano_part_id(part_list: Any) -> str | None:
    """The piano's part id as the reference finds it, or None where its lookup finds none or fails.

    In order of the ``<score-part>`` elements: the first whose (first) instrument-name is exactly
    "Piano", "Grand Piano", "Acoustic Grand Piano", "Harpsichord", "Pianoforte" or "Piano (2)", or
    whose part-name is exactly "Pianoforte". A score-part without instrument-name (or, when that is
    no piano, without part-name) ends the search: the reference's lookup raises there, and its
    ``linearize`` command then takes the first part.
    """
    for score_part in part_list.findall("score-part"):
        instrument = score_part.find("score-instrument/instrument-name")
        if instrument is None:
            return None
        if instrument.text in _PIANO_INSTRUMENT_NAMES:
            return score_part.get("id")
        part_name = score_part.find("part-name")
        if part_name is None:
            return None
        if part_name.text in _PIANO_PART_NAMES:
            return score_part.get("id")
    return None


def part_count(root: Any, name: str | Path = "<xml>") -> int:
    """How many ``<part>`` elements the score has."""
    return len(_parts(root, name))


def linearize_xml(
    root: Any, part_index: int | None = None, by_system: bool = False, name: str | Path = "<xml>"
) -> list[str] | list[list[str]]:
    """Linearize an already-parsed document (lxml or ``xml.etree`` root, or a ``<part>`` element).

    Comments should have been dropped at parse time (:mod:`umt.utils.safe_xml` does). Returns the
    token list of the part, or one token list per system when ``by_system``.
    """
    part = select_part(root, part_index, name)
    return linearize_part_systems(part) if by_system else linearize_part(part)


def linearize_string(
    data: str | bytes, part_index: int | None = None, by_system: bool = False, name: str = "<string>"
) -> list[str] | list[list[str]]:
    """Linearize MusicXML given in memory (XML text, or ``.mxl`` archive bytes); parsed safely."""

    return linearize_xml(parse_musicxml(data, name), part_index, by_system, name)


def linearize(path: str | Path, part_index: int | None = None) -> list[str]:
    """The LMX tokens of one part of a ``.musicxml`` / ``.xml`` / ``.mxl`` file (the whole part).

    Raises :class:`~umt.errors.InputError` for an unreadable, corrupt or hostile file.
    """

    return linearize_xml(read_musicxml(path), part_index, False, path)  # type: ignore[return-value]


def linearize_systems(path: str | Path, part_index: int | None = None) -> list[list[str]]:
    """Like :func:`linearize`, split into systems (see the module docstring)."""

    return linearize_xml(read_musicxml(path), part_index, True, path)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# LMX text files
# ----------------------------------------------------------------------------------------------

_HEADER_LINE = re.compile(r"^[A-Za-z][\w-]*: ")


def parse_lmx_text(text: str) -> list[list[str]]:
    """Systems of an LMX text: the reference's ``.lmx`` format (``key: value`` header lines ended
    by ``---``, then tokens over any number of lines, ``---`` between systems), or plain
    whitespace-separated tokens with one system per line (as ``umt lmx linearize --by-system``
    prints them; a whole part on one line is one system). ``#`` starts a comment in both. Empty
    systems are kept only if they are the sole system."""
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    first = next((line for line in lines if line.strip()), "")
    systems: list[list[str]] = [[]]
    if _HEADER_LINE.match(first.strip()) and any(line.strip() == "---" for line in lines):
        start = next(i for i, line in enumerate(lines) if line.strip() == "---") + 1
        for line in lines[start:]:
            if line.strip() == "---":
                systems.append([])
            else:
                systems[-1].extend(line.split())
    else:
        systems += [line.split() for line in lines]
    non_empty = [system for system in systems if system]
    return non_empty or [[]]


def format_lmx(systems: Sequence[Sequence[str]], flavor: str = "core") -> str:
    """The reference's ``.lmx`` file format: header, then one line per measure, ``---`` between systems."""
    out = ["version: 1.0", f"flavor: {flavor}", "---"]
    for index, system in enumerate(systems):
        if index:
            out.append("---")
        line: list[str] = []
        for token in system:
            if token == "measure" and line:
                out.append(" ".join(line))
                line = []
            line.append(token)
        if line:
            out.append(" ".join(line))
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# Delinearizer
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delinearized:
    """Result of :func:`delinearize`.

    musicxml: a score-partwise MusicXML document (one part "P1", "Piano") as text.
    dropped: tokens left out (unknown, before/after anything they could attach to, duplicated or
        not fitting the note they belong to).
    repaired: places where the sequence was changed to make valid MusicXML (a note without pitch or
        rest made a rest, a chord flag with nothing to attach to removed, a backup past the
        measure start shortened, a time signature missing beats completed, ...).
    problems: one short message per dropped / repaired item, in order.
    """

    musicxml: str
    dropped: int
    repaired: int
    problems: tuple[str, ...] = field(default=(), repr=False)


_ATTRIBUTE_ROOTS = frozenset({"time", *KEY_TOKENS, *CLEF_TOKENS})
_NOTE_ROOTS = frozenset(NOTE_ROOT_TOKENS)
_ROOTS = _ATTRIBUTE_ROOTS | _NOTE_ROOTS
_PREFIXES = frozenset(NOTE_PREFIX_TOKENS)
_SUFFIXES = frozenset({*NOTE_SUFFIX_TOKENS, *BEATS_TOKENS, *BEAT_TYPE_TOKENS})
_VOICE_SET = frozenset(VOICE_TOKENS)
_STAFF_SET = frozenset(STAFF_TOKENS)
_STEM_SET = frozenset(STEM_TOKENS)
_BEAM_SET = frozenset(BEAM_TOKENS)
_TIME_MODIFICATION_SET = frozenset(TIME_MODIFICATION_TOKENS)
_TREMOLO_TYPE_SET = frozenset(TREMOLO_TYPE_TOKENS)
_TREMOLO_MARKS_SET = frozenset(TREMOLO_MARKS_TOKENS)
_BEATS_SET = frozenset(BEATS_TOKENS)
_BEAT_TYPE_SET = frozenset(BEAT_TYPE_TOKENS)

# note suffix slot for each token: single slots keep the first token, list slots keep all
_NOTE_SUFFIX_SLOT: dict[str, str] = {
    **dict.fromkeys(TIME_MODIFICATION_TOKENS, "time_modification"),
    **dict.fromkeys(ACCIDENTAL_TOKENS, "accidental"),
    **dict.fromkeys(STEM_TOKENS, "stem"),
    **dict.fromkeys(STAFF_TOKENS, "staff"),
    "tied:start": "tied_start",
    "tied:stop": "tied_stop",
    "fermata": "fermata",
    "arpeggiate": "arpeggiate",
    "staccato": "staccato",
    "accent": "accent",
    "strong-accent": "strong_accent",
    "tenuto": "tenuto",
    "trill-mark": "trill_mark",
    **dict.fromkeys(TREMOLO_TYPE_TOKENS, "tremolo_type"),
    **dict.fromkeys(TREMOLO_MARKS_TOKENS, "tremolo_marks"),
}
# tuplet tokens may repeat (nested tuplets); they share the ordered list with the ties
_NOTE_LIST_SLOTS = {
    "dot": "dots",
    **dict.fromkeys(BEAM_TOKENS, "beams"),
    "slur:start": "slurs",
    "slur:stop": "slurs",
    "tuplet:start": "order",
    "tuplet:stop": "order",
}
_PREFIX_SLOT: dict[str, str] = {
    "print-object:no": "print_object",
    "grace": "grace",
    "grace:slash": "grace_slash",
    "chord": "chord",
    "rest": "rest",
    **dict.fromkeys(PITCH_TOKENS, "pitch"),
    **dict.fromkeys(VOICE_TOKENS, "voice"),
    "backup": "backup",
    "forward": "forward",
}
_ATTRIBUTE_ORDER = {"divisions": 0, "key": 1, "time": 2, "staves": 3, "clef": 4}
_SHARP_ORDER = "FCGDAEB"
_ALTER = {
    "sharp": 1,
    "flat": -1,
    "natural": 0,
    "double-sharp": 2,
    "flat-flat": -2,
    "natural-sharp": 1,
    "natural-flat": -1,
}


@dataclass
class _Tree:
    root: str
    prefixes: list[str]
    suffixes: list[str]


@dataclass
class _NoteRecord:
    pitch: Any  # <pitch> element
    visual: tuple[str, str, str]  # staff, step, octave
    onset: Fraction
    key: int
    accidental: str | None
    tie_start: bool
    tie_stop: bool
    alter: int = 0


class _Delinearizer:
    def __init__(self) -> None:
        from lxml import etree

        self.etree = etree
        self.part = etree.Element("part", id="P1")
        self.dropped = 0
        self.repaired = 0
        self.problems: list[str] = []
        self.durations: list[tuple[Any, Fraction]] = []  # (<duration>, quarters)
        self.measure_duration: Fraction | None = None
        self.key = 0
        self.open_slurs = 0
        self.max_staff = 0
        self.staff_suffix_on_clef = False
        self.previous_tie_starts: dict = {}
        # the last <backup>/<forward> written and the shortest note type it was made of
        self.last_run: tuple[Any, Fraction | None] = (None, None)

    # -- bookkeeping ----------------------------------------------------------------------------

    def drop(self, token: str, why: str, count: int = 1) -> None:
        self.dropped += count
        self.problems.append(f"dropped {token!r}: {why}")

    def repair(self, what: str) -> None:
        self.repaired += 1
        self.problems.append(f"repaired: {what}")

    def sub(self, parent: Any, tag: str, text: str | None = None, **attrib: str) -> Any:
        element = self.etree.SubElement(parent, tag, attrib)
        if text is not None:
            element.text = text
        return element

    # -- driver ---------------------------------------------------------------------------------

    def run(self, systems: Sequence[Sequence[str]]) -> Delinearized:
        measures: list[list[str]] = []
        system_starts: set[int] = set()  # index of the first measure of each system after the first
        for system in systems:
            first = len(measures)
            for token in system:
                if token not in _TOKEN_SET:
                    self.drop(token, "not an LMX token")
                    continue
                if token == "measure":
                    measures.append([])
                else:
                    if len(measures) == first:
                        self.repair("tokens before the first 'measure': a measure was opened for them")
                        measures.append([])
                    measures[-1].append(token)
            if 0 < first < len(measures):
                system_starts.add(first)
        for index, measure_tokens in enumerate(measures):
            self.measure(measure_tokens, index + 1, new_system=index in system_starts)
        if len(self.part) == 0:
            self.etree.SubElement(self.part, "measure", number="1")
        self.drop_restated_attributes(system_starts)
        self.finish()
        return Delinearized(self.serialize(), self.dropped, self.repaired, tuple(self.problems))

    def build_trees(self, tokens: list[str]) -> list[_Tree]:
        trees: list[_Tree] = []
        prefixes: list[str] = []
        for token in tokens:
            if token in _PREFIXES:
                prefixes.append(token)
            elif token in _SUFFIXES:
                if trees:
                    trees[-1].suffixes.append(token)
                else:
                    self.drop(token, "suffix token with no note or attribute before it")
            else:  # a root
                trees.append(_Tree(token, prefixes, []))
                prefixes = []
        for token in prefixes:
            self.drop(token, "prefix token with no note after it")
        return trees

    def measure(self, tokens: list[str], number: int, new_system: bool = False) -> None:
        measure = self.sub(self.part, "measure", number=str(number))
        if new_system:
            self.sub(measure, "print", **{"new-system": "yes"})
        state = {"stem": None, "staff": None, "voice": None, "beams": 0, "grace_beams": 0}
        onset = Fraction(0)
        last_note_onset: Fraction | None = None
        attributes = None
        last_notelike = None  # previous <backup>/<forward>/<note> element, for merging and chords
        records: list[_NoteRecord] = []
        reached = Fraction(0)  # the furthest onset reached in the measure
        for tree in self.build_trees(tokens):
            root = tree.root
            if root in _ATTRIBUTE_ROOTS:
                attributes = self.attributes(tree, measure, attributes)
                last_notelike = None
                continue
            attributes = None
            kind = (
                "backup" if "backup" in tree.prefixes else "forward" if "forward" in tree.prefixes else None
            )
            if kind is not None:
                element, onset = self.backup_forward(tree, kind, measure, last_notelike, onset, state)
                last_notelike = element
                reached = max(reached, onset)
                continue
            note, duration, record = self.note(tree, measure, last_notelike, state, onset, last_note_onset)
            if note is None:
                continue
            is_chord = note.find("chord") is not None
            note_onset = last_note_onset if is_chord and last_note_onset is not None else onset
            if record is not None:
                record.onset = note_onset
                records.append(record)
            if not is_chord:
                last_note_onset = onset
                onset += duration
            last_notelike = note
            reached = max(reached, onset)
        if reached == 0 and measure.find("note") is not None and self.measure_duration is None:
            # only grace notes and no time signature: a zero-length measure that music21 cannot read
            self.repair("measure with only grace notes given a forward of 4 quarters")
            forward = self.sub(measure, "forward")
            self.durations.append((self.sub(forward, "duration"), Fraction(4)))
        self.infer_alterations(records)

    # -- attributes -----------------------------------------------------------------------------

    def attributes(self, tree: _Tree, measure: Any, attributes: Any) -> Any:
        root = tree.root
        for token in tree.prefixes:
            self.drop(token, f"not a prefix of {root!r}")
        if root in KEY_TOKENS:
            tag, number = "key", "1"
        elif root == "time":
            tag, number = "time", "1"
        else:
            tag = "clef"
            staff = next((t for t in tree.suffixes if t in _STAFF_SET), None)
            number = staff.split(":")[1] if staff else "1"
        # a second key / time / same-staff clef in one group starts a new <attributes> element
        if attributes is not None:
            for existing in attributes:
                if existing.tag == tag and existing.get("number", "1") == number:
                    attributes = None
                    break
        if attributes is None:
            attributes = self.sub(measure, "attributes")
        if tag == "key":
            for token in tree.suffixes:
                self.drop(token, f"not a suffix of {root!r}")
            element = self.etree.Element("key")
            self.sub(element, "fifths", root.rsplit(":", 1)[1])
            self.key = int(root.rsplit(":", 1)[1])
        elif tag == "time":
            beats = beat_type = None
            for token in tree.suffixes:
                if token in _BEATS_SET and beats is None:
                    beats = token.split(":")[1]
                elif token in _BEAT_TYPE_SET and beat_type is None:
                    beat_type = token.split(":")[1]
                else:
                    self.drop(token, "not a suffix of 'time'")
            if beats is None:
                beats = "4"
                self.repair("time signature without beats: 4 assumed")
            if beat_type is None:
                beat_type = "4"
                self.repair("time signature without beat-type: 4 assumed")
            element = self.etree.Element("time")
            self.sub(element, "beats", beats)
            self.sub(element, "beat-type", beat_type)
            self.measure_duration = Fraction(4 * int(beats), int(beat_type))
        else:
            staff_seen = False
            for token in tree.suffixes:
                if token in _STAFF_SET and not staff_seen:
                    staff_seen = True
                else:
                    self.drop(token, f"not a suffix of {root!r}")
            element = self.etree.Element("clef")
            if staff_seen:
                element.set("number", number)
                self.staff_suffix_on_clef = True
                self.max_staff = max(self.max_staff, int(number))
            sign_line = root.split(":")[1]
            self.sub(element, "sign", sign_line[0])
            self.sub(element, "line", sign_line[1:])
        attributes.append(element)
        _sort_attributes(attributes)
        return attributes

    # -- backup / forward -----------------------------------------------------------------------

    def backup_forward(
        self, tree: _Tree, kind: str, measure: Any, last_notelike: Any, onset: Fraction, state: dict
    ) -> tuple[Any, Fraction]:
        for token in tree.prefixes:
            if token != kind:
                self.drop(token, f"not a prefix of a {kind}")
        time_modification = None
        for token in tree.suffixes:
            if token in _TIME_MODIFICATION_SET and time_modification is None:
                time_modification = token
            else:
                self.drop(token, f"not a suffix of a {kind}")
        state["beams"] = state["grace_beams"] = 0
        if kind == "backup":
            state["stem"] = state["staff"] = state["voice"] = None
        if tree.root == "rest:measure":
            self.drop(tree.root, f"'rest:measure' cannot be the length of a {kind}")
            return last_notelike, onset
        duration = _duration(tree.root, time_modification, 0)
        if kind == "backup":
            if duration > onset:
                if onset == 0:
                    self.repair("backup before the start of the measure left out")
                    return last_notelike, onset
                self.repair("backup past the start of the measure shortened")
                duration = onset
            new_onset = onset - duration
        else:
            new_onset = onset + duration
        piece = NOTE_TYPE_TO_QUARTERS[tree.root] if time_modification is None else None
        last_element, last_piece = self.last_run
        if (
            last_notelike is not None
            and last_notelike is last_element
            and last_notelike.tag == kind
            and piece is not None
            and last_piece is not None
            and piece < last_piece
        ):
            self.last_run = (last_notelike, piece)
            duration_element = last_notelike.find("duration")
            merged = next(q for e, q in self.durations if e is duration_element) + duration
            self.durations = [(e, merged if e is duration_element else q) for e, q in self.durations]
            return last_notelike, new_onset
        element = self.sub(measure, kind)
        self.durations.append((self.sub(element, "duration"), duration))
        self.last_run = (element, piece)
        return element, new_onset

    # -- notes ----------------------------------------------------------------------------------

    def note(
        self,
        tree: _Tree,
        measure: Any,
        last_notelike: Any,
        state: dict,
        onset: Fraction,
        last_note_onset: Fraction | None,
    ) -> tuple[Any, Fraction, _NoteRecord | None]:
        prefix, suffix, lists = self._note_slots(tree)
        shape = self._note_shape(tree.root, prefix, suffix, last_notelike)
        note = self._note_head(measure, prefix, shape)
        time_modification = suffix.get("time_modification")
        duration = Fraction(0)
        if not shape.is_grace:
            if shape.is_measure_rest:
                duration = self.measure_duration if self.measure_duration is not None else Fraction(4)
            else:
                duration = _duration(shape.note_type, time_modification, len(lists["dots"]))
            self.durations.append((self.sub(note, "duration"), duration))
        order = lists["order"]
        for token in order:
            if token.startswith("tied:"):
                self.sub(note, "tie", type=token[5:])
        self._note_body(note, prefix, suffix, lists, state, shape)
        self.notations(note, suffix, order, lists["slurs"])
        if shape.is_rest:
            return note, duration, None
        pitch_token = prefix["pitch"]
        record = _NoteRecord(
            pitch=note.find("pitch"),
            visual=(state["staff"] or "1", pitch_token[0], pitch_token[1:]),
            onset=onset,
            key=self.key,
            accidental=suffix.get("accidental"),
            tie_start="tied:start" in order,
            tie_stop="tied:stop" in order,
        )
        return note, duration, record

    def _note_slots(self, tree: _Tree) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
        """The note's prefix and suffix tokens by slot (a second token for a slot is dropped), and
        its token lists: ``dots``, ``beams``, ``slurs`` and ``order`` (ties and tuplets in order)."""
        root = tree.root
        prefix: dict[str, str] = {}
        # like the reference, the prefix closest to the root wins
        for token in reversed(tree.prefixes):
            slot = _PREFIX_SLOT[token]
            if slot in prefix:
                self.drop(token, f"second {slot} prefix of {root!r}")
            else:
                prefix[slot] = token
        suffix: dict[str, str] = {}
        lists: dict[str, list[str]] = {"dots": [], "beams": [], "slurs": [], "order": []}
        for token in tree.suffixes:
            slot = _NOTE_SUFFIX_SLOT.get(token)
            if slot is None:
                list_slot = _NOTE_LIST_SLOTS.get(token)
                if list_slot is None:
                    self.drop(token, f"not a suffix of {root!r}")
                else:
                    lists[list_slot].append(token)
            elif slot in suffix:
                self.drop(token, f"second {slot} suffix of {root!r}")
            else:
                suffix[slot] = token
                if token.startswith("tied:"):
                    lists["order"].append(token)
        return prefix, suffix, lists

    def _note_shape(self, root: str, prefix: dict, suffix: dict, last_notelike: Any) -> _NoteShape:
        """What the note is (rest, grace, chord member, measure rest), with contradictions repaired."""
        is_measure_rest = root == "rest:measure"
        is_grace = "grace" in prefix
        if "grace_slash" in prefix and not is_grace:
            self.drop(prefix.pop("grace_slash"), "'grace:slash' without 'grace'")
        is_rest = "rest" in prefix
        if is_rest and "pitch" in prefix:
            self.drop(prefix.pop("pitch"), "a rest has no pitch")
        if not is_rest and "pitch" not in prefix:
            is_rest = True
            self.repair(f"note {root!r} without pitch or 'rest' made a rest")
        if is_grace and is_measure_rest:
            self.drop(prefix.pop("grace"), "a measure rest cannot be a grace note")
            is_grace = False
        is_chord = "chord" in prefix
        if is_chord and (is_rest or last_notelike is None or last_notelike.tag != "note"):
            self.repair("chord flag with no note to attach to removed")
            is_chord = False
        if is_rest and "accidental" in suffix:
            self.drop(suffix.pop("accidental"), "a rest has no accidental")
        note_type = None if is_measure_rest else root
        return _NoteShape(note_type, is_rest, is_grace, is_chord, is_measure_rest)

    def _note_head(self, measure: Any, prefix: dict, shape: _NoteShape) -> Any:
        """The ``<note>`` element with its print-object, grace, chord and rest or pitch."""
        note = self.sub(measure, "note")
        if "print_object" in prefix:
            note.set("print-object", "no")
        if shape.is_grace:
            grace = self.sub(note, "grace")
            if "grace_slash" in prefix:
                grace.set("slash", "yes")
        if shape.is_chord:
            self.sub(note, "chord")
        if shape.is_rest:
            rest = self.sub(note, "rest")
            if shape.is_measure_rest:
                rest.set("measure", "yes")
        else:
            pitch_token = prefix["pitch"]
            pitch = self.sub(note, "pitch")
            self.sub(pitch, "step", pitch_token[0])
            self.sub(pitch, "octave", pitch_token[1:])
        return note

    def _note_body(
        self, note: Any, prefix: dict, suffix: dict, lists: dict, state: dict, shape: _NoteShape
    ) -> None:
        """Voice, type, dots, accidental, time modification, stem, staff and beams, in MusicXML's
        order; voice, stem and staff carry over from the previous note (``state``)."""
        if "voice" in prefix:
            state["voice"] = prefix["voice"].split(":")[1]
        if state["voice"] is not None:
            self.sub(note, "voice", state["voice"])
        if shape.note_type is not None:
            self.sub(note, "type", shape.note_type)
        for _ in lists["dots"]:
            self.sub(note, "dot")
        if "accidental" in suffix:
            self.sub(note, "accidental", suffix["accidental"])
        time_modification = suffix.get("time_modification")
        if time_modification is not None:
            actual, normal = time_modification.split("in")
            modification = self.sub(note, "time-modification")
            self.sub(modification, "actual-notes", actual)
            self.sub(modification, "normal-notes", normal)
        stem_token = suffix.get("stem")
        if stem_token is not None:  # explicit: always written
            state["stem"] = stem_token.split(":")[1]
            self.sub(note, "stem", state["stem"])
        elif state["stem"] is not None and not shape.is_rest and shape.note_type != "whole":
            self.sub(note, "stem", state["stem"])
        if "staff" in suffix:
            state["staff"] = suffix["staff"].split(":")[1]
        if state["staff"] is not None:
            self.sub(note, "staff", state["staff"])
            self.max_staff = max(self.max_staff, int(state["staff"]))
        beams = lists["beams"]
        if not shape.is_chord and not shape.is_rest:
            count_key = "grace_beams" if shape.is_grace else "beams"
            state[count_key] = self.beams(note, beams, state[count_key])
        else:
            for number, token in enumerate(beams, start=1):
                self.sub(note, "beam", token.split(":")[1].replace("-", " "), number=str(number))

    def beams(self, note: Any, tokens: list[str], open_count: int) -> int:
        begins = sum(1 for t in tokens if t == "beam:begin")
        ends = sum(1 for t in tokens if t == "beam:end")
        delta = begins - ends
        if delta < -open_count:
            # more ends than open beams (a beam begun in another measure or voice): not an error in
            # real scores, so adjusted silently like the reference does
            open_count = -delta
        if delta >= 0:
            for number in range(1, open_count + 1):
                self.sub(note, "beam", "continue", number=str(number))
            for _ in range(delta):
                open_count += 1
                self.sub(note, "beam", "begin", number=str(open_count))
            emitted = open_count
        else:
            emitted = open_count
            open_count += delta
            for number in range(1, open_count + 1):
                self.sub(note, "beam", "continue", number=str(number))
            for index in range(-delta):
                self.sub(note, "beam", "end", number=str(open_count + index + 1))
        hooks = [t for t in tokens if "hook" in t]
        for index, token in enumerate(hooks):
            self.sub(note, "beam", token.split(":")[1].replace("-", " "), number=str(emitted + index + 1))
        return max(open_count, 0)

    def notations(self, note: Any, suffix: dict, order: list[str], slurs: list[str]) -> None:
        articulations = [name for name in ("accent", "strong_accent", "tenuto", "staccato") if name in suffix]
        has_ornaments = "tremolo_type" in suffix or "trill_mark" in suffix
        if "tremolo_marks" in suffix and "tremolo_type" not in suffix:
            self.drop(suffix.pop("tremolo_marks"), "tremolo marks without a tremolo type")
        if not (
            order or slurs or articulations or has_ornaments or "fermata" in suffix or "arpeggiate" in suffix
        ):
            return
        notations = self.sub(note, "notations")
        repeated = {token for token in order if order.count(token) > 1}
        counters: dict[str, int] = {}
        for token in order:
            kind, value = token.split(":")
            element = self.sub(notations, kind, type=value)
            if token in repeated:  # nested tuplets need distinct numbers
                counters[token] = counters.get(token, 0) + 1
                element.set("number", str(counters[token]))
        # slur numbers: stops close the most recent open slur, starts open a new one
        numbers: dict[int, str] = {}
        for index, token in enumerate(slurs):
            if token == "slur:stop" and self.open_slurs > 0:
                numbers[index] = str(self.open_slurs)
                self.open_slurs -= 1
        for index, token in enumerate(slurs):
            if token == "slur:start":
                self.open_slurs += 1
                numbers[index] = str(self.open_slurs)
        for index, token in enumerate(slurs):
            slur = self.sub(notations, "slur", type=token.split(":")[1])
            if index in numbers:
                slur.set("number", numbers[index])
        if "fermata" in suffix:
            self.sub(notations, "fermata")
        if articulations:
            parent = self.sub(notations, "articulations")
            for name in articulations:
                self.sub(parent, name.replace("_", "-"))
        if has_ornaments:
            ornaments = self.sub(notations, "ornaments")
            if "trill_mark" in suffix:
                self.sub(ornaments, "trill-mark")
            if "tremolo_type" in suffix:
                marks = suffix["tremolo_marks"].split(":")[1] if "tremolo_marks" in suffix else "3"
                self.sub(ornaments, "tremolo", marks, type=suffix["tremolo_type"].split(":")[1])
        if "arpeggiate" in suffix:
            self.sub(notations, "arpeggiate")

    # -- pitch alterations ----------------------------------------------------------------------

    def infer_alterations(self, records: list[_NoteRecord]) -> None:
        accidentals: dict[tuple, list[tuple[Fraction, str]]] = {}
        for record in records:
            if record.accidental is not None:
                accidentals.setdefault(record.visual, []).append((record.onset, record.accidental))
        for found in accidentals.values():
            found.sort(key=lambda item: item[0])
        tie_starts: dict[tuple, _NoteRecord] = {}
        for record in records:
            carried = [acc for onset, acc in accidentals.get(record.visual, ()) if onset <= record.onset]
            step = record.visual[1]
            if carried:
                alter = _ALTER[carried[-1]]
            elif record.key > 0 and step in _SHARP_ORDER[: record.key]:
                alter = 1
            elif record.key < 0 and step in _SHARP_ORDER[::-1][: -record.key]:
                alter = -1
            else:
                alter = 0
            if record.tie_stop:
                start = tie_starts.pop(record.visual, None) or self.previous_tie_starts.pop(
                    record.visual, None
                )
                if start is not None:  # a tied note keeps the alteration of its start
                    alter = start.alter
            record.alter = alter
            if record.tie_start:
                tie_starts[record.visual] = record
            if alter:
                alter_element = self.etree.Element("alter")
                alter_element.text = str(alter)
                record.pitch.insert(1, alter_element)
        self.previous_tie_starts = tie_starts

    # -- finishing ------------------------------------------------------------------------------

    def drop_restated_attributes(self, system_starts: set[int]) -> None:
        """Leave out of each later system's first measure the key and clefs that only repeat the
        ones in force: the linearizer re-states them at every system start anyway, so linearizing
        by system gives the same tokens, and the whole part linearizes as if it had never been split."""
        tostring = self.etree.tostring
        key: bytes | None = None
        clefs: dict[str, bytes] = {}
        for index, measure in enumerate(self.part):
            head = None
            if index in system_starts and len(measure) > 1 and measure[1].tag == "attributes":
                head = measure[1]  # measure[0] is the <print new-system="yes"/>
                for element in list(head):
                    serialized = tostring(element, with_tail=False)
                    if (element.tag == "key" and serialized == key) or (
                        element.tag == "clef" and serialized == clefs.get(element.get("number", "1"))
                    ):
                        head.remove(element)
            for attributes in measure.iter("attributes"):
                for element in attributes:
                    if element.tag == "key":
                        key = tostring(element, with_tail=False)
                    elif element.tag == "clef":
                        clefs[element.get("number", "1")] = tostring(element, with_tail=False)
            if head is not None and len(head) == 0:
                measure.remove(head)

    def finish(self) -> None:
        first_measure = self.part[0]
        head = first_measure[0] if len(first_measure) and first_measure[0].tag == "attributes" else None
        if head is None:
            head = self.etree.Element("attributes")
            first_measure.insert(0, head)
        denominators = {quarters.denominator for _, quarters in self.durations}
        divisions = 1
        for denominator in denominators:
            divisions = divisions * denominator // math.gcd(divisions, denominator)
        self.sub(head, "divisions", str(divisions))
        if self.staff_suffix_on_clef or self.max_staff > 1:
            self.sub(head, "staves", str(max(self.max_staff, 1)))
        _sort_attributes(head)
        for element, quarters in self.durations:
            element.text = str(int(quarters * divisions))

    def serialize(self) -> str:
        etree = self.etree
        score = etree.Element("score-partwise", version="4.0")
        part_list = etree.SubElement(score, "part-list")
        score_part = etree.SubElement(part_list, "score-part", id="P1")
        etree.SubElement(score_part, "part-name").text = "Piano"
        score.append(self.part)
        return etree.tostring(score, xml_declaration=True, encoding="UTF-8", pretty_print=True).decode(
            "utf-8"
        )


def _duration(note_type: str, time_modification: str | None, dots: int) -> Fraction:
    quarters = NOTE_TYPE_TO_QUARTERS[note_type]
    dot_value = quarters / 2
    for _ in range(dots):
        quarters += dot_value
        dot_value /= 2
    if time_modification is not None:
        actual, normal = time_modification.split("in")
        quarters = quarters * Fraction(int(normal), int(actual))
    return quarters


def _sort_attributes(attributes: Any) -> None:
    children = sorted(attributes, key=lambda e: (_ATTRIBUTE_ORDER.get(e.tag, 9), e.get("number", "1")))
    attributes[:] = children


def delinearize(tokens: Sequence[str] | Sequence[Sequence[str]] | str) -> Delinearized:
    """MusicXML for LMX tokens: one token list, a list of systems (token lists), or text in
    :func:`parse_lmx_text`'s formats.

    Several systems become one part with a ``<print new-system="yes"/>`` at the start of each
    system after the first, so that :func:`linearize_systems` splits it where it was split; the
    clefs and key a system start only re-states are left out (see
    ``_Delinearizer.drop_restated_attributes``). Never raises on malformed input: see
    :class:`Delinearized` for the counts of dropped and repaired tokens."""
    if isinstance(tokens, str):
        systems: Sequence[Sequence[str]] = parse_lmx_text(tokens)
    elif tokens and not isinstance(tokens[0], str):
        systems = tokens  # type: ignore[assignment]
    else:
        systems = [tokens]  # type: ignore[list-item]
    return _Delinearizer().run(systems)


# Children of <note> the linearizer reads once (the first one counts, as in the reference).
_NOTE_FIRST_CHILDREN = frozenset(
    {"pitch", "voice", "type", "stem", "staff", "accidental", "rest", "time-modification", "grace"}
)


def _note_children(note: Any) -> tuple[dict[str, Any], list, list, int, bool]:
    """``(first child by tag, beams, notations, dots, is_chord)`` of a ``<note>`` element."""
    first: dict[str, Any] = {}
    beams, notations = [], []
    dots, is_chord = 0, False
    for child in note:
        tag = child.tag
        if tag in _NOTE_FIRST_CHILDREN:
            if tag not in first:
                first[tag] = child
        elif tag == "beam":
            beams.append(child)
        elif tag == "notations":
            notations.append(child)
        elif tag == "dot":
            dots += 1
        elif tag == "chord":
            is_chord = True
    return first, beams, notations, dots, is_chord


@dataclass(frozen=True)
class _NoteShape:
    """What a delinearized note is, once contradictions in its tokens are repaired."""

    note_type: str | None
    """Its ``<type>`` (``None`` for a whole-measure rest)."""
    is_rest: bool
    is_grace: bool
    is_chord: bool
    is_measure_rest: bool
