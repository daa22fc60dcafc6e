"""``umt data prepare``: the paper's data sets in their published layouts (fixtures made here, never
downloaded) -> files and a manifest that baking and training read unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from umt.cli import main
from umt.data.prepare import CONVERTERS, prepare
from umt.data.prepare.base import read_splits_file
from umt.data.prepare.maestro import MaestroConverter, write_metadata
from umt.data.prepare.recordings import SAMPLE_RATE
from umt.errors import UserError
from umt.tokenizers.midi import notes_from_midi

PERFORMANCES = (  # (year, stem, split, seconds, sample rate)
    ("2004", "MIDI-Unprocessed_A_wav--1", "train", 2.5, 44100),
    ("2004", "MIDI-Unprocessed_B_wav--2", "train", 1.5, 48000),
    ("2006", "MIDI-Unprocessed_C_wav--1", "validation", 1.0, 44100),
    ("2008", "MIDI-Unprocessed_D_wav--3", "test", 2.0, 44100),
)


def make_maestro(root: Path, broken: bool = True) -> Path:
    """A MAESTRO v3.0.0 folder: the metadata CSV and the WAV/MIDI files it names (stereo 16-bit
    WAVs of sine tones at the notes' pitches, one at 48 kHz); with ``broken``, a row naming a
    missing file and a truncated WAV."""
    import pretty_midi

    rows = []
    rng = np.random.default_rng(0)
    for index, (year, stem, split, seconds, rate) in enumerate(PERFORMANCES):
        (root / year).mkdir(parents=True, exist_ok=True)
        midi = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(program=0)
        t = np.arange(int(seconds * rate)) / rate
        wave = np.zeros_like(t)
        for k, start in enumerate(np.arange(0.1, seconds - 0.3, 0.35)):
            pitch = 60 + (index * 3 + k * 5) % 24
            piano.notes.append(pretty_midi.Note(velocity=80, pitch=pitch, start=start, end=start + 0.3))
            inside = (t >= start) & (t < start + 0.3)
            wave[inside] += 0.2 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t[inside])
        midi.instruments.append(piano)
        midi.write(str(root / year / f"{stem}.midi"))
        stereo = np.stack([wave, wave + 0.001 * rng.standard_normal(len(wave))], axis=1)
        soundfile.write(str(root / year / f"{stem}.wav"), stereo.astype(np.float32), rate, subtype="PCM_16")
        rows.append(
            ["Composer", f"Piece {index}", split, year, f"{year}/{stem}.midi", f"{year}/{stem}.wav", seconds]
        )
    if broken:
        rows.append(["X", "Missing", "train", "2009", "2009/gone.midi", "2009/gone.wav", 3.0])
        (root / "2004" / "cut.midi").write_bytes((root / "2004" / f"{PERFORMANCES[0][1]}.midi").read_bytes())
        wav = (root / "2004" / f"{PERFORMANCES[0][1]}.wav").read_bytes()
        (root / "2004" / "cut.wav").write_bytes(wav[:30])  # a header cut short
        rows.append(["Y", "Truncated", "test", "2004", "2004/cut.midi", "2004/cut.wav", 2.5])
    write_metadata(root, rows)
    return root


@pytest.fixture(scope="module")
def maestro(tmp_path_factory) -> Path:
    return make_maestro(tmp_path_factory.mktemp("downloads") / "maestro-v3.0.0")


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_maestro_keeps_published_splits_and_lists_broken_items(maestro, tmp_path, capsys):
    out = tmp_path / "maestro"
    assert (
        main(["data", "prepare", "maestro", "--root", str(maestro), "--out", str(out), "--no-progress"]) == 1
    )
    err = capsys.readouterr().err
    assert "4 converted, 2 failed" in err
    assert "umt: error: gone: " in err and "no such file" in err
    assert "umt: error: cut: " in err and "not a readable audio file" in err
    records = _records(out)
    assert [(r["key"], r["split"]) for r in records] == [
        (stem, split) for _, stem, split, _, _ in PERFORMANCES
    ]
    for record, (year, stem, _, seconds, _) in zip(records, PERFORMANCES):
        assert record["piece"] == stem and record["start_seconds"] == 0.0
        samples, rate = soundfile.read(str(out / record["audio"]))
        assert rate == SAMPLE_RATE and samples.ndim == 1  # mono at the codec's rate
        assert abs(len(samples) - seconds * SAMPLE_RATE) <= 2 and record["end_seconds"] == pytest.approx(
            seconds, abs=1e-4
        )
        source = notes_from_midi(maestro / year / f"{stem}.midi")
        assert notes_from_midi(out / record["midi"]) == source
        assert not Path(record["audio"]).is_absolute() and ".." not in Path(record["audio"]).parts
    assert [json.loads(line)["key"] for line in (out / "failures.jsonl").read_text().splitlines()] == [
        "gone",
        "cut",
    ]


def test_killed_conversion_rerun_gives_the_same_manifest_and_a_finished_one_is_a_no_op(maestro, tmp_path):
    straight = prepare(MaestroConverter(maestro, tmp_path / "straight"), progress=False)

    class Killed(Exception):
        pass

    def kill_after_two(key: str) -> None:
        if key == PERFORMANCES[1][1]:
            raise Killed

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        prepare(MaestroConverter(maestro, out), progress=False, on_unit_done=kill_after_two)
    assert not (out / "manifest.jsonl").exists()
    resumed = prepare(MaestroConverter(maestro, out), progress=False)
    assert (resumed.skipped, resumed.converted) == (2, 2)
    assert (out / "manifest.jsonl").read_bytes() == (tmp_path / "straight" / "manifest.jsonl").read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")}
    again = prepare(MaestroConverter(maestro, out), progress=False)
    assert again.converted == 0 and again.skipped == 4 and straight.converted == 4
    assert {p: p.stat().st_mtime_ns for p in (out / "audio").rglob("*.flac")} == stamps


def test_never_overwrites_another_folder(maestro, tmp_path):
    # A folder that is not the data set: one line, and --out is not even made.
    assert main(["data", "prepare", "olimpic", "--root", str(maestro), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not made by umt data prepare"):
        prepare(MaestroConverter(maestro, out), progress=False)
    other = tmp_path / "other"
    prepare(MaestroConverter(maestro, other), limit=1, progress=False)
    with pytest.raises(UserError, match="holds data prepared from 'maestro' at"):
        prepare(
            MaestroConverter(make_maestro(tmp_path / "another copy", broken=False), other), progress=False
        )


def test_u_must_split_manifests_replace_the_published_splits(maestro, tmp_path):
    """A dataset_pair_paths/maestro.json-style file: entries name a performance by its token files."""
    a, b = PERFORMANCES[0][1], PERFORMANCES[2][1]
    splits_file = tmp_path / "maestro.json"
    splits_file.write_text(
        json.dumps(
            {
                "train": [
                    {"dac": [f"audio_tokens/2006/{b}/mono/{b}_0000.dac"], "npy": f"2006/{b}_note_events.npy"}
                ],
                "test": [
                    {"dac": [f"audio_tokens/2004/{a}/mono/{a}_12.5.dac"], "npy": f"2004/{a}_note_events.npy"}
                ],
            }
        )
    )
    pieces = [stem for _, stem, *_ in PERFORMANCES]
    assert read_splits_file(splits_file, pieces) == {b: "train", a: "test"}
    out = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "prepare",
                "maestro",
                "--root",
                str(maestro),
                "--out",
                str(out),
                "--splits",
                str(splits_file),
                "--no-progress",
            ]
        )
        == 0
    )
    assert [(r["key"], r["split"]) for r in _records(out)] == [(a, "test"), (b, "train")]


def make_score_set(root: Path, layout: str) -> Path:
    """An OLiMPiC or GrandStaff-LMX folder: ``samples.{train,test}.txt`` and, per sample, a system
    rendered with Verovio and its LMX (linearized from the same MusicXML). OLiMPiC: two scores of
    two systems (one score per split), a listed sample whose files are missing and a corrupt PNG;
    GrandStaff: two samples with plain and distorted JPEGs."""
    from PIL import Image

    from tests._inference_fixtures import piano_musicxml, render
    from umt.tokenizers.lmx import linearize_string

    def write(sample: str, seed: int, image_paths: list[str]) -> None:
        musicxml = piano_musicxml(1 + seed % 2, seed)
        (root / f"{sample}.lmx").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{sample}.lmx").write_text(" ".join(linearize_string(musicxml)) + "\n")
        for index, relative in enumerate(image_paths):
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            pixels = render(musicxml)
            Image.fromarray(pixels if index == 0 else (pixels * 0.9).astype(np.uint8)).save(root / relative)

    splits: dict[str, list[str]] = {"train": [], "test": []}
    if layout == "olimpic":
        for seed, (score, split) in enumerate((("4904021", "train"), ("4919673", "test"))):
            for system in ("p1-s1", "p1-s2"):
                sample = f"samples/{score}/{system}"
                write(sample, seed * 2 + len(splits[split]), [f"{sample}.png"])
                splits[split].append(sample)
        splits["train"].append("samples/4904021/p2-s1")  # listed, never written
        (root / "samples/4919673/p1-s2.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    else:
        for seed, (sample, split) in enumerate(
            (
                ("chopin/preludes/prelude28-7/maj2_down_m-0-4", "train"),
                ("mozart/sonata/sonata16/min3_up_m-8-12", "test"),
            )
        ):
            write(sample, seed, [f"grandstaff/{sample}.jpg", f"grandstaff/{sample}_distorted.jpg"])
            splits[split].append(sample)
    for split, samples in splits.items():
        (root / f"samples.{split}.txt").write_text("".join(s + "\n" for s in samples))
    return root


def test_olimpic_keeps_scores_in_their_split_and_lists_broken_samples(tmp_path, capsys):
    pytest.importorskip("verovio")
    root = make_score_set(tmp_path / "olimpic-1.0-synthetic", "olimpic")
    out = tmp_path / "olimpic"
    assert main(["data", "prepare", "olimpic", "--root", str(root), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "umt: error: samples/4904021/p2-s1: " in err and "no such file" in err
    assert "umt: error: samples/4919673/p1-s2: " in err and "not a readable image" in err
    records = _records(out)
    assert [(r["key"], r["split"], r["piece"]) for r in records] == [
        ("samples/4904021/p1-s1", "train", "samples/4904021"),
        ("samples/4904021/p1-s2", "train", "samples/4904021"),
        ("samples/4919673/p1-s1", "test", "samples/4919673"),
    ]
    for record in records:
        assert (out / record["image"]).read_bytes() == (root / f"{record['key']}.png").read_bytes()
        assert (out / record["lmx"]).read_text() == (root / f"{record['key']}.lmx").read_text()


def test_grandstaff_gives_plain_and_distorted_examples(tmp_path):
    pytest.importorskip("verovio")
    root = make_score_set(tmp_path / "grandstaff-lmx.1.0", "grandstaff")
    summary = prepare(CONVERTERS["grandstaff"](root, tmp_path / "out"), progress=False)
    assert (summary.converted, summary.failures) == (4, [])
    keys = [(r["key"], r["split"]) for r in _records(tmp_path / "out")]
    first, second = "chopin/preludes/prelude28-7/maj2_down_m-0-4", "mozart/sonata/sonata16/min3_up_m-8-12"
    assert keys == [
        (first, "train"),
        (first + ".distorted", "train"),
        (second, "test"),
        (second + ".distorted", "test"),
    ]


def test_cli_lists_every_converter():
    from umt.cli.data import NAMES

    assert sorted(NAMES) == sorted(CONVERTERS)


def test_prepared_data_sets_bake_and_train_end_to_end(tmp_path):
    """GrandStaff-LMX and MAESTRO fixtures -> umt data prepare -> umt bake (tiny RQ-VAE and DAC,
    LMX, MIDI in the default 20 s windows) -> the tiny experiment trains on them (OMR on grandstaff,
    AMT on maestro), with the tiny tokenizers' vocabulary."""
    pytest.importorskip("verovio")
    from tests._inference_fixtures import TINY_VOCAB, make_tokenizer_dirs
    from umt.data.pipeline import PairedDataset
    from umt.data.shards import ShardSet
    from umt.training.config import compose
    from umt.training.train import train

    downloads = {
        "maestro": make_maestro(tmp_path / "maestro-v3.0.0", broken=False),
        "grandstaff": make_score_set(tmp_path / "grandstaff-lmx.1.0", "grandstaff"),
    }
    tokenizers = make_tokenizer_dirs(tmp_path / "tokenizers", seed=0)
    vocab_file = tmp_path / "vocab.json"
    vocab_file.write_text(json.dumps(TINY_VOCAB))
    shards = tmp_path / "shards"
    bakes = {"maestro": ("audio", "midi"), "grandstaff": ("image", "lmx")}
    for name, root in downloads.items():
        data = tmp_path / "data" / name
        args = ["--root", str(root), "--out", str(data), "--workers", "2", "--no-progress"]
        assert main(["data", "prepare", name, *args]) == 0
        for modality in bakes[name]:
            tokenizer = ["--tokenizer", str(tokenizers[modality])] if modality in tokenizers else []
            manifest = ["--manifest", str(data / "manifest.jsonl"), "--vocab", str(vocab_file)]
            out = ["--out", str(shards / name / modality), "--variants", "2", "--no-progress"]
            assert main(["bake", modality, *tokenizer, *manifest, *out]) == 0
    amt = PairedDataset(ShardSet(shards / "maestro" / "audio"), ShardSet(shards / "maestro" / "midi"))
    assert [k for k, variant, _ in amt.items if variant == 0] == [f"{stem}@0" for _, stem, *_ in PERFORMANCES]
    omr = PairedDataset(ShardSet(shards / "grandstaff" / "image"), ShardSet(shards / "grandstaff" / "lmx"))
    assert omr.num_keys == 4
    run = tmp_path / "run"
    overrides = [
        "experiment=tiny",
        f"data.root={shards}",
        f"run_dir={run}",
        "data.max_len.audio=250",
        "data.max_len.midi=250",
        "logger.kind=none",
        "trainer.max_steps=4",
        *(f"vocab.{key}={value}" for key, value in TINY_VOCAB.items()),
    ]
    train(compose(overrides))
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_slakh_takes_its_splits_from_folders_and_leaves_omitted_out(tmp_path, capsys):
    """Slakh2100 redux: TrackNNNNN folders with mix.flac and all_src.mid under train/validation/test
    (and omitted); a piano and a drum track, a track without its MIDI."""
    import pretty_midi

    root = tmp_path / "slakh2100_flac_redux"
    tracks = {"train": ["Track00001", "Track00003"], "test": ["Track01876"], "omitted": ["Track00002"]}
    for split, names in tracks.items():
        for index, name in enumerate(names):
            folder = root / split / name
            folder.mkdir(parents=True)
            t = np.arange(int(1.5 * 22050)) / 22050
            soundfile.write(
                str(folder / "mix.flac"), (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 22050
            )
            if name == "Track00003":
                continue  # no MIDI
            midi = pretty_midi.PrettyMIDI()
            piano = pretty_midi.Instrument(program=0)
            piano.notes.append(pretty_midi.Note(velocity=90, pitch=60 + index, start=0.1, end=0.9))
            drums = pretty_midi.Instrument(program=0, is_drum=True)
            drums.notes.append(pretty_midi.Note(velocity=90, pitch=36, start=0.5, end=0.6))
            midi.instruments += [piano, drums]
            midi.write(str(folder / "all_src.mid"))
    out = tmp_path / "slakh"
    assert main(["data", "prepare", "slakh", "--root", str(root), "--out", str(out), "--no-progress"]) == 1
    assert "umt: error: Track00003: " in capsys.readouterr().err
    records = _records(out)
    assert [(r["key"], r["split"]) for r in records] == [("Track00001", "train"), ("Track01876", "test")]
    for record in records:
        samples, rate = soundfile.read(str(out / record["audio"]))
        assert rate == SAMPLE_RATE and abs(len(samples) - 1.5 * SAMPLE_RATE) <= 2  # resampled from 22.05 kHz
        notes = notes_from_midi(out / record["midi"])
        assert sorted(n.is_drum for n in notes) == [False, True]


def _tone_and_midi(wav: Path, midi_path: Path | None, pitch: int, seconds: float = 1.5, rate: int = 44100):
    """A sine tone at ``pitch`` from 0.2 s to 1.0 s, and (when a path is given) its MIDI."""
    import pretty_midi

    t = np.arange(int(seconds * rate)) / rate
    wave = np.where((t >= 0.2) & (t < 1.0), 0.2 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t), 0.0)
    wav.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(wav), wave.astype(np.float32), rate, subtype="PCM_16")
    if midi_path is not None:
        midi = pretty_midi.PrettyMIDI()
        strings = pretty_midi.Instrument(program=40)
        strings.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=0.2, end=1.0))
        midi.instruments.append(strings)
        midi_path.parent.mkdir(parents=True, exist_ok=True)
        midi.write(str(midi_path))


