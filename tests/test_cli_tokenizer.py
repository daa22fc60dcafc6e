"""``umt tokenizer train|info|import`` and ``train_dac``.

Training runs the tiny configs (``conf/tokenizer/{rqvae,dac}_tiny.yaml``) for a few CPU steps on
data made here (striped PNG "systems", sine WAVs). Import/info use the committed reference fixtures
``tests/fixtures/rqvae_reference`` (a kakaobrain-format RQ-VAE folder) and
``tests/fixtures/dac_reference/tiny_dac.pth`` (a descript-audio-codec ``DAC.save`` file); see
``tests/test_image_tokenizer.py`` / ``tests/test_dac.py`` for how they were made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from umt.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RQVAE_REFERENCE = FIXTURES / "rqvae_reference" / "tiny_rqvae"
DAC_REFERENCE = FIXTURES / "dac_reference" / "tiny_dac.pth"


def _one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("umt: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def _write_wavs(folder: Path) -> Path:
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(22050) / 44100
    for index, frequency in enumerate((220.0, 330.0)):
        soundfile.write(
            folder / f"tone{index}.wav", (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), 44100
        )
    return folder


def _write_score_images(folder: Path, count: int = 2) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = np.full((60, 140), 250, np.uint8)
        for line in range(5):
            image[10 + 6 * line, 4:136] = 30
        for x in rng.integers(10, 125, size=6):
            y = int(rng.integers(8, 30))
            image[y : y + 5, x : x + 6] = 15
        Image.fromarray(image).save(folder / f"system{index}.png")
    return folder


# ----------------------------------------------------------------------------------- import / info
def test_import_image_reference_round_trip(tmp_path, capsys):
    from umt.tokenizers.folders import load_tokenizer
    from umt.tokenizers.image import load_rqvae

    assert main(["tokenizer", "import", "image", str(RQVAE_REFERENCE), "--out", str(tmp_path / "img")]) == 0
    reference = load_rqvae(RQVAE_REFERENCE)
    printed = capsys.readouterr().out.split()
    assert printed[1:] == ["image", reference.fingerprint]
    restored = load_tokenizer(tmp_path / "img")
    assert restored.fingerprint == reference.fingerprint
    images = torch.rand(2, 1, 32, 48) * 2 - 1
    assert torch.equal(restored.encode(images), reference.encode(images))

    assert main(["tokenizer", "info", str(tmp_path / "img")]) == 0
    info = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert info["modality"] == "image" and info["fingerprint"] == reference.fingerprint
    assert info["codebooks"] == "4" and info["codebook_size"] == "16" and info["downsampling"] == "4"


def test_import_audio_reference_round_trip(tmp_path, capsys):
    from umt.tokenizers.audio import load_codec
    from umt.tokenizers.folders import load_tokenizer

    out = tmp_path / "aud"
    assert (
        main(["tokenizer", "import", "audio", str(DAC_REFERENCE), "--out", str(out), "--chunk-frames", "8"])
        == 0
    )
    restored = load_tokenizer(out)
    assert capsys.readouterr().out.split()[1:] == ["audio", restored.fingerprint]
    audio = torch.randn(1, 1, 512 * 12 + 5) * 0.3
    codec = load_codec(DAC_REFERENCE)
    assert restored.chunk_frames == 8
    assert torch.equal(restored.encode(audio), codec.encode(audio)[:, :, : restored.encode(audio).shape[-1]])

    assert main(["tokenizer", "info", str(out)]) == 0
    info = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert info["modality"] == "audio" and info["fingerprint"] == restored.fingerprint
    assert (info["codebooks"], info["codebook_size"], info["hop_length"]) == ("4", "64", "512")


def test_info_refuses_corrupt_or_foreign_folders_in_one_line(tmp_path, capsys):
    out = tmp_path / "aud"
    assert main(["tokenizer", "import", "audio", str(DAC_REFERENCE), "--out", str(out)]) == 0
    capsys.readouterr()
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-3] + b"xyz")
    assert main(["tokenizer", "info", str(out)]) == 2
    _one_error_line(capsys, "model.safetensors", "hash")

    (tmp_path / "empty").mkdir()
    assert main(["tokenizer", "info", str(tmp_path / "empty")]) == 2
    _one_error_line(capsys, "no config.json")
    (tmp_path / "empty" / "config.json").write_text('{"format": "umt-translator/1"}')
    assert main(["tokenizer", "info", str(tmp_path / "empty")]) == 2
    _one_error_line(capsys, "not a tokenizer format")
    assert main(["tokenizer", "info", str(tmp_path / "missing")]) == 2
    _one_error_line(capsys, "missing")


def test_import_refuses_bad_references_without_output(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(["tokenizer", "import", "audio", str(RQVAE_REFERENCE / "epoch1_model.pt"), "--out", str(out)])
        == 2
    )
    _one_error_line(capsys, "epoch1_model.pt")
    assert main(["tokenizer", "import", "image", str(DAC_REFERENCE), "--out", str(out)]) == 2
    _one_error_line(capsys, "tiny_dac.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a zip at all")
    assert main(["tokenizer", "import", "audio", str(tmp_path / "garbage.pth"), "--out", str(out)]) == 2
    _one_error_line(capsys, "garbage.pth")
    assert not out.exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["tokenizer", "import", "image", str(RQVAE_REFERENCE), "--out", str(tmp_path / "busy")]) == 2
    _one_error_line(capsys, "refusing to overwrite")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------- training
def test_train_image_tiny(tmp_path, capsys):
    from umt.tokenizers.image import ImageTokenizer

    images = _write_score_images(tmp_path / "images")
    argv = ["tokenizer", "train", "image", "--config", "rqvae_tiny", "--data", str(images)]
    assert main([*argv, "--out", str(tmp_path / "run"), "trainer.max_steps=2", "data.batch_size=2"]) == 0
    folder, modality, fingerprint = capsys.readouterr().out.split()
    assert Path(folder) == tmp_path / "run" / "tokenizer" and modality == "image"
    assert ImageTokenizer.from_pretrained(folder).fingerprint == fingerprint


def test_train_audio_tiny_resumes_when_rerun(tmp_path, capsys):
    from umt.tokenizers.audio import AudioTokenizer

    wavs = _write_wavs(tmp_path / "wavs")
    run = tmp_path / "run"
    argv = ["tokenizer", "train", "audio", "--config", "dac_tiny", "--data", str(wavs), "--out", str(run)]
    assert main([*argv, "num_iters=2"]) == 0
    folder, modality, fingerprint = capsys.readouterr().out.split()
    assert modality == "audio" and AudioTokenizer.from_pretrained(folder).fingerprint == fingerprint
    first = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert first["global_step"] == 4  # two optimizer steps (critic, generator) per iteration
    header = (run / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/mel/loss" in header and "train/adv/disc_loss" in header

    # Rerunning with a larger budget continues from last.ckpt (1 more iteration, not 3).
    assert main([*argv, "num_iters=3"]) == 0
    assert capsys.readouterr().out.split()[2] != fingerprint
    second = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert second["global_step"] == 6
    assert (run / "logs" / "resume-1" / "metrics.csv").is_file()  # earlier metrics kept
    assert (run / "logs" / "metrics.csv").read_text().splitlines()[0] == header


def test_train_data_from_manifest(tmp_path):
    from umt.training.dac import list_audio_files

    wavs = _write_wavs(tmp_path / "wavs")
    (tmp_path / "list.txt").write_text("# training files\nwavs/tone1.wav\n\nwavs/tone0.wav\n")
    assert list_audio_files(tmp_path / "list.txt") == [wavs / "tone1.wav", wavs / "tone0.wav"]
    assert list_audio_files(wavs) == [wavs / "tone0.wav", wavs / "tone1.wav"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["audio", "--config", "dac_tiny"], "no training data"),
        (["audio", "--config", "dac_tiny", "--data", "NOWHERE"], "NOWHERE: no such folder or manifest"),
        (["audio", "--config", "dac_tiny", "--data", "x", "num_iterz=3"], "bad tokenizer config"),
        (["audio", "--config", "no_such_config", "--data", "x"], "bad tokenizer config"),
        (["audio", "--config", "rqvae_tiny", "--data", "x"], "image tokenizer config, not audio"),
        (["image", "--config", "rqvae_tiny", "--data", "EMPTY"], "no image files"),
    ],
)
def test_train_refuses_bad_input_in_one_line(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "EMPTY").mkdir()
    assert main(["tokenizer", "train", *argv, "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, needle)
    assert not (tmp_path / "run" / "tokenizer").exists()


def test_print_config_applies_overrides(capsys):
    assert main(["tokenizer", "train", "audio", "--print-config", "num_iters=7", "--data", "/a/b"]) == 0
    out = capsys.readouterr().out
    assert "num_iters: 7" in out and "files: /a/b" in out and "encoder_dim: 64" in out
