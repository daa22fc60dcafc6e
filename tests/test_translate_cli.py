"""``umt translate`` / ``infer.py`` end to end on a tiny random exported model (see
``tests/_inference_fixtures.py``): every task writes outputs that their readers open, runs are
reproducible, bad inputs are reported one line each while the others succeed, mismatches are refused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import _inference_fixtures as fx
import numpy as np
import pytest

from tests._subprocess import checkout_env
from umt.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("translate")
    model = fx.make_model_folder(root)
    inputs = root / "inputs"
    inputs.mkdir()
    system = fx.render(fx.piano_musicxml(2, 1))
    page = fx.stack_page([system, fx.render(fx.melody_musicxml(4, 2)), fx.render(fx.piano_musicxml(3, 3))])
    files = {
        "model": model,
        "root": root,
        "system": fx.save_png(system, inputs / "system.png"),
        "page": fx.save_png(page, inputs / "page.png"),
        "wav": fx.save_wav(inputs / "tones.wav", 3.0),
        "score": inputs / "score.musicxml",
        "lmx": inputs / "score.lmx",
        "bad_png": inputs / "broken.png",
        "bad_wav": inputs / "broken.wav",
        "bad_xml": inputs / "broken.musicxml",
    }
    files["pdf"] = fx.save_pdf(files["page"], inputs / "page.pdf")
    files["score"].write_text(fx.piano_musicxml(2, 4))
    files["lmx"].write_text("measure clef:G2 C4 quarter E4 quarter G4 half\n")
    files["bad_png"].write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    files["bad_wav"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    files["bad_xml"].write_text("<score-partwise><part id='P1'><measure>")
    files["midi"] = fx.save_midi(inputs / "tune.mid", seconds=3.0)
    files["empty_midi"] = inputs / "empty.mid"
    files["empty_midi"].write_bytes(b"")
    return files


def translate(workspace, task, inputs, out, *extra) -> int:
    argv = ["translate", "--checkpoint", str(workspace["model"]), "--task", task]
    argv += [str(workspace[name]) if name in workspace else str(name) for name in inputs]
    return main([*argv, "-o", str(out), "--max-len", "24", "--quiet", *extra])


def error_lines(captured) -> list[str]:
    return [line for line in captured.err.splitlines() if line.startswith("umt: error:")]


def check_musicxml(path: Path) -> None:
    from music21 import converter

    text = path.read_text()
    assert "<score-partwise" in text
    converter.parse(str(path))


def check_wav(path: Path) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(str(path))
    assert rate == 44100 and audio.ndim == 1 and len(audio) > 0
    return audio


def check_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        assert image.mode == "L" and image.width > 0 and image.height > 0


def check_midi(path: Path) -> None:
    import pretty_midi

    pretty_midi.PrettyMIDI(str(path))


# --------------------------------------------------------------------------------- tasks
def test_omr_on_system_page_and_pdf(workspace, tmp_path, capsys):
    status = translate(workspace, "omr", ["system", "page", "pdf"], tmp_path)
    assert status == 0, capsys.readouterr().err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "page.lmx",
        "page.musicxml",
        "page_2.lmx",
        "page_2.musicxml",
        "system.lmx",
        "system.musicxml",
    ]
    for name in ("system", "page", "page_2"):
        check_musicxml(tmp_path / f"{name}.musicxml")
    # One LMX system per score system: the page and the PDF page each hold three.
    assert (tmp_path / "system.lmx").read_text().count("\n---\n") == 1  # header separator only
    assert (tmp_path / "page.lmx").read_text().count("\n---\n") == 3
    assert (tmp_path / "page_2.lmx").read_text().count("\n---\n") == 3
    # ... and the page's MusicXML breaks its one part into the same three systems
    assert (tmp_path / "page.musicxml").read_text().count('new-system="yes"') == 2
    assert (tmp_path / "system.musicxml").read_text().count('new-system="yes"') == 0


def test_image_to_audio(workspace, tmp_path):
    assert translate(workspace, "i2a", ["system", "page"], tmp_path) == 0
    single, page = check_wav(tmp_path / "system.wav"), check_wav(tmp_path / "page.wav")
    assert len(page) > len(single)  # three systems' audio, one after the other


def test_audio_to_image(workspace, tmp_path):
    assert translate(workspace, "a2i", ["wav"], tmp_path, "--temperature", "1") == 0
    check_png(tmp_path / "tones.png")


def test_lmx_to_image_from_musicxml_and_lmx_text(workspace, tmp_path):
    assert translate(workspace, "l2i", ["score", "lmx"], tmp_path, "--temperature", "1") == 0
    check_png(tmp_path / "score.png")
    check_png(tmp_path / "score_2.png")


def test_transcription_of_wav_flac_and_mp3(workspace, tmp_path, capsys):
    import soundfile

    audio, rate = soundfile.read(str(workspace["wav"]))
    flac, mp3 = tmp_path / "low_rate.flac", tmp_path / "song.mp3"
    soundfile.write(str(flac), audio[::2], rate // 2)  # 22.05 kHz: resampled on reading
    soundfile.write(str(mp3), audio, rate, format="MP3")
    status = translate(workspace, "amt", ["wav", flac, mp3], tmp_path / "out")
    assert status == 0, capsys.readouterr().err
    for name in ("tones", "low_rate", "song"):
        check_midi(tmp_path / "out" / f"{name}.mid")


def test_midi_to_audio(workspace, tmp_path):
    assert translate(workspace, "m2a", ["midi"], tmp_path) == 0
    check_wav(tmp_path / "tune.wav")


def test_cascade_image_to_audio(workspace, tmp_path, capsys):
    status = translate(workspace, "cascade-i2a", ["system"], tmp_path, "--temperature", "1", "--seed", "3")
    assert status == 0, capsys.readouterr().err
    check_musicxml(tmp_path / "system.musicxml")
    check_midi(tmp_path / "system.mid")
    check_wav(tmp_path / "system.wav")


def test_cascade_with_a_separate_m2a_checkpoint(workspace, tmp_path, capsys):
    other = fx.make_model_folder(tmp_path / "m2a", tasks=["m2a"], seed=5)
    status = translate(
        workspace, "cascade-i2a", ["system"], tmp_path / "out", "--temperature", "1", "--seed", "3",
        "--m2a-checkpoint", str(other),
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    check_wav(tmp_path / "out" / "system.wav")


# ------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_outputs(workspace, tmp_path):
    for run in ("a", "b", "c"):
        seed = "1" if run == "c" else "0"
        sampling = ["--temperature", "1", "--top-k", "50", "--seed", seed]
        assert translate(workspace, "omr", ["page"], tmp_path / run, *sampling) == 0
    first = (tmp_path / "a" / "page.lmx").read_bytes()
    assert first == (tmp_path / "b" / "page.lmx").read_bytes()
    assert first != (tmp_path / "c" / "page.lmx").read_bytes()


def test_greedy_batch_size_does_not_change_outputs(workspace, tmp_path):
    assert translate(workspace, "omr", ["page", "system"], tmp_path / "one", "--batch-size", "1") == 0
    assert translate(workspace, "omr", ["page", "system"], tmp_path / "four", "--batch-size", "4") == 0
    for name in ("page.lmx", "page.musicxml", "system.lmx"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "four" / name).read_bytes()
    assert translate(workspace, "i2a", ["page"], tmp_path / "wav1", "--batch-size", "1") == 0
    assert translate(workspace, "i2a", ["page"], tmp_path / "wav3", "--batch-size", "3") == 0
    assert (tmp_path / "wav1" / "page.wav").read_bytes() == (tmp_path / "wav3" / "page.wav").read_bytes()


# ------------------------------------------------------------------------------ failures
def test_bad_inputs_are_reported_per_file_and_others_go_on(workspace, tmp_path, capsys):
    missing = workspace["root"] / "inputs" / "missing.png"
    status = translate(workspace, "omr", ["bad_png", "system", missing, "wav"], tmp_path)
    captured = capsys.readouterr()
    assert status == 1
    lines = error_lines(captured)
    assert len(lines) == 3, captured.err
    assert any(str(workspace["bad_png"]) in line and "not a readable image" in line for line in lines)
    assert any(str(missing) in line and "no such file" in line for line in lines)
    assert any(str(workspace["wav"]) in line and "not an image or PDF" in line for line in lines)
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["system.lmx", "system.musicxml"]  # nothing partial


def test_bad_audio_and_scores_are_reported(workspace, tmp_path, capsys):
    assert translate(workspace, "a2i", ["bad_wav", "wav"], tmp_path / "a", "--temperature", "1") == 1
    lines = error_lines(capsys.readouterr())
    assert len(lines) == 1 and str(workspace["bad_wav"]) in lines[0] and "audio" in lines[0]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["tones.png"]
    assert translate(workspace, "l2i", ["bad_xml", "lmx"], tmp_path / "l", "--temperature", "1") == 1
    lines = error_lines(capsys.readouterr())
    assert len(lines) == 1 and str(workspace["bad_xml"]) in lines[0]
    assert [p.name for p in (tmp_path / "l").iterdir()] == ["score.png"]


def test_empty_midi_is_reported(workspace, tmp_path, capsys):
    assert translate(workspace, "m2a", ["empty_midi", "midi"], tmp_path) == 1
    lines = error_lines(capsys.readouterr())
    assert len(lines) == 1 and "empty.mid" in lines[0] and "empty" in lines[0].split("empty.mid")[1]
    assert [p.name for p in tmp_path.iterdir()] == ["tune.wav"]


def test_mismatched_checkpoint_is_refused_with_one_line(workspace, tmp_path, capsys):
    from umt.models.rqvae import tiny_rqvae_config
    from umt.tokenizers.image import new_tokenizer

    copy = tmp_path / "model"
    shutil.copytree(workspace["model"], copy)
    new_tokenizer(tiny_rqvae_config(n_embed=16)).save_pretrained(copy / "tokenizers" / "image")
    argv = ["translate", "--checkpoint", str(copy), "--task", "omr", str(workspace["system"])]
    assert main([*argv, "-o", str(tmp_path / "out"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and error_lines(captured)
    assert "image tokenizer" in captured.err and not (tmp_path / "out").exists()


def test_task_the_model_was_not_trained_for_is_refused(workspace, tmp_path, capsys):
    folder = fx.make_model_folder(tmp_path, tasks=["omr"])
    argv = ["translate", "--checkpoint", str(folder), "--task", "i2a", str(workspace["system"])]
    assert main([*argv, "-o", str(tmp_path / "out"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1
    assert "trained for omr, not i2a" in captured.err


def test_not_a_model_folder(tmp_path, capsys):
    assert (
        main(["translate", "--checkpoint", str(tmp_path), "--task", "omr", "x.png", "-o", str(tmp_path)]) == 2
    )
    assert "config.json" in capsys.readouterr().err


def test_infer_py_runs_the_same_command(workspace, tmp_path):
    env = checkout_env(OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        str(REPO / "infer.py"),
        "--checkpoint",
        str(workspace["model"]),
        "--task",
        "omr",
    ]
    command += [str(workspace["system"]), "-o", str(tmp_path), "--max-len", "12", "--device", "cpu"]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    check_musicxml(tmp_path / "system.musicxml")
    assert "translate omr" in completed.stderr  # the progress bar goes to stderr


@pytest.mark.gpu
def test_translation_on_cuda_matches_across_batch_sizes(workspace, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    for task, inputs in (("omr", ["page", "system"]), ("i2a", ["page"]), ("a2i", ["wav"])):
        runs = []
        for batch in ("1", "4"):
            out = tmp_path / f"{task}-{batch}"
            extra = ["--device", "cuda", "--batch-size", batch]
            extra += ["--temperature", "1"] if task == "a2i" else []
            assert translate(workspace, task, inputs, out, *extra) == 0
            runs.append({p.name: p.read_bytes() for p in out.iterdir()})
        if task != "a2i":  # sampling consumes the generator per batch; greedy must not depend on it
            assert runs[0] == runs[1]