def test_musicnet_reads_the_em_labels_and_leaves_out_recordings_without_them(tmp_path, capsys):
    """MusicNet's train_data/test_data WAVs with MusicNet-EM's MIDI (nested musicnet_em/musicnet_em,
    as some copies unpack), the metadata CSV; 2194 has no EM label (as in the release), 2628's label
    is truncated."""
    root = tmp_path / "musicnet"
    labels = root / "musicnet_em" / "musicnet_em"
    for folder, key, pitch in (
        ("train_data", "1727", 62),
        ("train_data", "2194", 64),
        ("test_data", "2191", 67),
        ("test_data", "2628", 69),
    ):
        _tone_and_midi(root / folder / f"{key}.wav", None if key == "2194" else labels / f"{key}.mid", pitch)
    (labels / "2628.mid").write_bytes((labels / "2628.mid").read_bytes()[:20])
    (root / "musicnet_metadata.csv").write_text(
        "id,composer,composition,movement,ensemble,source,transcriber,catalog_name,seconds\n"
        "1727,Schubert,Piano Quintet in A major,2. Andante,Piano Quintet,European Archive,x,D667,447\n"
    )
    out = tmp_path / "out"
    assert main(["data", "prepare", "musicnet", "--root", str(root), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "2 converted, 1 failed, 1 left out (left_out.jsonl)" in err
    assert "umt: error: 2628: " in err
    records = _records(out)
    assert [(r["key"], r["split"]) for r in records] == [("1727", "train"), ("2191", "test")]
    assert records[0]["composer"] == "Schubert" and records[0]["ensemble"] == "Piano Quintet"
    assert notes_from_midi(out / records[1]["midi"]) == notes_from_midi(labels / "2191.mid")
    left_out = [json.loads(line) for line in (out / "left_out.jsonl").read_text().splitlines()]
    assert [row["key"] for row in left_out] == ["2194"]
    # U-MusT's dataset_pair_paths/musicnet.json names recordings by their EM note-event files.
    splits_file = tmp_path / "musicnet.json"
    splits_file.write_text(
        json.dumps(
            {
                "train": [
                    {"dac": ["test_data/2191_augmented_0.dac"], "npy": "musicnet_em/2191_note_events.npy"}
                ],
                "test": [
                    {"dac": ["train_data/1727_augmented_0.dac"], "npy": "musicnet_em/1727_note_events.npy"}
                ],
            }
        )
    )
    args = [
        "--root",
        str(root),
        "--out",
        str(tmp_path / "resplit"),
        "--splits",
        str(splits_file),
        "--no-progress",
    ]
    assert main(["data", "prepare", "musicnet", *args]) == 0
    assert [(r["key"], r["split"]) for r in _records(tmp_path / "resplit")] == [
        ("1727", "test"),
        ("2191", "train"),
    ]


def make_bpsd(root: Path) -> Path:
    """BPSD v2's layout: an unfolded score of 9 bars (piano, two staves) with two performances,
    AS35 timed in ann_audio_measure (bar k starts at 0.5 + 1.2 (k - 1) s, the end row is bar 10)
    and FG58 without bar times; a second piece whose recordings the archive does not hold."""
    from tests._inference_fixtures import piano_musicxml

    piece = "Beethoven_Op049No2-01"
    scores = root / "0_RawData" / "score_xml_unfolded"
    scores.mkdir(parents=True)
    (scores / f"{piece}.xml").write_text(piano_musicxml(9, seed=3))
    (scores / "Beethoven_Op106-01.xml").write_text(piano_musicxml(2, seed=4))
    for performer in ("AS35", "FG58"):
        _tone_and_midi(root / "1_Audio" / f"{piece}_{performer}.wav", None, 60, seconds=12.0)
    measures = root / "2_Annotations" / "ann_audio_measure"
    measures.mkdir(parents=True)
    rows = "".join(f"{0.5 + 1.2 * (bar - 1):.3f};{bar}\n" for bar in range(1, 11))
    (measures / f"{piece}_AS35.csv").write_text("start;measure\n" + rows)
    return root


def test_bpsd_cuts_systems_with_each_performances_audio(tmp_path, capsys):
    pytest.importorskip("verovio")
    from PIL import Image

    root = make_bpsd(tmp_path / "Beethoven_Piano_Sonata_Dataset_v2")
    out = tmp_path / "bpsd"
    assert main(["data", "prepare", "bpsd", "--root", str(root), "--out", str(out), "--no-progress"]) == 0
    assert "1 converted, 0 failed, 2 left out" in capsys.readouterr().err
    records = _records(out)
    assert [(r["key"], r["measures"], r["split"]) for r in records] == [
        ("Beethoven_Op049No2-01_AS35/m0001-0004", [1, 4], "test"),
        ("Beethoven_Op049No2-01_AS35/m0005-0008", [5, 8], "test"),
        ("Beethoven_Op049No2-01_AS35/m0009-0009", [9, 9], "test"),
    ]
    for record in records:
        first, last = record["measures"]
        # U-MusT's margins: 0.1 s before the first bar, 0.05 s before the bar after the system.
        assert record["start_seconds"] == pytest.approx(0.5 + 1.2 * (first - 1) - 0.1)
        assert record["end_seconds"] == pytest.approx(0.5 + 1.2 * last - 0.05)
        samples, rate = soundfile.read(str(out / record["audio"]))
        assert len(samples) == pytest.approx((record["end_seconds"] - record["start_seconds"]) * rate, abs=2)
        assert (out / record["lmx"]).read_text().split().count("measure") == last - first + 1
        with Image.open(out / record["image"]) as image:
            assert image.height > 40 and image.width > image.height
    left_out = [json.loads(line) for line in (out / "left_out.jsonl").read_text().splitlines()]
    assert [(row["key"], row["reason"]) for row in left_out] == [
        ("Beethoven_Op049No2-01_FG58", "no bar times for it"),
        ("Beethoven_Op106-01", "no recording in 1_Audio"),
    ]


def test_bpsd_lists_a_piece_whose_bar_times_are_garbled(tmp_path, capsys):
    pytest.importorskip("verovio")
    root = make_bpsd(tmp_path / "Beethoven_Piano_Sonata_Dataset_v2")
    (root / "2_Annotations" / "ann_audio_measure" / "Beethoven_Op049No2-01_AS35.csv").write_text(
        "start;measure\nx;y\n"
    )
    out = tmp_path / "bpsd"
    assert main(["data", "prepare", "bpsd", "--root", str(root), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "umt: error: Beethoven_Op049No2-01: " in err and "holds no bar times" in err
    assert (out / "manifest.jsonl").read_text() == ""


def test_bpsd_rerun_is_a_no_op(tmp_path):
    """Several records per unit (a piece's systems) and left-out items survive a rerun unchanged."""
    pytest.importorskip("verovio")
    from umt.data.prepare.bpsd import BpsdConverter

    root = make_bpsd(tmp_path / "Beethoven_Piano_Sonata_Dataset_v2")
    first = prepare(BpsdConverter(root, tmp_path / "out"), progress=False)
    files = {name: (tmp_path / "out" / name).read_bytes() for name in ("manifest.jsonl", "left_out.jsonl")}
    again = prepare(BpsdConverter(root, tmp_path / "out"), progress=False)
    assert (first.converted, again.converted, again.skipped) == (1, 0, 1)
    assert {name: (tmp_path / "out" / name).read_bytes() for name in files} == files
    assert len(again.left_out) == 2


def test_bpsd_systems_follow_the_scores_own_breaks():
    from music21 import converter, layout

    from tests._inference_fixtures import piano_musicxml
    from umt.data.prepare.bpsd import system_spans

    score = converter.parseData(piano_musicxml(6, seed=1), format="musicxml")
    assert system_spans(score) == [(0, 3), (4, 5)]
    score.parts[0].getElementsByClass("Measure")[2].insert(0, layout.SystemLayout(isNew=True))
    assert system_spans(score) == [(0, 1), (2, 5)]


def test_ytsv_finds_slides_within_a_frame_and_applies_the_papers_filters(tmp_path, capsys):
    """A video of a dark, silent title card, then pages of 2, 1 and 3 systems (a cut, a crossfade,
    a cut), and a silent outro page (a crossfade): three examples, with their system counts, cut
    at the slide boundaries to within one frame; the title card and the outro are left out."""
    pytest.importorskip("verovio")
    pytest.importorskip("imageio_ffmpeg")
    from PIL import Image

    from tests._video_fixtures import FPS, PagePlan, make_score_video

    root = tmp_path / "ytsv"
    (root / "mp4").mkdir(parents=True)
    (root / "metadata").mkdir()
    plan = [
        PagePlan(0, 1.0, "cut", None),
        PagePlan(2, 2.0, "cut", 60),
        PagePlan(1, 2.0, "fade", 64),
        PagePlan(3, 2.0, "cut", 67),
        PagePlan(2, 1.0, "fade", None),
    ]
    boundaries = make_score_video(root / "mp4" / "p0gqoNe4h0c.mp4", plan)
    (root / "mp4" / "notavideo01.mp4").write_text("a web page saved under the wrong name")
    (root / "metadata" / "ytsv_metadata.csv").write_text(
        "YT Id,Title of Video,Composer Full Name,Staff Count\n"
        "p0gqoNe4h0c,Sonata (with Score),Anon,0-2\nmissing0001,Gone,Anon,0-2\n"
        "notavideo01,Broken,Anon,0-2\n"
    )
    (root / "test_included_yt_ids.csv").write_text("YT Id,dataset\np0gqoNe4h0c,musicnet\n")
    out = tmp_path / "out"
    assert main(["data", "prepare", "ytsv", "--root", str(root), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "umt: error: missing0001: " in err and "no video file" in err
    assert "umt: error: notavideo01: " in err and "no readable sound" in err
    records = _records(out)
    assert [(r["key"], r["split"], r["systems"]) for r in records] == [
        ("p0gqoNe4h0c/0001", "test", 2),
        ("p0gqoNe4h0c/0002", "test", 1),
        ("p0gqoNe4h0c/0003", "test", 3),
    ]
    for record, start, end in zip(records, boundaries, boundaries[1:]):
        assert abs(record["start_seconds"] - start / FPS) <= 1 / FPS + 1e-9
        assert abs(record["end_seconds"] - end / FPS) <= 1 / FPS + 1e-9
        samples, rate = soundfile.read(str(out / record["audio"]))
        assert abs(len(samples) - (record["end_seconds"] - record["start_seconds"]) * rate) <= 2
        assert (record["title_of_video"], record["staff_count"]) == ("Sonata (with Score)", "0-2")
        with Image.open(out / record["image"]) as image:
            assert image.width * image.height <= 256_000
    left_out = [json.loads(line) for line in (out / "left_out.jsonl").read_text().splitlines()]
    assert [(row["key"], row["reason"].split(" (")[0]) for row in left_out] == [
        ("p0gqoNe4h0c/0000", "too dark for a score page"),
        ("p0gqoNe4h0c/0004", "silent"),
    ]
    # Baked, each slide's systems pair with its audio (one window each): the I2A/A2I examples.
    from tests._inference_fixtures import TINY_VOCAB, make_tokenizer_dirs
    from umt.data.pipeline import PairedDataset
    from umt.data.shards import ShardSet

    tokenizers = make_tokenizer_dirs(tmp_path / "tokenizers", seed=0)
    (tmp_path / "vocab.json").write_text(json.dumps(TINY_VOCAB))
    for modality in ("image", "audio"):
        args = ["--tokenizer", str(tokenizers[modality]), "--manifest", str(out / "manifest.jsonl")]
        args += ["--vocab", str(tmp_path / "vocab.json"), "--out", str(tmp_path / "shards" / modality)]
        assert main(["bake", modality, *args, "--no-progress"]) == 0
    pairs = PairedDataset(ShardSet(tmp_path / "shards" / "image"), ShardSet(tmp_path / "shards" / "audio"))
    assert pairs.num_keys == 3
    # A slide's PNG stacks its systems and records their rows: it tokenizes as the systems, sep between.
    from umt.tokenizers.image import ImageTokenizer
    from umt.vocab import VocabConfig, Vocabulary

    tokenizer = ImageTokenizer.from_pretrained(tokenizers["image"])
    vocab = Vocabulary(VocabConfig(**TINY_VOCAB))
    for record in records:
        systems = tokenizer.load(out / record["image"])
        assert len(systems) == record["systems"]
        rows = tokenizer.tokenize(systems, vocab)
        assert (rows == vocab.special_row(vocab.sep)).all(axis=1).sum() == record["systems"] - 1


def test_ytsv_splits_follow_the_papers_rule():
    from umt.data.prepare.ytsv import paper_splits

    ids = [f"id{n:03d}" for n in range(100)]
    splits = paper_splits(ids, {"id007", "id050"})
    counts = {name: sum(1 for s in splits.values() if s == name) for name in ("train", "valid", "test")}
    assert counts == {"train": 85, "valid": 7, "test": 8}
    assert splits["id007"] == splits["id050"] == "test"
    assert paper_splits(list(reversed(ids)), {"id007", "id050"}) == splits  # order of the CSV: no matter


def test_every_paper_table_runs_on_prepared_data_sets(tmp_path):
    """OLiMPiC, MAESTRO and BPSD fixtures -> umt data prepare -> every ``umt eval paper-table-*``
    command on a tiny random model (its figures are meaningless): each test set is a row, named
    after its data set, and the paper's figure stands beside ours where the paper publishes one."""
    pytest.importorskip("verovio")
    pytest.importorskip("librosa")
    from tests._inference_fixtures import make_model_folder

    downloads = {
        "olimpic": make_score_set(tmp_path / "olimpic-1.0-scanned", "olimpic"),
        "maestro": make_maestro(tmp_path / "maestro-v3.0.0", broken=False),
        "bpsd": make_bpsd(tmp_path / "Beethoven_Piano_Sonata_Dataset_v2"),
    }
    data = {}
    for name, root in downloads.items():
        data[name] = tmp_path / "data" / name
        args = ["--root", str(root), "--out", str(data[name]), "--no-progress"]
        assert main(["data", "prepare", name, *args]) in (0, 1)  # OLiMPiC lists its broken samples
    model = make_model_folder(tmp_path / "model")
    tables = {
        "paper-table-7": ("olimpic", "bpsd"),
        "paper-table-8": ("maestro",),
        "paper-table-i2a": ("bpsd",),
        "paper-table-a2i": ("bpsd",),
        "paper-table-m2a": ("maestro",),
    }
    for table, names in tables.items():
        out = tmp_path / "eval" / table
        sets = [arg for name in names for arg in ("--data", str(data[name]))]
        common = ["--checkpoint", str(model), "--out", str(out), "--limit", "2", "--max-len", "24"]
        assert main(["eval", table, *sets, *common, "--batch-size", "2", "--no-progress"]) == 0, table
        metrics = json.loads((out / "metrics.json").read_text())
        rows = {name: figures["items"] for name, figures in metrics["test_sets"].items()}
        expected = {
            "olimpic": "olimpic/olimpic-1.0-scanned",
            "maestro": "maestro/maestro-v3.0.0",
            "bpsd": "bpsd/Beethoven_Piano_Sonata_Dataset_v2",
        }
        held_out = {"olimpic": 1, "maestro": 1, "bpsd": 2}  # test items (BPSD: 3, cut by --limit)
        assert [rows[expected[name]] for name in names] == [held_out[name] for name in names]
        text = (out / "table.md").read_text()
        if table == "paper-table-7":
            assert "| 24.58 (paper)" not in text and "13.67 (paper) |" in text and "23.36 (paper) |" in text
        if table in ("paper-table-i2a", "paper-table-a2i", "paper-table-m2a"):
            assert "Tables IV-VI" in text
