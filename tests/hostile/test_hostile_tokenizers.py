"""Broken and hostile reference checkpoints given to ``umt tokenizer import``: one line naming the file,
exit 2, nothing written, and a pickled payload never runs (its marker file stays absent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from umt.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RQVAE_REFERENCE = FIXTURES / "rqvae_reference" / "tiny_rqvae"
DAC_REFERENCE = FIXTURES / "dac_reference" / "tiny_dac.pth"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _audio_case(name: str, root: Path, marker: Path) -> Path:
    path = root / f"{name}.pth"
    saved = torch.load(DAC_REFERENCE, weights_only=True)
    if name == "zero_bytes":
        path.write_bytes(b"")
    elif name == "truncated":
        data = DAC_REFERENCE.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif name == "letter":
        path.write_text("Dear reader\n")
    elif name == "payload":
        saved["metadata"]["evil"] = _Payload(marker)
        torch.save(saved, path)
    elif name == "wrong_shapes":
        saved["metadata"]["kwargs"]["latent_dim"] = 2 * saved["metadata"]["kwargs"].get("latent_dim", 8)
        torch.save(saved, path)
    elif name == "no_metadata":
        torch.save({"state_dict": saved["state_dict"]}, path)
    elif name == "a_folder":
        path.mkdir()
    return path


def _image_case(name: str, root: Path, marker: Path) -> Path:
    folder = root / name
    shutil.copytree(RQVAE_REFERENCE, folder)
    weights, config = folder / "epoch1_model.pt", folder / "config.yaml"
    if name == "no_config":
        config.unlink()
    elif name == "config_not_yaml":
        config.write_text("arch: [unclosed\n")
    elif name == "config_not_rqvae":
        config.write_text("arch: {type: something-else}\n")
    elif name == "wrong_shapes":
        document = yaml.safe_load(config.read_text())
        document["arch"]["hparams"]["embed_dim"] *= 2
        config.write_text(yaml.safe_dump(document))
    elif name == "no_weights":
        weights.unlink()
    elif name == "two_weights":
        shutil.copy(weights, folder / "epoch2_model.pt")
    elif name == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif name == "payload":
        saved = torch.load(weights, weights_only=True)
        torch.save({"state_dict": saved.get("state_dict", saved), "evil": _Payload(marker)}, weights)
    return folder


AUDIO_CASES = ["zero_bytes", "truncated", "letter", "payload", "wrong_shapes", "no_metadata", "a_folder"]
IMAGE_CASES = ["no_config", "config_not_yaml", "config_not_rqvae", "wrong_shapes", "no_weights",
               "two_weights", "truncated", "payload"]  # fmt: skip


@pytest.mark.parametrize(
    ("modality", "case"), [("audio", c) for c in AUDIO_CASES] + [("image", c) for c in IMAGE_CASES]
)
def test_a_bad_reference_is_one_line_and_writes_nothing(tmp_path, capsys, modality, case):
    marker = tmp_path / "payload-ran"
    make = _audio_case if modality == "audio" else _image_case
    reference = make(case, tmp_path, marker)
    out = tmp_path / "out"
    assert main(["tokenizer", "import", modality, str(reference), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("umt: error: "), err
    assert str(reference) in err, err  # names the folder or the file in it that is wrong
    assert not out.exists()
    assert not marker.exists()  # the pickled payload never ran
