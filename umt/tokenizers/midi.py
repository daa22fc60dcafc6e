"""MIDI event tokens in the MT3 / YourMT3 style, on the unified vocabulary's ``midi/*`` ranges.

A piece is a list of :class:`Note` s. It is cut into segments of ``segment_seconds`` (20 s by
default) and each segment becomes one id sequence::

    [tie section] tie [body] eos

Time is quantized to 10 ms *ticks* (:data:`TICKS_PER_SECOND` = 100). Token kinds:

``shift:N``     (range ``midi/shift``, ``0..midi_max_shift``) — the time of the following events,
                ABSOLUTE in ticks from the segment start (not a delta). Emitted only when the
                time moves forward; events at tick 0 of a segment need no shift.
``program:P``   (``midi/program``) — the instrument (General MIDI program 0..127) of the following
                pitched events. A state token: emitted only when it changes.
``velocity:V``  (``midi/velocity``) — 1 = note-on, 0 = note-off. A state token: emitted only when it
                changes (reset to "unknown" after the tie section of every segment).
``pitch:K``     (``midi/pitch``) — a pitched note-on or note-off (per the current velocity) of key
                ``K`` on the current program.
``drum:K``      (``midi/drum``) — a drum onset (drums have no offsets and no program); it follows
                ``velocity:1``.
``tie``         (``midi/tie``) — closes the tie section.
``eos``         (``vocab.eos("midi")``) — ends the segment.

**Tie section.** Every segment opens with the pitched notes still sounding at its start (onset
before the segment, offset at or after it), as ``program:P pitch:K`` pairs sorted by
``(program, pitch)``, ``program`` emitted only when it changes, then ``tie`` (always present, even
when the section is empty). A note crossing a border is therefore written once (onset in one
segment, offset in a later one) and each segment it spans lists it in its tie section; decoding
continues it instead of starting a new note.

**Event order within one time step** (YourMT3's ``note_event2event``): events are sorted by
``(tick, is_drum, program, velocity, pitch)`` — pitched events before drums, programs ascending,
within a program note-offs (velocity 0) before note-ons (velocity 1), pitches ascending. So an
offset and a re-onset of the same key at the same tick read "off, then on". (MT3's
``note_sequences.py`` instead puts all offsets of a step before all onsets; YourMT3 is followed.)

**Normalization** (what a round trip reproduces exactly, see :func:`normalize_notes`): times are
rounded to ticks; a pitched note shorter than one tick (zero length) is lengthened to one tick;
drums decode with program 0 and a 10 ms length; MIDI velocities decode as
:data:`DEFAULT_VELOCITY`. Overlapping notes of the same program and key are kept (a multiset of
active notes, not a set), but the tokens cannot say which onset an offset ends: the decoder pairs
first-in-first-out, so nested unisons (``A = [0, 2]``, ``B = [0.5, 1]``) come back as
``[0, 1]`` and ``[0.5, 2]`` — same onsets, same offsets.

**Decoding** is tolerant (:class:`MidiDecoder`): malformed model output never raises; every dropped
or repaired token/note is counted by kind in ``problems``. ``strict=True`` raises ``ValueError`` on
the first problem instead (used to check our own encoder). Segments are stitched by start time, so
the decoder also assembles consecutive 20 s windows of a long audio transcription.
"""

from __future__ import annotations

import io
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from umt.errors import InputError
from umt.modalities.windows import check_window_seconds
from umt.utils.io import atomic_write_bytes
from umt.vocab import PAD_ID, Vocabulary

TICKS_PER_SECOND = 100
"""MIDI event time resolution: 10 ms ticks."""
DRUM_SECONDS = 0.01
"""Length given to decoded drum notes (drum tokens carry onsets only)."""
DEFAULT_VELOCITY = 100
"""MIDI velocity given to decoded notes (tokens keep only on/off)."""
DRUM_CHANNEL = 9
"""General MIDI percussion channel (channel 10, 1-based)."""


@dataclass(slots=True)
class Note:
    """One note. Times in seconds; ``program`` is the General MIDI program (0..127)."""

    pitch: int
    program: int
    is_drum: bool
    onset: float
    offset: float
    velocity: int = DEFAULT_VELOCITY


