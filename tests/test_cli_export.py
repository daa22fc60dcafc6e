"""``umt export``: a tiny training run's checkpoint to a model folder with its tokenizers.

The checkpoint comes from two CPU steps of ``experiment=tiny`` on shards made here
(``tests/_training_fixtures.py``); the tokenizers are random tiny ones sized to the tiny vocabulary
(2 codebooks x 8 codes), plus ones that do not fit it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests._training_fixtures import make_shards, tiny_vocab
from umt.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from umt.training.config import compose
    from umt.training.train import train

    root = tmp_path_factory.mktemp("export")
    shards = make_shards(root / "shards", tiny_vocab())
    run = root / "run"
    train(compose(["experiment=tiny", f"data.root={shards}", f"run_dir={run}", "trainer.max_steps=2"]))
    return run / "checkpoints" / "last.ckpt"


def _image_tokenizer(folder: Path, codebooks: int = 2, codes: int = 8) -> Path:
    from umt.models.rqvae import tiny_rqvae_config
    from umt.tokenizers.image import new_tokenizer

    torch.manual_seed(0)
    new_tokenizer(tiny_rqvae_config(num_codebooks=codebooks, n_embed=codes)).save_pretrained(folder)
    return folder


def _audio_tokenizer(folder: Path, codebooks: int = 2, codes: int = 8) -> Path:
    from umt.models.dac import DAC, DACConfig
    from umt.tokenizers.audio import AudioTokenizer

    torch.manual_seed(0)
    config = DACConfig(
        encoder_dim=4, latent_dim=16, decoder_dim=32, n_codebooks=codebooks, codebook_size=codes
    )
    AudioTokenizer(DAC(config), chunk_frames=8).save_pretrained(folder)
    return folder


def _one_error_line(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("umt: error: "), err
    for needle in needles:
        assert needle in err, err


def test_export_records_and_copies_tokenizers(checkpoint, tmp_path, capsys):
    from umt.pretrained import from_pretrained
    from umt.tokenizers.folders import load_tokenizer

    image = _image_tokenizer(tmp_path / "image_tok")
    audio = _audio_tokenizer(tmp_path / "audio_tok", codebooks=3)  # a codec may have extra codebooks
    out = tmp_path / "model"
    argv = [
        "export",
        str(checkpoint),
        "--out",
        str(out),
        "--tokenizer",
        str(image),
        "--tokenizer",
        str(audio),
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(str(out))
    config = json.loads((out / "config.json").read_text())
    fingerprints = {m: load_tokenizer(d).fingerprint for m, d in (("image", image), ("audio", audio))}
    for modality, fingerprint in fingerprints.items():
        entry = config["tokenizers"][modality]
        assert entry["fingerprint"] == fingerprint
        assert load_tokenizer(out / entry["path"]).fingerprint == fingerprint  # a verified copy
    assert config["global_step"] == 2 and config["vocab_hash"] == tiny_vocab().layout_hash

    model = from_pretrained(out, tiny_vocab(), tokenizer_fingerprints=fingerprints)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[f"translator.{name}"]), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]  # no staging left

    # Exporting again (no tokenizers) replaces the folder whole.
    assert main(["export", str(checkpoint), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["tokenizers"] == {}
    assert not (out / "tokenizers").exists()


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda d: _image_tokenizer(d, codebooks=4, codes=8), "image tokenizer makes 4 x 8 codes"),
        (lambda d: _image_tokenizer(d, codebooks=2, codes=16), "image tokenizer makes 2 x 16 codes"),
        (lambda d: _audio_tokenizer(d, codebooks=2, codes=16), "audio tokenizer makes 2 x 16 codes"),
        (lambda d: _audio_tokenizer(d, codebooks=1, codes=8), "audio tokenizer makes 1 x 8 codes"),
    ],
)
def test_export_refuses_tokenizers_that_do_not_fit(checkpoint, tmp_path, capsys, make, needle):
    folder = make(tmp_path / "tok")
    out = tmp_path / "model"
    assert main(["export", str(checkpoint), "--out", str(out), "--tokenizer", str(folder)]) == 2
    _one_error_line(capsys, needle, "tok")
    assert not out.exists()


def test_export_refuses_bad_inputs_in_one_line(checkpoint, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["export", str(tmp_path / "nope.ckpt"), "--out", str(out)]) == 2
    _one_error_line(capsys, "nope.ckpt", "no such checkpoint")
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    assert main(["export", str(tmp_path / "junk.ckpt"), "--out", str(out)]) == 2
    _one_error_line(capsys, "junk.ckpt", "not a readable training checkpoint")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    assert main(["export", str(tmp_path / "other.ckpt"), "--out", str(out)]) == 2
    _one_error_line(capsys, "other.ckpt", "not a translator training checkpoint")
    assert main(["export", str(checkpoint), "--out", str(out), "--tokenizer", str(tmp_path)]) == 2
    _one_error_line(capsys, "no config.json")
    image = _image_tokenizer(tmp_path / "a")
    twin = _image_tokenizer(tmp_path / "b")
    assert (
        main(
            [
                "export",
                str(checkpoint),
                "--out",
                str(out),
                "--tokenizer",
                str(image),
                "--tokenizer",
                str(twin),
            ]
        )
        == 2
    )
    _one_error_line(capsys, "two image tokenizers")
    assert not out.exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "busy")]) == 2
    _one_error_line(capsys, "refusing to overwrite")
