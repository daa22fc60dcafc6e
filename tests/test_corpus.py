"""The four-modality corpus builder (umt.data.corpus_builder) and its building blocks.

One tiny corpus (2 Bach chorales + 2 procedural piano pieces, 2 excerpts each, 2 workers, plus a
broken score file) is built once per module; the tests check its files against each other.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("verovio")
pytest.importorskip("cairosvg")

import itertools

from umt.cli import main as umt_main
from umt.data import corpus_builder as cb
from umt.data import excerpts as ex
from umt.data import synth
from umt.data.degrade import degrade_array, degrade_image
from umt.data.render import STAFF_HEIGHT_PX, staff_heights
from umt.errors import InputError

HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None
NO_FLUIDSYNTH = "fluidsynth not installed (Debian package 'fluidsynth'); audio is not built"


def _options(out: Path, broken: Path | None = None, workers: int = 2) -> cb.BuildOptions:
    return cb.BuildOptions(
        out=str(out),
        sources=["bach"],
        max_pieces=2,
        procedural=2,
        max_excerpts_per_piece=2,
        seed=7,
        workers=workers,
        audio=HAVE_FLUIDSYNTH,
        extra_files=[str(broken)] if broken else [],
        progress=False,
    )


@pytest.fixture(scope="module")
def broken_score(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "broken.musicxml"
    path.write_text('<score-partwise><part id="P1"><measure number="1"><note>', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, broken_score) -> tuple[Path, cb.BuildSummary]:
    out = tmp_path_factory.mktemp("corpus")
    return out, cb.build_corpus(_options(out, broken_score))


def _files(out: Path) -> dict[str, float]:
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and p.suffix in (".musicxml", ".lmx", ".png", ".mid", ".wav")
    }


def test_manifest_entries_have_all_files(built):
    out, summary = built
    manifest = cb.read_manifest(out)
    assert summary.built == len(manifest) == 8  # 4 pieces x 2 excerpts
    assert {r["source"] for r in manifest} == {"bach", "procedural"}
    for record in manifest:
        assert set(record) >= {"key", "piece", "split", "source", "measures", "musicxml", "png", "mid", "wav"}
        assert record["split"] in ("train", "val", "test")
        first, last = record["measure_index"]
        assert 0 <= last - first <= 3  # one to four measures
        for name in ("musicxml", "png", "mid", "wav", "lmx"):
            if record[name] is not None:
                path = out / record[name]
                assert path.is_file() and path.stat().st_size > 0, path
    assert not (out / cb.PARTIAL_MANIFEST).exists()


def test_musicxml_is_self_contained_single_system(built):
    from music21 import converter

    out, _ = built
    for record in cb.read_manifest(out):
        text = (out / record["musicxml"]).read_text(encoding="utf-8")
        assert "new-system" not in text and "new-page" not in text
        assert "<movement-title>" not in text  # nothing but the music is drawn
        score = converter.parse(text, format="musicxml")
        assert len(score.parts) in (1, 2)
        for part in score.parts:
            first = part.getElementsByClass("Measure").first()
            for kind in ("Clef", "KeySignature", "TimeSignature"):
                assert first.getElementsByClass(kind), (record["key"], kind)


def test_png_staff_height_is_normalised(built):
    from PIL import Image

    out, _ = built
    for record in cb.read_manifest(out):
        image = np.asarray(Image.open(out / record["png"]).convert("L"))
        heights = staff_heights(image)
        assert heights, record["key"]
        assert all(abs(h - STAFF_HEIGHT_PX) <= 1.0 for h in heights), (record["key"], heights)
        # one system of a grand staff: two staves plus ledger lines, margins cropped tightly
        assert len(heights) <= 2 and image.shape[0] < 8 * STAFF_HEIGHT_PX
        assert image[0].min() > 200 and image[:, 0].min() > 200  # white margin kept
        ink_rows = np.flatnonzero((image < 200).any(axis=1))
        assert ink_rows[0] <= 6 and image.shape[0] - ink_rows[-1] <= 7  # and no more


def test_midi_notes_match_musicxml_notes(built):
    """Piano pieces: MIDI notes == MusicXML notes. Reductions (chorales): the MusicXML is the grand-
    staff reduction and the MIDI keeps the voices, so every reduction note is attacked in the MIDI
    and every MIDI note sounds in the reduction (unisons of two voices merge in the reduction)."""
    import pretty_midi
    from music21 import converter

    out, _ = built
    for record in cb.read_manifest(out):
        seconds = 60.0 / record["tempo_qpm"]
        score = converter.parse(str(out / record["musicxml"]))
        notes = [
            (on * seconds, (on + dur) * seconds, p)
            for part in synth.score_notes(score)
            for on, dur, p in part
        ]
        expected = {(round(on, 3), p) for on, _, p in notes}
        midi = pretty_midi.PrettyMIDI(str(out / record["mid"]))
        actual = {(round(n.start, 3), n.pitch) for inst in midi.instruments for n in inst.notes}
        assert expected, record["key"]
        if record["source"] == "procedural":
            assert actual == expected, record["key"]
            assert [i.program for i in midi.instruments] == [0, 0]  # piano, both hands
        else:
            assert expected <= actual, record["key"]
            for start, pitch in actual:
                assert any(p == pitch and on - 1e-3 <= start < off for on, off, p in notes), (
                    record["key"],
                    start,
                )
            assert len(midi.instruments) >= 4  # one track (and program) per chorale voice / instrument


@pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason=NO_FLUIDSYNTH)
def test_wav_matches_midi_duration(built):
    import pretty_midi
    import soundfile

    out, _ = built
    for record in cb.read_manifest(out):
        audio, rate = soundfile.read(str(out / record["wav"]))
        assert rate == 44100 and audio.ndim == 1
        midi_end = pretty_midi.PrettyMIDI(str(out / record["mid"])).get_end_time()
        assert len(audio) / rate == pytest.approx(midi_end + synth.RELEASE_TAIL_S, abs=0.01)
        assert np.abs(audio).max() > 0.01  # sound, not silence


def test_lmx_matches_linearizer(built):
    from umt.tokenizers.lmx import linearize

    out, _ = built
    for record in cb.read_manifest(out):
        tokens = (out / record["lmx"]).read_text(encoding="utf-8").split()
        assert tokens and tokens == list(linearize(str(out / record["musicxml"])))


def test_splits_are_disjoint_by_piece(built):
    out, _ = built
    split_of: dict[str, set[str]] = {}
    for record in cb.read_manifest(out):
        split_of.setdefault(record["piece"], set()).add(record["split"])
    assert all(len(splits) == 1 for splits in split_of.values())
    assert ex.assign_split("bach/bwv66.6", 7) == ex.assign_split("bach/bwv66.6", 7)


def test_failing_piece_is_reported_and_others_succeed(built, broken_score):
    out, summary = built
    assert summary.failed == 1 and "1 failed" in summary.line()
    rows = [json.loads(line) for line in (out / cb.FAILURES).read_text().splitlines()]
    assert len(rows) == 1
    assert rows[0]["piece"] == "files/broken" and rows[0]["stage"] == "load"
    assert "broken.musicxml" in rows[0]["reason"] and "not well-formed" in rows[0]["reason"]
    assert all(r["piece"] != "files/broken" for r in cb.read_manifest(out))


def test_same_seed_same_manifest_and_files(built, broken_score, tmp_path):
    out, _ = built
    again = cb.build_corpus(_options(tmp_path, broken_score, workers=1))  # sequential == parallel
    assert (tmp_path / cb.MANIFEST).read_text() == (out / cb.MANIFEST).read_text()
    assert again.built == 8
    for record in cb.read_manifest(out):
        for name in ("musicxml", "png", "mid"):
            assert (tmp_path / record[name]).read_bytes() == (out / record[name]).read_bytes(), name


def test_rerun_skips_finished_and_completes_interrupted(built, broken_score, tmp_path):
    out, _ = built
    work = tmp_path / "copy"
    shutil.copytree(out, work)
    before = _files(work)
    summary = cb.build_corpus(_options(work, broken_score))
    assert summary.skipped == 8 and summary.built == 0
    assert _files(work) == before  # nothing rewritten

    # simulate a run killed part-way: some files of two excerpts missing, no final manifest
    records = cb.read_manifest(work)
    (work / records[0]["png"]).unlink()
    (work / records[3]["mid"]).unlink()
    if records[3]["wav"]:
        (work / records[3]["wav"]).unlink()
    (work / cb.MANIFEST).unlink()
    (work / cb.PARTIAL_MANIFEST).write_text('{"key": "half a li')  # torn last line
    summary = cb.build_corpus(_options(work, broken_score))
    assert summary.built == 2 and summary.skipped == 6
    after = _files(work)
    changed = {name for name in after if after[name] != before.get(name)}
    expected = {records[0]["png"], records[3]["mid"]} | ({records[3]["wav"]} if records[3]["wav"] else set())
    assert changed == expected
    assert (work / cb.MANIFEST).read_text() == (out / cb.MANIFEST).read_text()


def test_missing_fluidsynth_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(synth, "fluidsynth_binary", lambda: None)
    with pytest.raises(synth.FluidSynthMissing, match="install the Debian package 'fluidsynth'"):
        cb.build_corpus(cb.BuildOptions(out=str(tmp_path), sources=[], procedural=1, progress=False))
    midi = tmp_path / "a.mid"
    synth.write_midi(synth.score_to_midi(_tiny_score(), 100.0), midi)
    with pytest.raises(synth.FluidSynthMissing):
        synth.midi_to_wav(midi, tmp_path / "a.wav")
    assert not (tmp_path / "a.wav").exists()


def _tiny_score():
    from umt.data.procedural import generate_piano_piece

    return generate_piano_piece(3, n_measures=2)


def test_cli_reports_bad_source_in_one_line(tmp_path, capsys):
    status = umt_main(["corpus", "build", "--out", str(tmp_path), "--sources", "nope", "--no-audio"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("umt: error:") and "nope" in err and "\n" not in err


def test_cli_builds_procedural_corpus(tmp_path, capsys):
    args = ["corpus", "build", "--out", str(tmp_path), "--sources", "none", "--procedural", "1"]
    status = umt_main([*args, "--excerpts-per-piece", "1", "--no-audio", "--no-progress", "--degrade", "1"])
    assert status == 0
    assert "1 excerpts built" in capsys.readouterr().out
    (record,) = cb.read_manifest(tmp_path)
    assert record["wav"] is None and len(record["png_degraded"]) == 1
    from PIL import Image

    clean = Image.open(tmp_path / record["png"])
    assert Image.open(tmp_path / record["png_degraded"][0]).size == clean.size


def test_cli_staff_height_sets_the_rendered_staves(tmp_path):
    from PIL import Image

    args = ["corpus", "build", "--out", str(tmp_path), "--sources", "none", "--procedural", "1"]
    status = umt_main(
        [*args, "--excerpts-per-piece", "1", "--no-audio", "--no-progress", "--staff-height", "27"]
    )
    assert status == 0
    (record,) = cb.read_manifest(tmp_path)
    heights = staff_heights(np.asarray(Image.open(tmp_path / record["png"]).convert("L")))
    assert len(heights) == 2 and all(abs(h - 27) <= 1.0 for h in heights), heights


@pytest.mark.parametrize("height", ["3", "500"])
def test_cli_refuses_an_unusable_staff_height_in_one_line(tmp_path, capsys, height):
    args = ["corpus", "build", "--out", str(tmp_path), "--sources", "none", "--procedural", "1", "--no-audio"]
    assert umt_main([*args, "--staff-height", height]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("umt: error:") and "--staff-height" in err and height in err and "\n" not in err
    assert not (tmp_path / cb.MANIFEST).exists()


def test_hostile_user_xml_is_refused(tmp_path):
    path = tmp_path / "bomb.musicxml"
    path.write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx"><!ENTITY y "&x;&x;&x;">]>'
        "<score-partwise>&y;</score-partwise>"
    )
    with pytest.raises(InputError, match="entity"):
        ex.load_score(ex.PieceRef("files/bomb", "files", str(path)))


def test_procedural_pieces_are_deterministic_grand_staff():
    first, second = _tiny_score(), _tiny_score()
    assert ex.to_musicxml(first) == ex.to_musicxml(second)
    assert [type(p).__name__ for p in first.parts] == ["PartStaff", "PartStaff"]
    assert [p.getElementsByClass("Measure").first().clef.sign for p in first.parts] == ["G", "F"]


def test_degradations_are_deterministic_and_keep_size():
    rng = np.random.default_rng(0)
    image = np.ones((40, 120), dtype=np.float32)
    image[10:30:4, 5:115] = 0.0  # staff lines
    image[12:26, 40:43] = 0.0  # a stem
    outputs = [degrade_array(image, seed) for seed in range(6)]
    assert all(o.shape == image.shape and o.min() >= 0 and o.max() <= 1 for o in outputs)
    assert np.array_equal(degrade_array(image, 3), outputs[3])
    assert any(not np.array_equal(o, image) for o in outputs)
    assert len({o.tobytes() for o in outputs}) > 1  # seeds differ
    from PIL import Image

    pil = Image.fromarray((rng.random((30, 50)) * 255).astype(np.uint8))
    assert degrade_image(pil, 1).size == pil.size
    assert np.array_equal(np.asarray(degrade_image(pil, 1)), np.asarray(degrade_image(pil, 1)))


def test_excerpt_plan_covers_windows_of_one_to_four_measures():
    from music21 import corpus

    score = ex.load_score(ex.PieceRef("bach/bwv66.6", "bach", str(corpus.getWork("bach/bwv66.6"))))
    specs = ex.plan_excerpts(score, np.random.default_rng(0), None)
    n_measures = len(score.parts[0].getElementsByClass("Measure"))
    assert specs[0].start == 0 and specs[-1].end == n_measures - 1
    assert all(b.start == a.end + 1 for a, b in itertools.pairwise(specs))
    assert all(1 <= s.end - s.start + 1 <= 4 for s in specs)
    assert os.fspath(cb.select_pieces(cb.BuildOptions(out=".", sources=["joplin"]))[0].path).endswith(".mxl")