@dataclass
class DecodeResult:
    """Notes decoded from segments, and what had to be dropped or repaired, by kind."""

    notes: list[Note]
    problems: Counter[str] = field(default_factory=Counter)

    @property
    def num_problems(self) -> int:
        return sum(self.problems.values())


# ---------------------------------------------------------------------------------------- time
def seconds_to_ticks(seconds: float) -> int:
    """Nearest tick (halves round up, so quantization is monotonic)."""
    return math.floor(seconds * TICKS_PER_SECOND + 0.5)


def segment_ticks(segment_seconds: float, vocab: Vocabulary) -> int:
    """Segment length in ticks; every event inside a segment must fit the shift range."""
    ticks = seconds_to_ticks(check_window_seconds(segment_seconds, "segment_seconds"))
    max_shift = vocab["midi/shift"].size - 1
    if ticks > max_shift + 1:
        raise ValueError(
            f"segment_seconds={segment_seconds} needs shifts up to {ticks - 1} ticks, "
            f"but the vocabulary's midi_max_shift is {max_shift}"
        )
    return ticks


# ------------------------------------------------------------------------------------ encoding
def _note_events(notes: Iterable[Note]) -> list[tuple[int, int, int, int, int]]:
    """Sorted events ``(tick, is_drum, program, velocity, pitch)``; drums have onsets only."""
    events = []
    for note in notes:
        if not 0 <= note.pitch < 128:
            raise ValueError(f"note pitch {note.pitch} outside 0..127")
        onset = seconds_to_ticks(note.onset)
        if onset < 0:
            raise ValueError(f"note onset {note.onset} s is negative")
        if note.is_drum:
            events.append((onset, 1, 0, 1, note.pitch))
            continue
        if not 0 <= note.program < 128:
            raise ValueError(f"note program {note.program} outside 0..127")
        offset = max(seconds_to_ticks(note.offset), onset + 1)  # zero-length notes last one tick
        events.append((onset, 0, note.program, 1, note.pitch))
        events.append((offset, 0, note.program, 0, note.pitch))
    events.sort()
    return events


def encode_notes(notes: Iterable[Note], vocab: Vocabulary, segment_seconds: float = 20.0) -> list[list[int]]:
    """Encode a piece as one id list per ``segment_seconds`` segment, each ending with EOS.

    Segment ``i`` covers ticks ``[i * L, (i + 1) * L)``; there is always at least one segment, and
    the last one holds the last event (an offset exactly on a border falls in the next segment).
    """
    seg_ticks = segment_ticks(segment_seconds, vocab)
    events = _note_events(notes)
    shift0 = vocab["midi/shift"].start
    pitch0 = vocab["midi/pitch"].start
    velocity0 = vocab["midi/velocity"].start
    program0 = vocab["midi/program"].start
    drum0 = vocab["midi/drum"].start
    tie_id = vocab["midi/tie"].start
    eos_id = vocab.eos("midi")

    num_segments = events[-1][0] // seg_ticks + 1 if events else 1
    segments: list[list[int]] = []
    active: Counter[tuple[int, int]] = Counter()  # (program, pitch) -> notes sounding
    index = 0
    for segment in range(num_segments):
        start = segment * seg_ticks
        stop = start + seg_ticks
        out: list[int] = []
        program_state = -1
        for program, pitch in sorted(active.elements()):
            if program != program_state:
                out.append(program0 + program)
                program_state = program
            out.append(pitch0 + pitch)
        out.append(tie_id)
        velocity_state = -1
        tick_state = start
        while index < len(events) and events[index][0] < stop:
            tick, is_drum, program, velocity, pitch = events[index]
            index += 1
            if tick > tick_state:
                out.append(shift0 + tick - start)
                tick_state = tick
            # program before velocity (YourMT3); drums carry no program, only velocity 1
            if not is_drum and program != program_state:
                out.append(program0 + program)
                program_state = program
            if velocity != velocity_state:
                out.append(velocity0 + velocity)
                velocity_state = velocity
            if is_drum:
                out.append(drum0 + pitch)
                continue
            out.append(pitch0 + pitch)
            key = (program, pitch)
            if velocity:
                active[key] += 1
            else:
                active[key] -= 1
                if not active[key]:
                    del active[key]
        out.append(eos_id)
        segments.append(out)
    return segments


