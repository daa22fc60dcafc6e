"""Hostile and odd MIDI (MIDI-to-audio) and LMX/MusicXML (LMX-to-image) inputs."""

from __future__ import annotations

from pathlib import Path

import mido

from tests.hostile._cases import check_outcomes, translate_each


def _midi(path: Path, notes: list[tuple[int, int, int]], tempo: int | None = 500000) -> Path:
    """``notes``: (start tick, length in ticks, pitch) at 480 ticks a beat."""
    song = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    song.tracks.append(track)
    if tempo is not None:
        track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    events = []
    for start, length, pitch in notes:
        events += [
            (start, mido.Message("note_on", note=pitch, velocity=80)),
            (start + length, mido.Message("note_off", note=pitch)),
        ]
    now = 0
    for tick, message in sorted(events, key=lambda e: e[0]):
        track.append(message.copy(time=tick - now))
        now = tick
    song.save(str(path))
    return path


def test_hostile_midi(model, tmp_path, capsys):
    root = tmp_path / "inputs"
    root.mkdir()
    refused = {
        "no_notes": _midi(root / "no_notes.mid", []),
        "text": root / "letter.mid",
        "zero_bytes": root / "zero.mid",
        # 100k notes 4 ms apart: more events in a window than the model reads
        "dense": _midi(root / "dense.mid", [(i * 2, 4, 40 + i % 48) for i in range(100_000)]),
        "ten_hours_late": _midi(root / "ten_hours_late.mid", [(0, 480, 60), (480 * 2 * 36_000, 480, 64)]),
    }
    refused["text"].write_text("not a MIDI file\n")
    refused["zero_bytes"].write_bytes(b"")
    processed = {
        "tempo_zero": _midi(root / "tempo_zero.mid", [(0, 480, 60), (480, 480, 64)], tempo=0),
        # a note at 0 and one at 95 s: the windows between hold no notes and are silence, not generated
        "sparse": _midi(root / "sparse.mid", [(0, 480, 60), (480 * 2 * 95, 480, 64)]),
    }
    out = tmp_path / "out"
    status, errors = translate_each(model, "m2a", [*refused.values(), *processed.values()], out, capsys)
    assert status == 1
    check_outcomes(out, errors, refused, processed)
    assert "token rows long" in errors[refused["dense"]]
    assert "lasts 10.0 h" in errors[refused["ten_hours_late"]]
    import soundfile

    audio, rate = soundfile.read(out / "sparse.wav")
    assert len(audio) > 80 * rate  # the second note's window (80-100 s) comes after silent ones
    assert abs(audio[25 * rate : 75 * rate]).max() == 0.0


def test_hostile_scores(model, tmp_path, capsys):
    root = tmp_path / "inputs"
    root.mkdir()
    refused = {
        "empty_lmx": root / "empty.lmx",
        "unknown_tokens": root / "unknown.lmx",
        "empty_xml": root / "empty.musicxml",
        "not_xml": root / "letter.musicxml",
        "entity_bomb": root / "bomb.musicxml",
    }
    refused["empty_lmx"].write_text("")
    refused["unknown_tokens"].write_text("flurb blorp zzz\n")
    refused["empty_xml"].write_text("")
    refused["not_xml"].write_text("Dear reader\n")
    refused["entity_bomb"].write_text(
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><score-partwise><part-list/>&lol3;</score-partwise>'
    )
    processed = {"thousand_parts": root / "thousand_parts.musicxml", "lmx": root / "tune.lmx"}
    processed["thousand_parts"].write_text(_many_parts(1000))
    processed["lmx"].write_text("measure clef:G2 C4 quarter E4 quarter G4 half\n")
    out = tmp_path / "out"
    status, errors = translate_each(model, "l2i", [*refused.values(), *processed.values()], out, capsys)
    assert status == 1
    check_outcomes(out, errors, refused, processed)
    assert "unknown LMX token 'flurb'" in errors[refused["unknown_tokens"]]


def _many_parts(count: int) -> str:
    parts = "".join(f'<score-part id="P{i}"><part-name>V{i}</part-name></score-part>' for i in range(count))
    body = "".join(
        f'<part id="P{i}"><measure number="1"><attributes><divisions>1</divisions><time><beats>4</beats>'
        "<beat-type>4</beat-type></time><clef><sign>G</sign><line>2</line></clef></attributes><note><pitch>"
        "<step>C</step><octave>4</octave></pitch><duration>4</duration><type>whole</type></note></measure></part>"
        for i in range(count)
    )
    head = '<?xml version="1.0"?><score-partwise version="4.0">'
    return f"{head}<part-list>{parts}</part-list>{body}</score-partwise>"
