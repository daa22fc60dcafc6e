"""The MusicScore page classifier: ResNet-18 in plain PyTorch, trained on engraved score pages
against text and cover pages made in the test, resumable, and its CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from umt.cli import main
from umt.models.resnet import ResNet

pytest.importorskip("verovio")
pytest.importorskip("cairosvg")

SMALL = ["--image-size", "96", "--widths", "8,16,32,64", "--batch-size", "8", "--no-progress"]


def test_resnet18_has_resnet18_s_layout_and_size():
    """torchvision's resnet18 has 11,689,512 parameters for RGB input and 1000 classes; for one
    input channel and two classes that is 11,689,512 - 64 * 49 * 2 - 512 * 998 - 998 = 11,171,266."""
    model = ResNet(classes=2)
    assert sum(p.numel() for p in model.parameters()) == 11_171_266
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 2)
    assert model.features(torch.zeros(2, 1, 64, 64)).shape == (2, 512)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    from tests._page_fixtures import labelled_folder

    return labelled_folder(tmp_path_factory.mktemp("pages"), count=20)


def test_trains_to_tell_score_pages_from_text_pages(labelled, tmp_path, capsys):
    """20 engraved pages and 20 text or cover pages, a fifth of each held out: at least 95 % of the
    held-out pages right after a few CPU seconds."""
    import json

    out = tmp_path / "classifier"
    assert (
        main(["classify-pages", "train", "--data", str(labelled), "--out", str(out), "--epochs", "6", *SMALL])
        == 0
    )
    report = json.loads((out / "train.json").read_text())
    assert report["held_out_pages"] == 8 and report["train_pages"] == 32
    assert report["held_out_accuracy"] >= 0.95, report
    assert not (out / "train-state.pt").exists()
    capsys.readouterr()
    pages = (
        sorted((labelled / "score").glob("*.png"))[:2] + sorted((labelled / "non-score").glob("*.png"))[:2]
    )
    (tmp_path / "letter.png").write_text("Dear reader")
    assert main(["classify-pages", "predict", str(out), *map(str, pages), str(tmp_path / "letter.png")]) == 1
    captured = capsys.readouterr()
    labels = [line.split("\t")[1] for line in captured.out.splitlines()]
    assert labels == ["score", "score", "non-score", "non-score"]
    assert captured.err.strip().startswith(f"umt: error: {tmp_path / 'letter.png'}: ")
    assert len(captured.err.strip().splitlines()) == 1


def test_a_killed_training_continues_to_the_same_weights(labelled, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from umt.training import pages

    argv = ["classify-pages", "train", "--data", str(labelled), "--out"]
    assert main([*argv, str(tmp_path / "straight"), "--epochs", "3", *SMALL]) == 0
    real_save = pages.save_epoch_state

    def save_then_die(*args):
        real_save(*args)
        if args[-1] == 2:  # the epoch just saved
            raise KeyboardInterrupt  # killed after the second epoch's state was written

    monkeypatch.setattr(pages, "save_epoch_state", save_then_die)
    assert main([*argv, str(tmp_path / "killed"), "--epochs", "3", *SMALL]) == 130
    assert (tmp_path / "killed" / "train-state.pt").is_file()
    monkeypatch.setattr(pages, "save_epoch_state", real_save)
    assert main([*argv, str(tmp_path / "killed"), "--epochs", "3", *SMALL]) == 0
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # other settings into the same folder mid-run are refused, not mixed
    monkeypatch.setattr(pages, "save_epoch_state", save_then_die)
    assert main([*argv, str(tmp_path / "other"), "--epochs", "3", *SMALL]) == 130
    monkeypatch.setattr(pages, "save_epoch_state", real_save)
    assert main([*argv, str(tmp_path / "other"), "--epochs", "4", *SMALL]) == 2


def test_bad_folders_and_data_are_one_line(tmp_path, capsys):
    from umt.errors import CheckpointError
    from umt.musicscore.classifier import PageClassifier, PageClassifierConfig

    (tmp_path / "data" / "score").mkdir(parents=True)
    assert (
        main(
            [
                "classify-pages",
                "train",
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(tmp_path / "m"),
                *SMALL,
            ]
        )
        == 2
    )
    assert "needs page images in both score/ and non-score/" in capsys.readouterr().err
    classifier = PageClassifier(PageClassifierConfig(image_size=64, widths=(4, 4, 4, 4)))
    classifier.save_pretrained(tmp_path / "model")
    again = PageClassifier.from_pretrained(tmp_path / "model")
    page = np.full((120, 90), 255, np.uint8)
    assert again.score_probability([page]) == pytest.approx(classifier.score_probability([page]))
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"oops")
    with pytest.raises(CheckpointError, match="hash"):
        PageClassifier.from_pretrained(tmp_path / "model")