def encode_windows(notes: Iterable[Note], vocab: Vocabulary, window_seconds: float = 20.0) -> list[list[int]]:
    """:func:`encode_notes` without each segment's closing EOS: the ids of one time window as a
    model reads or writes them (the batch frames every sequence with its own SOS and EOS)."""
    return [segment[:-1] for segment in encode_notes(notes, vocab, window_seconds)]


def normalize_notes(notes: Iterable[Note]) -> list[Note]:
    """What :func:`decode_segments` returns for :func:`encode_notes` of ``notes``, sorted.

    Ticks, one-tick minimum length, drum program 0 and 10 ms length, :data:`DEFAULT_VELOCITY`, and
    first-in-first-out pairing of overlapping same-key notes (see the module docstring).
    """
    result: list[Note] = []
    open_onsets: dict[tuple[int, int], deque[int]] = {}
    for tick, is_drum, program, velocity, pitch in _note_events(notes):
        if is_drum:
            result.append(
                Note(pitch, 0, True, tick / TICKS_PER_SECOND, tick / TICKS_PER_SECOND + DRUM_SECONDS)
            )
        elif velocity:
            open_onsets.setdefault((program, pitch), deque()).append(tick)
        else:
            onset = open_onsets[(program, pitch)].popleft()
            result.append(Note(pitch, program, False, onset / TICKS_PER_SECOND, tick / TICKS_PER_SECOND))
    return sort_notes(result)


def sort_notes(notes: Iterable[Note]) -> list[Note]:
    """Notes sorted by ``(onset, is_drum, program, pitch, offset)``."""
    return sorted(notes, key=lambda n: (n.onset, n.is_drum, n.program, n.pitch, n.offset))


