"""Broken and hostile model folders and checkpoints: one line, a non-zero exit, and nothing run."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from tests import _inference_fixtures as fx
from umt.cli import main


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("good")
    model = fx.make_model_folder(root)
    image = fx.save_png(fx.render(fx.piano_musicxml(1, 1)), root / "system.png")
    return {"model": model, "image": image}


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _broken(good: dict[str, Path], tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(good["model"], folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    if name == "no_weights":
        (folder / "model.safetensors").unlink()
    elif name == "truncated_weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    elif name == "config_not_json":
        config_path.write_text("{'model': not json")
    elif name == "unknown_key":
        config["model"]["rotary_scale"] = 2.0
    elif name == "negative_size":
        config["model"]["d_model"] = -32
    elif name == "negative_vocab":
        config["vocab"]["image_codebook_size"] = -1
    elif name == "vocab_hash":
        config["vocab_hash"] = "0123456789abcdef"
    elif name == "tokenizer_does_not_fit":
        from umt.models.rqvae import tiny_rqvae_config
        from umt.tokenizers.image import new_tokenizer

        shutil.rmtree(folder / "tokenizers" / "image")
        new_tokenizer(tiny_rqvae_config(n_embed=16)).save_pretrained(folder / "tokenizers" / "image")
        config["tokenizers"]["image"].pop("fingerprint", None)
    elif name == "no_config":
        config_path.unlink()
    if name in ("unknown_key", "negative_size", "negative_vocab", "vocab_hash", "tokenizer_does_not_fit"):
        config_path.write_text(json.dumps(config))
    return folder


CASES = {
    "no_weights": "model.safetensors",
    "truncated_weights": "model.safetensors",
    "config_not_json": "config.json",
    "unknown_key": "rotary_scale",
    "negative_size": "d_model",
    "negative_vocab": "image_codebook_size",
    "vocab_hash": "vocabulary hash",
    "tokenizer_does_not_fit": "image tokenizer",
    "no_config": "config.json",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_model_folders_are_one_line(good, tmp_path, capsys, name):
    folder = _broken(good, tmp_path, name)
    out = tmp_path / "out"
    argv = ["translate", "--checkpoint", str(folder), "--task", "omr", str(good["image"]), "-o", str(out)]
    assert main([*argv, "--quiet", "--max-len", "8"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("umt: error:") and CASES[name] in lines[0], lines
    assert not out.exists() or not any(out.iterdir())


def test_a_pickle_with_a_payload_named_ckpt_never_runs(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    for argv in (
        ["export", str(checkpoint), "--out", str(tmp_path / "export")],
        [
            "translate",
            "--checkpoint",
            str(checkpoint),
            "--task",
            "omr",
            str(checkpoint),
            "-o",
            str(tmp_path / "o"),
        ],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()
    assert not (tmp_path / "export").exists()
