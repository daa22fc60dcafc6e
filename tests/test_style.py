"""The sheet-music autoencoder and the style probe on the built-in corpus: patches of its engraved
excerpts labelled with their composers (music21's corpus folders), a few CPU epochs of
``umt train experiment=sheet_autoencoder``, then ``umt eval style-probe`` against the image
tokenizer's latents and raw pixels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests import _inference_fixtures as fx
from umt.cli import main
from umt.models.sheet_autoencoder import SheetAutoencoder, SheetAutoencoderConfig

pytest.importorskip("verovio")


def test_the_paper_s_shapes():
    """448 -> 224 -> 112 -> 56 with 16, 32 and 64 filters; the reconstruction is the input's size."""
    model = SheetAutoencoder(SheetAutoencoderConfig(classes=7)).eval()
    x = torch.rand(2, 1, 448, 448)
    assert model.encode(x).shape == (2, 64, 56, 56)
    reconstruction, logits = model(x)
    assert reconstruction.shape == x.shape and logits.shape == (2, 7)
    assert float(reconstruction.min()) >= 0 and float(reconstruction.max()) <= 1


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("style")
    corpus = root / "corpus"
    assert main(["corpus", "build", "--out", str(corpus), "--sources", "bach,joplin", "--max-pieces", "3",
                 "--procedural", "1", "--excerpts-per-piece", "3", "--no-audio", "--workers", "1",
                 "--no-progress"]) == 0  # fmt: skip
    out = root / "patches"
    assert main(["data", "patches", "--pages", str(corpus / "manifest.jsonl"), "--image-field", "png",
                 "--label-field", "metadata.composer", "--group-field", "piece", "--out", str(out),
                 "--size", "48", "--per-page", "4",
                 "--max-whiteness", "0.97", "--no-progress"]) == 0  # fmt: skip
    return out / "manifest.jsonl"


def test_the_autoencoder_trains_and_the_probe_compares_features(patches, tmp_path, capsys):
    records = [json.loads(line) for line in patches.read_text().splitlines()]
    assert {r["label"] for r in records} == {
        "Johann Sebastian Bach",
        "Scott Joplin",
        None,
    }  # procedural: none
    by_group: dict[str, set] = {}
    for record in records:
        by_group.setdefault(record["group"], set()).add(record["label"])
    assert all(len(labels) == 1 for labels in by_group.values())  # a piece: one composer
    assert {group.split("/")[0] for group in by_group} == {"bach", "joplin", "procedural"}  # pieces
    from umt.training.config import compose
    from umt.training.train import train

    run = tmp_path / "run"
    overrides = ["experiment=sheet_autoencoder", f"autoencoder.patches={patches}", f"run_dir={run}",
                 "autoencoder.epochs=3", "autoencoder.batch_size=8",
                 "autoencoder.validation=0.5"]  # fmt: skip
    report = train(compose(overrides))
    assert report.classes == ["Johann Sebastian Bach", "Scott Joplin"] and report.epochs == 3
    assert 0 < report.validation_mse < 0.5 and report.head_accuracy is not None
    saved = json.loads((run / "model" / "train.json").read_text())
    assert saved["validation_patches"] == report.validation_patches > 0
    tokenizers = fx.make_tokenizer_dirs(tmp_path / "tokenizers")
    argv = ["eval", "style-probe", "--patches", str(patches), "--autoencoder", str(run / "model"),
            "--image-tokenizer", str(tokenizers["image"]), "--out", str(tmp_path / "probe")]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    table = capsys.readouterr().out
    for name in ("majority class", "autoencoder", "rqvae", "pixels"):
        assert f"| {name} |" in table
    metrics = json.loads((tmp_path / "probe" / "metrics.json").read_text())
    assert [r["name"] for r in metrics["results"]] == ["majority class", "autoencoder", "rqvae", "pixels"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in metrics["results"])
    assert metrics["split"]["classes"] == ["Johann Sebastian Bach", "Scott Joplin"]

    page = Path(records[0]["page"])
    argv = ["eval", "features", str(page), str(tmp_path / "missing.png"), "--checkpoint", str(run / "model"),
            "--plot", str(tmp_path / "maps.png")]  # fmt: skip
    assert main(argv) == 1  # the missing page is one line; the other is drawn
    assert "missing.png" in capsys.readouterr().err
    from PIL import Image

    sheet = Image.open(tmp_path / "maps.png")
    assert sheet.mode == "L" and sheet.size[0] == 8 * 64  # eight 64 px maps a row


def test_bad_requests_are_one_line(patches, tmp_path, capsys):
    assert main(["eval", "style-probe", "--patches", str(patches), "--autoencoder", str(tmp_path)]) == 2
    assert "not a sheet autoencoder folder" in capsys.readouterr().err
    from umt.errors import UserError
    from umt.training.config import compose
    from umt.training.train import train

    with pytest.raises(UserError, match="no such patches manifest"):
        train(compose(["experiment=sheet_autoencoder", f"autoencoder.patches={tmp_path / 'none.jsonl'}"]))


def test_a_killed_autoencoder_run_continues_to_the_same_weights(patches, tmp_path, monkeypatch):
    from tests._training_fixtures import assert_a_kill_changes_nothing
    from umt.training import autoencoder
    from umt.training.config import compose
    from umt.training.train import train

    def train_into(name: str) -> Path:
        run = tmp_path / name
        train(compose(["experiment=sheet_autoencoder", f"autoencoder.patches={patches}", f"run_dir={run}",
                       "autoencoder.epochs=3", "autoencoder.batch_size=8"]))  # fmt: skip
        return run

    assert_a_kill_changes_nothing(monkeypatch, autoencoder, train_into)