# ------------------------------------------------------------------------------------ decoding
class MidiDecoder:
    """Stitches decoded segments (or transcription windows) into one list of notes.

    Call :meth:`add_segment` for each segment in time order with its start time, then
    :meth:`finish`. Notes sounding at the end of a segment continue into the next one when its tie
    section lists them (same program and key); otherwise they end at the border. Tolerant by
    default: problems are counted in :attr:`problems` (kinds below) and never raise.

    Problem kinds: ``foreign_token`` (an id outside the MIDI ranges), ``missing_tie`` (the body
    began without a ``tie`` token), ``stray_tie``, ``tie_pitch_without_program``,
    ``tie_without_active_note`` (a tie entry continuing nothing), ``closed_at_border`` (an active
    note the next tie section did not list), ``backward_shift``, ``shift_past_segment``,
    ``pitch_without_program``, ``pitch_without_velocity``, ``offset_without_onset``,
    ``drum_without_onset_velocity``, ``missing_eos``, ``unclosed_note`` (still sounding after the
    last segment; ended at that segment's last event time, at least one tick after its onset).
    """

    def __init__(self, vocab: Vocabulary, *, strict: bool = False) -> None:
        self.vocab = vocab
        self.strict = strict
        self.problems: Counter[str] = Counter()
        self.notes: list[Note] = []
        # (program, pitch) -> onsets (seconds) of sounding notes, oldest first
        self._active: dict[tuple[int, int], deque[float]] = {}
        self._last_time = 0.0
        self._segment_index = -1
        ranges = vocab
        self._shift = ranges["midi/shift"]
        self._pitch = ranges["midi/pitch"]
        self._velocity = ranges["midi/velocity"]
        self._program = ranges["midi/program"]
        self._drum = ranges["midi/drum"]
        self._tie = ranges["midi/tie"].start
        self._eos = vocab.eos("midi")

    def _problem(self, kind: str, count: int = 1) -> None:
        if self.strict:
            raise ValueError(f"segment {self._segment_index}: {kind.replace('_', ' ')}")
        self.problems[kind] += count

    def _close(self, key: tuple[int, int], onset: float, offset: float) -> None:
        self.notes.append(Note(key[1], key[0], False, onset, offset))

    def _continue_ties(self, ties: Counter[tuple[int, int]], start_time: float) -> None:
        """Keep the active notes the tie section lists; end the others at the border."""
        for key in list(self._active):
            onsets = self._active[key]
            keep = min(ties.pop(key, 0), len(onsets))
            while len(onsets) > keep:  # the oldest ones ended first
                self._close(key, onsets.popleft(), start_time)
                self._problem("closed_at_border")
            if not onsets:
                del self._active[key]
        leftover = sum(ties.values())
        if leftover:
            self._problem("tie_without_active_note", leftover)

    def add_segment(self, ids: Sequence[int], start_time: float, duration: float | None = None) -> None:
        """Decode one segment whose shift 0 is ``start_time`` seconds.

        ``duration`` (seconds), when given, bounds its shifts: later ones count as
        ``shift_past_segment`` and are clamped.
        """
        self._segment_index += 1
        shift, pitch_range, velocity_range = self._shift, self._pitch, self._velocity
        program_range, drum_range = self._program, self._drum
        max_tick = None if duration is None else seconds_to_ticks(duration)
        ties: Counter[tuple[int, int]] = Counter()
        in_ties = True
        program: int | None = None
        velocity: int | None = None
        tick = 0
        time = start_time
        active = self._active
        ended = False
        for token in ids:
            token = int(token)
            if token == self._eos:
                ended = True
                break
            if token == PAD_ID:
                continue
            if in_ties:
                if program_range.contains(token):
                    program = token - program_range.start
                    continue
                if pitch_range.contains(token):
                    if program is None:
                        self._problem("tie_pitch_without_program")
                    else:
                        ties[(program, token - pitch_range.start)] += 1
                    continue
                if token == self._tie:
                    in_ties = False
                    self._continue_ties(ties, start_time)
                    continue
                if shift.contains(token) or velocity_range.contains(token) or drum_range.contains(token):
                    self._problem("missing_tie")
                    in_ties = False
                    self._continue_ties(ties, start_time)
                    # fall through: the token belongs to the body
                else:
                    self._problem("foreign_token")
                    continue
            if shift.contains(token):
                new_tick = token - shift.start
                if max_tick is not None and new_tick > max_tick:
                    self._problem("shift_past_segment")
                    new_tick = max_tick
                if new_tick < tick:
                    self._problem("backward_shift")
                else:
                    tick = new_tick
                    time = start_time + tick / TICKS_PER_SECOND
            elif program_range.contains(token):
                program = token - program_range.start
            elif velocity_range.contains(token):
                velocity = token - velocity_range.start
            elif pitch_range.contains(token):
                if program is None:
                    self._problem("pitch_without_program")
                elif velocity is None:
                    self._problem("pitch_without_velocity")
                else:
                    key = (program, token - pitch_range.start)
                    if velocity:
                        onsets = active.get(key)
                        if onsets is None:
                            active[key] = deque([time])
                        else:
                            onsets.append(time)
                    else:
                        onsets = active.get(key)
                        if not onsets:
                            self._problem("offset_without_onset")
                        else:
                            self._close(key, onsets.popleft(), time)
                            if not onsets:
                                del active[key]
            elif drum_range.contains(token):
                if velocity != 1:
                    self._problem("drum_without_onset_velocity")
                else:
                    pitch = token - drum_range.start
                    self.notes.append(Note(pitch, 0, True, time, time + DRUM_SECONDS))
            elif token == self._tie:
                self._problem("stray_tie")
            else:
                self._problem("foreign_token")
        if in_ties:  # the segment held no tie token and no body
            self._problem("missing_tie")
            self._continue_ties(ties, start_time)
        if not ended:
            self._problem("missing_eos")
        self._last_time = time

    def finish(self) -> list[Note]:
        """End notes still sounding and return all notes, sorted (see :func:`sort_notes`)."""
        for key, onsets in self._active.items():
            for onset in onsets:
                self._problem("unclosed_note")
                self._close(key, onset, max(self._last_time, onset + 1 / TICKS_PER_SECOND))
        self._active = {}
        return sort_notes(self.notes)


