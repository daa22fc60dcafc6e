"""``umt midi encode`` / ``umt midi decode`` through ``umt.cli.main``."""

from __future__ import annotations

import pytest

from umt.cli import main
from umt.tokenizers.midi import Note, normalize_notes, notes_from_midi, notes_to_midi, seconds_to_ticks

NOTES = [
    Note(60, 0, False, 0.0, 1.0),
    Note(64, 41, False, 0.5, 23.0),
    Note(36, 0, True, 21.0, 21.1),
]


def _ticks(notes):
    return [
        (n.is_drum, n.program, n.pitch, seconds_to_ticks(n.onset), seconds_to_ticks(n.offset)) for n in notes
    ]


def test_encode_prints_event_names_and_decode_reads_them_back(tmp_path, capsys):
    source = tmp_path / "in.mid"
    notes_to_midi(NOTES, source)
    assert main(["midi", "encode", str(source)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "tie program:0 velocity:1 pitch:60 shift:50 program:41 pitch:64 "
        "shift:100 program:0 velocity:0 pitch:60 eos",
        "program:41 pitch:64 tie shift:100 velocity:1 drum:36 shift:300 velocity:0 pitch:64 eos",
    ]
    text = tmp_path / "tokens.txt"
    text.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.mid"
    assert main(["midi", "decode", str(text), "-o", str(out)]) == 0
    assert _ticks(notes_from_midi(out)) == _ticks(normalize_notes(NOTES))
    assert "3 notes from 2 segments" in capsys.readouterr().err


def test_segment_seconds_option(tmp_path, capsys):
    source = tmp_path / "in.mid"
    notes_to_midi(NOTES, source)
    assert main(["midi", "encode", str(source), "--segment-seconds", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    (tmp_path / "t.txt").write_text("\n".join(lines))
    out = tmp_path / "o.mid"
    assert main(["midi", "decode", str(tmp_path / "t.txt"), "-o", str(out), "--segment-seconds", "5"]) == 0
    assert _ticks(notes_from_midi(out)) == _ticks(normalize_notes(NOTES))
    assert main(["midi", "encode", str(source), "--segment-seconds", "30"]) == 2
    assert "midi_max_shift" in capsys.readouterr().err


def test_decode_accepts_ids_and_reports_repairs(tmp_path, capsys):
    from umt.vocab import default_vocabulary

    v = default_vocabulary()
    ids = [v["midi/tie"].start, v["midi/program"].id(0), v["midi/velocity"].id(1), v["midi/pitch"].id(60)]
    (tmp_path / "ids.txt").write_text(" ".join(map(str, ids)) + " shift:100 velocity:0 pitch:60 pitch:61\n")
    out = tmp_path / "o.mid"
    assert main(["midi", "decode", str(tmp_path / "ids.txt"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "offset_without_onset x1" in err and "missing_eos x1" in err
    assert _ticks(notes_from_midi(out)) == [(False, 0, 60, 0, 100)]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        (b"", "empty file"),
        (
            b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x00\x10\x00\x90",
            "not a readable MIDI file",
        ),
        (b"hello, I am not MIDI", "not a readable MIDI file"),
    ],
)
def test_encode_bad_midi_is_one_line(tmp_path, capsys, content, problem):
    path = tmp_path / "bad.mid"
    if content is not None:
        path.write_bytes(content)
    assert main(["midi", "encode", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"umt: error: {path}: {captured.err.split(': ', 3)[-1]}"
    assert captured.err.count("\n") == 1 and problem in captured.err and "Traceback" not in captured.err


def test_encode_midi_without_notes_is_an_error(tmp_path, capsys):
    import mido

    path = tmp_path / "silent.mid"
    midi = mido.MidiFile(type=1)
    midi.tracks.append(
        mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=400_000), mido.Message("program_change")])
    )
    midi.save(str(path))
    assert notes_from_midi(path) == []  # a valid MIDI file, just no notes
    assert main(["midi", "encode", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"umt: error: {path}: no notes: an empty MIDI file\n"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        (b"", "empty: no token lines"),
        (b"\n  \n", "empty: no token lines"),
        (b"tie pitch:60 eos\ntie bogus:3 eos\n", "line 2: unknown token 'bogus:3'"),
        (b"tie pitch:200", "line 1: token 'pitch:200': value outside 0..127"),
        (b"MThd\xff\xfe\x00", "not UTF-8 token text (a MIDI file? use `umt midi encode`)"),
    ],
)
def test_decode_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, content, problem):
    path = tmp_path / "tokens.txt"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out.mid"
    assert main(["midi", "decode", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"umt: error: {path}: {problem}\n"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == (
        [] if content is None else ["tokens.txt"]
    )
