"""FID and MusicScore's FID-n: known answers, then ``umt eval fid`` on page folders with a page
classifier's features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from umt.cli import main
from umt.metrics.fid import fid, fid_n


def test_identical_sets_give_zero():
    features = np.random.default_rng(0).standard_normal((50, 6))
    assert fid(features, features) == pytest.approx(0.0, abs=1e-8)


def test_two_gaussian_sets_give_the_closed_form():
    """Diagonal covariances: FID = |mu_a - mu_b|^2 + sum(s_a + s_b - 2 sqrt(s_a s_b)). With 200k
    draws the fitted Gaussians are within sampling error of the true ones."""
    rng = np.random.default_rng(1)
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    a = mu_a + np.sqrt(var_a) * rng.standard_normal((200_000, 3))
    b = mu_b + np.sqrt(var_b) * rng.standard_normal((200_000, 3))
    closed = np.sum((mu_a - mu_b) ** 2) + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
    assert fid(a, b) == pytest.approx(closed, abs=0.03)


def test_fid_n_draws_n_per_set_seeded_and_reports_the_spread():
    rng = np.random.default_rng(2)
    real, generated = rng.standard_normal((40, 4)), rng.standard_normal((30, 4)) + 1.0
    first, again = fid_n(real, generated, 8, repeats=5, seed=3), fid_n(real, generated, 8, repeats=5, seed=3)
    assert first.values == again.values and len(first.values) == 5
    assert first.mean == pytest.approx(np.mean(first.values)) and first.std == pytest.approx(
        np.std(first.values)
    )
    assert first.std > 0  # different draws, different values
    other = fid_n(real, generated, 8, repeats=5, seed=4)
    assert other.values != first.values
    with pytest.raises(ValueError, match="FID-31"):
        fid_n(real, generated, 31)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """A classifier trained on generated pages, and folders of score and text pages for FID."""
    pytest.importorskip("verovio")
    from PIL import Image

    from tests._page_fixtures import labelled_folder, score_page, text_page

    root = tmp_path_factory.mktemp("fid")
    labelled = labelled_folder(root / "labelled", count=12)
    classifier = root / "classifier"
    argv = ["classify-pages", "train", "--data", str(labelled), "--out", str(classifier), "--epochs", "4",
            "--image-size", "96", "--widths", "8,16,32,64", "--batch-size", "8", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    folders = {"classifier": classifier}
    for name, make, seeds in (("real", score_page, range(100, 116)), ("real2", score_page, range(200, 216)),
                              ("text", text_page, range(100, 116))):  # fmt: skip
        folders[name] = root / name
        folders[name].mkdir()
        for seed in seeds:
            Image.fromarray(make(seed)).save(folders[name] / f"{seed}.png")
    return folders


def test_umt_eval_fid_ranks_score_pages_nearer_to_score_pages_than_text(pages, tmp_path, capsys):
    def run(generated: str, out: Path) -> dict:
        argv = ["eval", "fid", "--real", str(pages["real"]), "--generated", str(pages[generated]),
                "--classifier", str(pages["classifier"]), "--n", "8,16", "--repeats", "3",
                "--out", str(out)]  # fmt: skip
        assert main(argv) == 0, capsys.readouterr().err
        return json.loads((out / "metrics.json").read_text())

    near, far = run("real2", tmp_path / "near"), run("text", tmp_path / "far")
    table = capsys.readouterr().out
    assert "| FID-8 (mean ± std of 3) |" in table and "| FID-16" in table
    assert near["fid"] < far["fid"]
    assert near["fid_8"]["mean"] < far["fid_8"]["mean"] and near["fid_16"]["mean"] < far["fid_16"]["mean"]
    assert near["real"] == near["generated"] == 16


def test_umt_eval_fid_refuses_bad_requests_in_one_line(pages, tmp_path, capsys):
    base = ["eval", "fid", "--real", str(pages["real"]), "--classifier", str(pages["classifier"])]
    assert main([*base, "--generated", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main([*base, "--generated", str(pages["text"]), "--features", "inception-v9"]) == 2
    assert "one of inception, page-classifier" in capsys.readouterr().err
    assert main([*base, "--generated", str(pages["text"]), "--features", "inception"]) == 2
    assert "--features inception needs its model: --inception FILE" in capsys.readouterr().err
    odd = tmp_path / "odd"
    odd.mkdir()
    for path in sorted(pages["text"].glob("*.png"))[:3]:
        (odd / path.name).write_bytes(path.read_bytes())
    (odd / "broken.png").write_text("not an image")
    assert main([*base, "--generated", str(odd), "--n", "8", "--repeats", "2"]) == 1
    err = capsys.readouterr().err
    assert f"umt: error: {odd / 'broken.png'}: " in err and "umt: error: FID-8: needs 2..3 images" in err


def _seeded_weights(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The weights the reference features were computed with (tests/fixtures/fid_inception/README.md)."""
    import zlib

    state = {}
    for name, shape in shapes.items():
        generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        if name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=generator)
        elif name.endswith("num_batches_tracked"):
            state[name] = torch.zeros(shape, dtype=torch.long)
        elif name.endswith("bn.weight"):
            state[name] = 1 + 0.1 * torch.randn(shape, generator=generator)
        elif len(shape) > 1:
            state[name] = torch.randn(shape, generator=generator) * (2.0 / int(np.prod(shape[1:]))) ** 0.5
        else:
            state[name] = 0.1 * torch.randn(shape, generator=generator)
    return state


def test_fid_inception_gives_pytorch_fid_s_features(tmp_path):
    """The same weights (a seeded recipe, in torchvision's names, with the 1008-way classifier the
    published file has) and the same pages give pytorch-fid's features to float precision."""
    from umt.metrics.fid import FEATURES
    from umt.models.inception import FidInception

    shapes = {name: tuple(t.shape) for name, t in FidInception().state_dict().items()}
    state = _seeded_weights({**shapes, "fc.weight": (1008, 2048), "fc.bias": (1008,)})
    torch.save(state, tmp_path / "pt_inception.pth")
    features = FEATURES["inception"](str(tmp_path / "pt_inception.pth"))
    rng = np.random.default_rng(5)
    pages = [
        rng.integers(0, 256, size=shape).astype(np.uint8) for shape in ((120, 90), (299, 299), (410, 333))
    ]
    expected = np.load(Path(__file__).parent / "fixtures" / "fid_inception" / "features.npz")["features"]
    ours = features(pages)
    assert ours.shape == (3, 2048)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_fid_inception_refuses_files_that_are_not_its_weights(tmp_path):
    from umt.errors import CheckpointError
    from umt.models.inception import load_fid_inception

    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth: not FID Inception-v3 weights"):
        load_fid_inception(tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"text\.pth: not a readable weights file"):
        load_fid_inception(tmp_path / "text.pth")