def decode_segments_with_problems(
    segments: Sequence[Sequence[int]],
    vocab: Vocabulary,
    segment_seconds: float = 20.0,
    *,
    start_times: Sequence[float] | None = None,
    strict: bool = False,
) -> DecodeResult:
    """Decode consecutive segments into notes and count what had to be dropped or repaired.

    Segment ``i`` starts at ``start_times[i]`` (default ``i * segment_seconds``); shifts beyond
    ``segment_seconds`` are clamped. Never raises on malformed ids unless ``strict``.
    """
    if start_times is not None and len(start_times) != len(segments):
        raise ValueError(f"{len(start_times)} start times for {len(segments)} segments")
    decoder = MidiDecoder(vocab, strict=strict)
    for index, ids in enumerate(segments):
        start = index * segment_seconds if start_times is None else float(start_times[index])
        decoder.add_segment(ids, start, duration=segment_seconds)
    notes = decoder.finish()
    return DecodeResult(notes, decoder.problems)


def decode_segments(
    segments: Sequence[Sequence[int]],
    vocab: Vocabulary,
    segment_seconds: float = 20.0,
    *,
    start_times: Sequence[float] | None = None,
    strict: bool = False,
) -> list[Note]:
    """The notes of :func:`decode_segments_with_problems` (tolerant unless ``strict``)."""
    return decode_segments_with_problems(
        segments, vocab, segment_seconds, start_times=start_times, strict=strict
    ).notes


# ---------------------------------------------------------------------------------- event names
_NAMED_RANGES = ("shift", "pitch", "velocity", "program", "drum")


def event_name(token_id: int, vocab: Vocabulary) -> str:
    """A readable name: ``shift:12``, ``program:0``, ``velocity:1``, ``pitch:60``, ``drum:36``,
    ``tie``, ``eos``, ``pad``; any other id as ``id:N``."""
    token_id = int(token_id)
    for kind in _NAMED_RANGES:
        token_range = vocab[f"midi/{kind}"]
        if token_range.contains(token_id):
            return f"{kind}:{token_id - token_range.start}"
    if token_id == vocab["midi/tie"].start:
        return "tie"
    if token_id == vocab.eos("midi"):
        return "eos"
    if token_id == PAD_ID:
        return "pad"
    return f"id:{token_id}"


def event_names(ids: Iterable[int], vocab: Vocabulary) -> str:
    """Ids as one line of space-separated :func:`event_name` s."""
    return " ".join(event_name(token_id, vocab) for token_id in ids)


def parse_event_names(text: str, vocab: Vocabulary) -> list[int]:
    """Inverse of :func:`event_names`; raises ``ValueError`` naming the first bad word."""
    ids: list[int] = []
    for word in text.split():
        kind, _, value = word.partition(":")
        if not value:
            if kind == "tie":
                ids.append(vocab["midi/tie"].start)
            elif kind == "eos":
                ids.append(vocab.eos("midi"))
            elif kind == "pad":
                ids.append(PAD_ID)
            else:
                raise ValueError(f"unknown token {word!r}")
            continue
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"token {word!r}: value is not an integer") from None
        if kind == "id":
            if not 0 <= number < vocab.size:
                raise ValueError(f"token {word!r}: id outside 0..{vocab.size - 1}")
            ids.append(number)
        elif kind in _NAMED_RANGES:
            token_range = vocab[f"midi/{kind}"]
            if not 0 <= number < token_range.size:
                raise ValueError(f"token {word!r}: value outside 0..{token_range.size - 1}")
            ids.append(token_range.start + number)
        else:
            raise ValueError(f"unknown token {word!r}")
    return ids


# ---------------------------------------------------------------------------------- MIDI files
def _read_source(source: str | Path | bytes) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray):
        return bytes(source), "<bytes>"
    path = Path(source)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a MIDI file", path) from None
    except OSError as error:
        raise InputError(f"cannot read ({error.strerror or error})", path) from None
    return data, str(path)


