"""MIDI event tokenizer: token layout, round trips on music21's corpus, tolerant decoding.

The corpus tests export every Bach chorale of music21's bundled corpus to MIDI once (a session
fixture; under pytest-xdist the workers share one export through a lock file, and pytest's cache
folder keeps the bytes for later sessions), keyed by the file's path relative to the corpus: some
chorales are there both as .krn/.xml and as .mxl.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
from collections import Counter
from dataclasses import replace
from pathlib import Path

import mido
import pytest

from tests._vocab import TINY_CONFIG
from umt.errors import InputError
from umt.tokenizers.midi import (
    Note,
    decode_segments,
    decode_segments_with_problems,
    encode_notes,
    event_names,
    midi_bytes_from_notes,
    normalize_notes,
    notes_from_midi,
    notes_to_midi,
    parse_event_names,
    seconds_to_ticks,
)
from umt.vocab import Vocabulary, default_vocabulary

VOCAB = default_vocabulary()
TINY = Vocabulary(replace(TINY_CONFIG, midi_max_shift=99))  # 1 s segments


def names(segments, vocab=VOCAB) -> list[str]:
    return [event_names(ids, vocab) for ids in segments]


def ticks(notes) -> list[tuple]:
    """Notes as exact integer tuples (drum, program, pitch, onset tick, offset tick)."""
    return sorted(
        (n.is_drum, n.program, n.pitch, seconds_to_ticks(n.onset), seconds_to_ticks(n.offset)) for n in notes
    )


# ------------------------------------------------------------------------------ token layout
def test_event_order_and_state_tokens_follow_yourmt3():
    notes = [
        Note(64, 0, False, 0.0, 0.5),
        Note(60, 0, False, 0.0, 0.5),
        Note(60, 0, False, 0.5, 1.0),  # re-onset at the offset tick: off before on
        Note(43, 33, False, 0.5, 1.0),
        Note(36, 0, True, 0.5, 0.6),
    ]
    (segment,) = encode_notes(notes, VOCAB)
    assert event_names(segment, VOCAB) == (
        "tie program:0 velocity:1 pitch:60 pitch:64 "
        "shift:50 velocity:0 pitch:60 pitch:64 velocity:1 pitch:60 program:33 pitch:43 drum:36 "
        "shift:100 program:0 velocity:0 pitch:60 program:33 pitch:43 eos"
    )
    assert segment[-1] == VOCAB.eos("midi")
    assert segment[0] == VOCAB["midi/tie"].start
    assert all(
        VOCAB["midi/shift"].start <= i < VOCAB["midi/drum"].stop or i == VOCAB.eos("midi") for i in segment
    )


def test_shifts_are_absolute_and_tie_section_lists_sounding_notes():
    notes = [Note(60, 0, False, 1.0, 45.0), Note(62, 5, False, 19.99, 20.5), Note(40, 5, False, 20.0, 21.0)]
    segments = encode_notes(notes, VOCAB, segment_seconds=20.0)
    assert names(segments) == [
        "tie shift:100 program:0 velocity:1 pitch:60 shift:1999 program:5 pitch:62 eos",
        # the program state carries over the tie section
        "program:0 pitch:60 program:5 pitch:62 tie velocity:1 pitch:40 "
        "shift:50 velocity:0 pitch:62 shift:100 pitch:40 eos",
        "program:0 pitch:60 tie shift:500 velocity:0 pitch:60 eos",
    ]
    assert decode_segments(segments, VOCAB, strict=True) == normalize_notes(notes)


def test_empty_piece_is_one_segment():
    assert names(encode_notes([], VOCAB)) == ["tie eos"]
    assert decode_segments(encode_notes([], VOCAB), VOCAB, strict=True) == []


def test_tiny_vocabulary_with_short_segments():
    notes = [Note(60, 1, False, 0.25, 3.333), Note(61, 1, False, 0.99, 1.0), Note(38, 0, True, 2.5, 2.5)]
    segments = encode_notes(notes, TINY, segment_seconds=1.0)
    assert len(segments) == 4
    shift = TINY["midi/shift"]
    assert all(not shift.contains(i) or shift.value(i) < 100 for ids in segments for i in ids)
    assert ticks(decode_segments(segments, TINY, 1.0, strict=True)) == ticks(normalize_notes(notes))
    with pytest.raises(ValueError, match="midi_max_shift"):
        encode_notes(notes, TINY, segment_seconds=2.0)
    with pytest.raises(ValueError, match="multiple of 10 ms"):
        encode_notes(notes, VOCAB, segment_seconds=0.005)


def test_overlapping_same_key_zero_length_and_drums_round_trip():
    notes = [
        Note(60, 0, False, 0.0, 2.0),
        Note(60, 0, False, 1.0, 3.0),  # overlaps the previous note on the same key
        Note(60, 0, False, 1.0, 3.0),  # exact duplicate
        Note(72, 0, False, 4.0, 4.0),  # zero length -> one tick
        Note(72, 0, False, 4.0, 4.003),  # shorter than half a tick
        Note(42, 0, True, 0.0, 0.0),
        Note(42, 0, True, 0.0, 0.1),  # two hits at once stay two notes
        Note(36, 7, True, 21.0, 21.5),
    ]
    decoded = decode_segments(encode_notes(notes, VOCAB, 2.0), VOCAB, 2.0, strict=True)
    assert ticks(decoded) == [
        (False, 0, 60, 0, 200),
        (False, 0, 60, 100, 300),
        (False, 0, 60, 100, 300),
        (False, 0, 72, 400, 401),
        (False, 0, 72, 400, 401),
        (True, 0, 36, 2100, 2101),
        (True, 0, 42, 0, 1),
        (True, 0, 42, 0, 1),
    ]


def test_nested_unison_keeps_onsets_and_offsets():
    notes = [Note(60, 0, False, 0.0, 2.0), Note(60, 0, False, 0.5, 1.0)]
    decoded = decode_segments(encode_notes(notes, VOCAB), VOCAB, strict=True)
    assert sorted(n.onset for n in decoded) == [0.0, 0.5]
    assert sorted(n.offset for n in decoded) == [1.0, 2.0]
    assert (
        ticks(decoded) == ticks(normalize_notes(notes)) == [(False, 0, 60, 0, 100), (False, 0, 60, 50, 200)]
    )


def test_many_segments_long_notes_and_programs():
    notes = []
    for index in range(300):
        onset = index * 0.37
        notes.append(Note(30 + index % 60, index % 5 * 10, False, onset, onset + (index % 9) * 1.3))
    notes.append(Note(50, 3, False, 0.0, 95.0))  # spans five 20 s segments
    segments = encode_notes(notes, VOCAB)
    assert len(segments) == 6
    ties = [s[: s.index(VOCAB["midi/tie"].start)] for s in segments]
    assert all(VOCAB["midi/pitch"].id(50) in t for t in ties[1:5])
    decoded = decode_segments(segments, VOCAB, strict=True)
    assert len(decoded) == len(notes)
    assert ticks(decoded) == ticks(normalize_notes(notes))
    for a, b in zip(
        sorted(notes, key=lambda n: (n.program, n.pitch, n.onset)),
        sorted(decoded, key=lambda n: (n.program, n.pitch, n.onset)),
    ):
        assert (a.program, a.pitch) == (b.program, b.pitch)
        assert abs(a.onset - b.onset) <= 0.01 + 1e-9 and abs(a.offset - b.offset) <= 0.01 + 1e-9


def test_invalid_notes_are_refused():
    with pytest.raises(ValueError, match="pitch"):
        encode_notes([Note(128, 0, False, 0, 1)], VOCAB)
    with pytest.raises(ValueError, match="program"):
        encode_notes([Note(60, 128, False, 0, 1)], VOCAB)
    with pytest.raises(ValueError, match="negative"):
        encode_notes([Note(60, 0, False, -1, 1)], VOCAB)


# ------------------------------------------------------------------------ tolerant decoding
def test_tolerant_decoder_counts_and_never_raises():
    v = VOCAB
    p, s, vel, prog, drum = (v[f"midi/{k}"] for k in ("pitch", "shift", "velocity", "program", "drum"))
    tie, eos = v["midi/tie"].start, v.eos("midi")
    segment = [
        p.id(60),  # tie pitch without program
        prog.id(0),
        p.id(61),  # ties a note nobody started
        tie,
        p.id(62),  # pitch before any velocity
        vel.id(0),
        p.id(63),  # offset without onset
        vel.id(1),
        p.id(64),
        s.id(50),
        tie,  # stray tie
        s.id(10),  # backward shift
        v["lmx/token"].start,  # foreign
        vel.id(0),
        drum.id(36),  # drum with note-off velocity
        vel.id(1),
        p.id(65),  # never closed
        eos,
        p.id(99),  # after EOS: ignored
    ]
    result = decode_segments_with_problems([segment], v)
    assert result.problems == Counter(
        {
            "tie_pitch_without_program": 1,
            "tie_without_active_note": 1,
            "pitch_without_velocity": 1,
            "offset_without_onset": 1,
            "stray_tie": 1,
            "backward_shift": 1,
            "foreign_token": 1,
            "drum_without_onset_velocity": 1,
            "unclosed_note": 2,
        }
    )
    assert [(n.pitch, n.onset) for n in result.notes] == [(64, 0.0), (65, 0.5)]
    with pytest.raises(ValueError, match="tie pitch without program"):
        decode_segments([segment], v, strict=True)


def test_tolerant_decoder_on_random_garbage():
    import random

    rng = random.Random(0)
    for length in (0, 1, 5, 50, 500):
        segments = [[rng.randrange(VOCAB.size) for _ in range(length)] for _ in range(3)]
        result = decode_segments_with_problems(segments, VOCAB)
        for note in result.notes:
            assert 0 <= note.pitch < 128 and note.onset <= note.offset
    midi_ids = range(VOCAB["midi/shift"].start, VOCAB["midi/drum"].stop)
    segments = [[rng.choice(midi_ids) for _ in range(400)] for _ in range(4)]
    result = decode_segments_with_problems(segments, VOCAB)
    assert result.notes and result.num_problems > 0
    assert all(n.offset >= n.onset and n.onset < 80.01 for n in result.notes)


def test_missing_tie_and_eos_and_unlisted_active_notes():
    v = VOCAB
    first = encode_notes([Note(60, 0, False, 10.0, 30.0)], v)[0][:-1]  # truncated: no EOS
    second = [
        v["midi/shift"].id(300),
        v["midi/program"].id(0),
        v["midi/velocity"].id(1),
        v["midi/pitch"].id(62),
        v.eos("midi"),
    ]
    result = decode_segments_with_problems([first, second], v)
    assert result.problems == Counter(
        {"missing_eos": 1, "missing_tie": 1, "closed_at_border": 1, "unclosed_note": 1}
    )
    assert ticks(result.notes) == [(False, 0, 60, 1000, 2000), (False, 0, 62, 2300, 2301)]


def test_windows_of_a_transcription_stitch_through_ties():
    """Windows decoded one by one at their own start times give the same notes as the whole."""
    notes = [Note(60 + i % 12, i % 3, False, i * 1.7, i * 1.7 + 3.1) for i in range(40)]
    segments = encode_notes(notes, VOCAB, 20.0)
    from umt.tokenizers.midi import MidiDecoder

    decoder = MidiDecoder(VOCAB, strict=True)
    for index, ids in enumerate(segments):
        decoder.add_segment(ids, start_time=100.0 + 20.0 * index, duration=20.0)
    shifted = decoder.finish()
    assert [(n.pitch, round(n.onset - 100.0, 6), round(n.offset - 100.0, 6)) for n in shifted] == [
        (n.pitch, round(n.onset, 6), round(n.offset, 6)) for n in normalize_notes(notes)
    ]


# ------------------------------------------------------------------------------- event names
def test_event_names_round_trip_and_errors():
    segments = encode_notes([Note(60, 0, False, 0, 25), Note(35, 0, True, 1, 1)], VOCAB)
    for ids in segments:
        assert parse_event_names(event_names(ids, VOCAB), VOCAB) == ids
    assert parse_event_names("id:0 pad", VOCAB) == [0, 0]
    for bad, message in [
        ("pitch:128", "outside"),
        ("bogus", "unknown"),
        ("shift:x", "integer"),
        ("foo:1", "unknown"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_event_names(bad, VOCAB)


# --------------------------------------------------------------------------------- MIDI files
def test_midi_file_round_trip_and_errors(tmp_path):
    notes = [
        Note(60, 40, False, 0.0, 1.0, 80),
        Note(60, 40, False, 0.5, 1.5, 70),
        Note(67, 0, False, 0.25, 0.25),
        Note(38, 0, True, 2.0, 2.1),
    ]
    out = tmp_path / "a.mid"
    notes_to_midi(notes, out)
    read = notes_from_midi(out)
    assert [(n.pitch, n.program, n.is_drum, n.velocity) for n in read] == [
        (60, 40, False, 80),
        (67, 0, False, 100),
        (60, 40, False, 70),
        (38, 0, True, 100),
    ]
    assert [round(n.onset, 3) for n in read] == [0.0, 0.25, 0.5, 2.0]
    assert [round(n.offset, 3) for n in read] == [1.0, 0.251, 1.5, 2.1]
    assert notes_from_midi(out.read_bytes()) == read
    assert not list(tmp_path.glob(".*"))
    (tmp_path / "empty.mid").write_bytes(b"")
    (tmp_path / "bad.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    for name, problem in [
        ("empty.mid", "empty file"),
        ("bad.mid", "not a readable MIDI file"),
        ("none.mid", "no such file"),
    ]:
        with pytest.raises(InputError, match=problem) as info:
            notes_from_midi(tmp_path / name)
        assert name in str(info.value)


def test_tempo_changes_and_per_track_programs():
    midi = mido.MidiFile(type=1, ticks_per_beat=100)
    midi.tracks.append(
        mido.MidiTrack(
            [
                mido.MetaMessage("set_tempo", tempo=500_000, time=0),
                mido.MetaMessage("set_tempo", tempo=1_000_000, time=200),
            ]
        )
    )
    for program in (10, 20):  # same channel in two tracks, different programs
        midi.tracks.append(
            mido.MidiTrack(
                [
                    mido.Message("program_change", channel=0, program=program, time=0),
                    mido.Message("note_on", channel=0, note=60, velocity=90, time=100),
                    mido.Message("note_on", channel=0, note=60, velocity=0, time=200),  # velocity 0 = off
                ]
            )
        )
    buffer = io.BytesIO()
    midi.save(file=buffer)
    notes = notes_from_midi(buffer.getvalue())
    # 100 ticks at 0.5 s/beat = 0.5 s; then 100 more at 0.5 s/beat, 100 at 1 s/beat -> 0.5 + 0.5 + 1.0
    assert [(n.program, n.onset, n.offset) for n in notes] == [(10, 0.5, 2.0), (20, 0.5, 2.0)]


# ------------------------------------------------------------------------ music21 corpus MIDI
@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _corpus_cache(pytestconfig, tmp_path_factory, worker_id: str, name: str, export) -> dict[str, bytes]:
    """MIDI bytes exported once and shared by the xdist workers through a lock file.

    ``export()`` gives ``{key: bytes}``; a key may hold "/" (a corpus path), and empty bytes (never a
    MIDI file) stand for a file music21 could not export.

    Exporting the 413 chorales through music21 takes about a minute on 2 busy cores (with the
    shortcut of :func:`_export_chorale`; 100 s without), so the bytes are kept in pytest's cache
    folder (keyed by the music21 version) and reused by later sessions; without the cache plugin
    (``-p no:cacheprovider``) they live in this session's tmp.
    """
    import music21

    cache = getattr(pytestconfig, "cache", None)
    if cache is not None:
        root = cache.mkdir(f"umt-midi-corpus-{music21.__version__}")
    else:
        base = tmp_path_factory.getbasetemp()
        root = base if worker_id == "master" else base.parent
    folder = root / name
    with _locked(root / f"{name}.lock"):
        if not (folder / "DONE").exists():
            folder.mkdir(exist_ok=True)
            for key, data in export().items():
                target = folder / f"{key}.mid"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            (folder / "DONE").write_text("")
    return {
        p.relative_to(folder).as_posix()[: -len(".mid")]: p.read_bytes()
        for p in sorted(folder.rglob("*.mid"))
    }


def _music21_corpus() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def _export_chorale(path: str) -> bytes:
    """The MIDI bytes music21 writes for a corpus file (``umt.bench.midi.export_midi``), or b"".

    Cheaper for a score without repeat marks: before writing MIDI, music21 expands repeats into a
    deep copy of the whole score (about 3/4 of the export time) even when there are none; such a
    score, parsed here and thrown away after, is then used as is. The bytes are the same
    (checked on all 247 repeat-free chorales of music21 10.5.1; test_chorale_export_is_music21s
    keeps checking a few).
    """
    from music21 import bar, converter, repeat, spanner
    from music21.midi import translate

    try:
        score = converter.parse(path)
        marks = score.recurse().getElementsByClass(
            (bar.Repeat, repeat.RepeatExpression, spanner.RepeatBracket)
        )
        if marks.first() is None:
            score.expandRepeats = lambda *args, **kwargs: score
        return translate.streamToMidiFile(score).writestr()
    except Exception:  # e.g. badly formed repeats: music21's problem, not ours
        return b""


def _export_chorales(paths: list[Path]) -> dict[str, bytes]:
    """``{path relative to music21's corpus: MIDI bytes}``, empty bytes where music21 cannot export."""
    import multiprocessing
    import os

    workers = max(1, min(len(os.sched_getaffinity(0)), 8))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.map(_export_chorale, [str(p) for p in paths], chunksize=4)
    corpus = _music21_corpus()
    return {path.relative_to(corpus).as_posix(): data or b"" for path, data in zip(paths, results)}


# Chorales music21 itself cannot export to MIDI, and why (nothing the tokenizer could change).
UNEXPORTABLE_CHORALES = {
    "bach/bwv277.krn": "music21's expandRepeats raises ExpanderException (badly formed repeats)",
}


@pytest.fixture(scope="session")
def bach_midis(pytestconfig, tmp_path_factory, worker_id) -> dict[str, bytes]:
    """Every Bach chorale of the corpus, by path relative to the corpus (b"" when not exportable)."""
    from umt.bench.midi import bach_chorale_paths

    paths = bach_chorale_paths()
    midis = _corpus_cache(
        pytestconfig, tmp_path_factory, worker_id, "bach-by-path", lambda: _export_chorales(paths)
    )
    corpus = _music21_corpus()
    assert set(midis) == {p.relative_to(corpus).as_posix() for p in paths}  # a stale cache otherwise
    return midis


QUARTETS = {"haydn-op74no1-1": "haydn/opus74no1/movement1", "mozart-k155-2": "mozart/k155/movement2"}
STRING_PROGRAMS = (40, 40, 41, 42)  # violin, violin, viola, cello


def _export_quartets() -> dict[str, bytes]:
    """String quartets with real string programs (music21 writes program 0 for every part)."""
    from music21 import corpus

    from umt.bench.midi import export_midi

    result = {}
    for stem, work in QUARTETS.items():
        midi = mido.MidiFile(file=io.BytesIO(export_midi(corpus.getWork(work))))
        programs = iter(STRING_PROGRAMS)
        for track in midi.tracks:
            if any(m.type == "note_on" for m in track):
                program = next(programs)
                for message in track:
                    if message.type == "program_change":
                        message.program = program
        buffer = io.BytesIO()
        midi.save(file=buffer)
        result[stem] = buffer.getvalue()
    return result


@pytest.fixture(scope="session")
def quartet_midis(pytestconfig, tmp_path_factory, worker_id) -> dict[str, bytes]:
    return _corpus_cache(pytestconfig, tmp_path_factory, worker_id, "quartets", _export_quartets)


def assert_round_trip(reference: list[Note], decoded: list[Note]) -> None:
    """Every note's pitch, program, onset and offset come back within 10 ms."""
    assert len(decoded) == len(reference)
    key = lambda n: (n.is_drum, n.program, n.pitch, seconds_to_ticks(n.onset), seconds_to_ticks(n.offset))  # noqa: E731
    for ref, dec in zip(sorted(reference, key=key), sorted(decoded, key=key)):
        assert (ref.is_drum, ref.program, ref.pitch) == (dec.is_drum, dec.program, dec.pitch)
        assert abs(ref.onset - dec.onset) <= 0.01 + 1e-9, (ref, dec)
        assert abs(ref.offset - dec.offset) <= 0.01 + 1e-9, (ref, dec)


def _fifo_paired(notes: list[Note]) -> list[Note]:
    """The reference with nested same-key unisons re-paired first-in-first-out (as tokens can
    express them; see the module docstring), times untouched."""
    by_key: dict[tuple, list[Note]] = {}
    for note in notes:
        by_key.setdefault((note.is_drum, note.program, note.pitch), []).append(note)
    result = []
    for group in by_key.values():
        onsets = sorted(n.onset for n in group)
        offsets = sorted(n.offset for n in group)
        result += [
            Note(group[0].pitch, group[0].program, group[0].is_drum, a, b) for a, b in zip(onsets, offsets)
        ]
    return result


def test_chorale_export_is_music21s():
    from umt.bench.midi import export_midi

    corpus = _music21_corpus()
    # two without repeat marks (the shortcut), one with repeats, the one music21 cannot export
    for name in ("bach/bwv1.6.mxl", "bach/bwv10.7.mxl", "bach/bwv103.6.mxl", "bach/bwv277.krn"):
        assert _export_chorale(str(corpus / name)) == (export_midi(corpus / name) or b""), name


def test_all_bach_chorales_round_trip(bach_midis):
    assert len(bach_midis) >= 410
    assert {"bach/bwv281.krn", "bach/bwv281.mxl"} <= set(bach_midis)  # same stem, both kept
    unexported = {name for name, data in bach_midis.items() if not data}
    assert unexported == set(UNEXPORTABLE_CHORALES)
    total = nested = 0
    for name, data in bach_midis.items():
        if name in UNEXPORTABLE_CHORALES:
            continue
        reference = notes_from_midi(data)
        assert reference, name
        segments = encode_notes(reference, VOCAB)
        decoded = decode_segments(segments, VOCAB, strict=True)
        assert ticks(decoded) == ticks(normalize_notes(reference)), name
        paired = _fifo_paired(reference)
        nested += sum(a != b for a, b in zip(ticks(paired), ticks(reference)))
        assert_round_trip(paired, decoded)
        total += len(reference)
    assert total > 50_000
    assert nested <= total * 0.01  # nested unisons of two voices are rare (~0.6 %)


def test_string_quartets_round_trip_through_many_segments(quartet_midis):
    assert set(quartet_midis) == set(QUARTETS)
    for stem, data in quartet_midis.items():
        reference = notes_from_midi(data)
        assert {n.program for n in reference} == set(STRING_PROGRAMS), stem
        segments = encode_notes(reference, VOCAB)
        assert len(segments) >= 5, stem
        decoded = decode_segments(segments, VOCAB, strict=True)
        assert_round_trip(_fifo_paired(reference), decoded)
        # and back through a MIDI file of ours
        again = notes_from_midi(midi_bytes_from_notes(decoded))
        assert ticks(again) == ticks(decoded)