def notes_from_midi(source: str | Path | bytes) -> list[Note]:
    """Read the notes of a Standard MIDI File (a path or its bytes), sorted by :func:`sort_notes`.

    Tempo changes are honoured. Note-on with velocity 0 is a note-off; each note-off ends the
    oldest sounding note of its track, channel and key. A note's program is its channel's most
    recent program change in its own track, else in any track, else 0; channel 10 is drums.
    Notes still sounding at the end of the file end at the file's last event. Raises
    :class:`~umt.errors.InputError` for empty, missing or corrupt files.
    """
    import mido

    data, name = _read_source(source)
    if not data:
        raise InputError("empty file", name)
    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
    except Exception as error:  # mido raises OSError, EOFError, ValueError, KeyError, ...
        detail = str(error).strip() or type(error).__name__
        raise InputError(f"not a readable MIDI file ({detail})", name) from None
    ticks_per_beat = midi.ticks_per_beat
    if ticks_per_beat <= 0:
        raise InputError("unsupported MIDI time division (SMPTE)", name)

    # (absolute tick, track, order, message) for the messages that matter, merged in time order
    timeline: list[tuple[int, int, int, object]] = []
    for track_index, track in enumerate(midi.tracks):
        tick = 0
        for order, message in enumerate(track):
            tick += message.time
            if message.type in ("note_on", "note_off", "program_change", "set_tempo"):
                timeline.append((tick, track_index, order, message))
    timeline.sort(key=lambda item: (item[0], item[1], item[2]))

    notes: list[Note] = []
    open_notes: dict[tuple[int, int, int], deque[tuple[float, int, int]]] = {}
    track_programs: dict[tuple[int, int], int] = {}
    channel_programs: dict[int, int] = {}
    tempo = 500_000  # microseconds per beat
    last_tick = 0
    seconds = 0.0
    for tick, track_index, _, message in timeline:
        seconds += (tick - last_tick) * tempo / (1_000_000 * ticks_per_beat)
        last_tick = tick
        kind = message.type
        if kind == "set_tempo":
            tempo = message.tempo
            continue
        channel = message.channel
        if kind == "program_change":
            track_programs[(track_index, channel)] = message.program
            channel_programs[channel] = message.program
            continue
        key = (track_index, channel, message.note)
        if kind == "note_on" and message.velocity > 0:
            program = track_programs.get((track_index, channel), channel_programs.get(channel, 0))
            open_notes.setdefault(key, deque()).append((seconds, message.velocity, program))
        else:
            onsets = open_notes.get(key)
            if onsets:
                onset, velocity, program = onsets.popleft()
                notes.append(Note(message.note, program, channel == DRUM_CHANNEL, onset, seconds, velocity))
    for (_, channel, pitch), onsets in open_notes.items():
        for onset, velocity, program in onsets:
            notes.append(Note(pitch, program, channel == DRUM_CHANNEL, onset, seconds, velocity))
    return sort_notes(notes)


def midi_bytes_from_notes(notes: Iterable[Note], ticks_per_beat: int = 480) -> bytes:
    """A type-1 Standard MIDI File at 120 bpm: one track per program (drums on channel 10)."""
    import mido

    ticks_per_second = ticks_per_beat * 2  # 120 bpm
    groups: dict[tuple[bool, int], list[Note]] = {}
    for note in notes:
        groups.setdefault((note.is_drum, 0 if note.is_drum else note.program), []).append(note)
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0)])
    midi.tracks.append(conductor)
    melodic_channels = [c for c in range(16) if c != DRUM_CHANNEL]
    for index, ((is_drum, program), group) in enumerate(sorted(groups.items())):
        channel = DRUM_CHANNEL if is_drum else melodic_channels[index % len(melodic_channels)]
        track = mido.MidiTrack()
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
        events = []
        for note in group:
            onset = max(0, round(note.onset * ticks_per_second))
            offset = max(onset + 1, round(note.offset * ticks_per_second))  # an off before its on is lost
            velocity = min(127, max(1, int(note.velocity)))
            events.append((onset, 1, note.pitch, velocity))
            events.append((offset, 0, note.pitch, 0))
        events.sort()  # offsets before onsets at the same tick
        now = 0
        for tick, is_on, pitch, velocity in events:
            kind = "note_on" if is_on else "note_off"
            track.append(mido.Message(kind, channel=channel, note=pitch, velocity=velocity, time=tick - now))
            now = tick
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def notes_to_midi(notes: Iterable[Note], path: str | Path) -> None:
    """Write ``notes`` as a Standard MIDI File, atomically (see :func:`midi_bytes_from_notes`)."""

    atomic_write_bytes(path, midi_bytes_from_notes(notes))
