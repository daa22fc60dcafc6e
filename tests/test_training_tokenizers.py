"""Training with the tokenizers that baked the shards: fingerprints in the checkpoint, refused
mismatches (training, resume, ``umt export``) and embeddings initialised from their codebooks.

The tokenizers are the random tiny ones of ``tests/_inference_fixtures.py`` (4 codebooks; 32 image
codes, 64 audio codes); the shards are random rows of the matching vocabulary, stamped with the
tokenizers' fingerprints as baking would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests._inference_fixtures import TINY_VOCAB, make_tokenizer_dirs, tiny_vocab
from tests._training_fixtures import make_shards
from umt.cli import main

DATASETS = {"grandstaff": ("image", "lmx", 8), "maestro": ("audio", "midi", 8)}


def _fingerprints(dirs: dict[str, Path]) -> dict[str, str]:
    from umt.tokenizers.folders import load_tokenizer

    return {modality: load_tokenizer(folder).fingerprint for modality, folder in dirs.items()}


def _overrides(shards: Path, run: Path, tokenizers: dict[str, Path] | None, *extra: str) -> list[str]:
    return [
        "experiment=tiny",
        f"data.root={shards}",
        f"run_dir={run}",
        "logger.kind=none",
        *(f"vocab.{key}={value}" for key, value in TINY_VOCAB.items()),
        *(f"data.tokenizers.{m}={d}" for m, d in (tokenizers or {}).items()),
        *extra,
    ]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """Tokenizers (the shards' and other ones), stamped shards and a 2-step run trained on them."""
    from umt.training.config import compose
    from umt.training.train import train

    root = tmp_path_factory.mktemp("tokenized")
    tokenizers = make_tokenizer_dirs(root / "tokenizers", seed=0)
    others = make_tokenizer_dirs(root / "others", seed=1)
    hashes = _fingerprints(tokenizers)
    assert hashes != _fingerprints(others)
    shards = make_shards(root / "shards", tiny_vocab(), DATASETS, hashes=hashes)
    run = root / "run"
    train(compose(_overrides(shards, run, tokenizers, "trainer.max_steps=2")))
    return {
        "root": root,
        "tokenizers": tokenizers,
        "others": others,
        "hashes": hashes,
        "shards": shards,
        "checkpoint": run / "checkpoints" / "last.ckpt",
    }


def test_checkpoint_records_the_shards_tokenizers(setup) -> None:
    checkpoint = torch.load(setup["checkpoint"], map_location="cpu", weights_only=True)
    assert checkpoint["umt_tokenizer_hashes"] == setup["hashes"]
    model = checkpoint["hyper_parameters"]["model"]
    assert (model["image_code_dim"], model["audio_code_dim"]) == (16, 16)  # RQ-VAE / DAC latent widths
    assert "translator.codebook_vectors.image.vectors" in checkpoint["state_dict"]


def test_embeddings_start_from_the_tokenizers_codebooks(setup, tmp_path) -> None:
    from umt.tokenizers.folders import load_tokenizer
    from umt.training.config import compose, validate
    from umt.training.train import build

    tokenizers = setup["tokenizers"]
    _, module, _, _ = build(validate(compose(_overrides(setup["shards"], tmp_path, tokenizers))))
    translator, vocab = module.translator, module.vocab

    def standardised(vectors: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.cat(vectors)
        return (stacked - stacked.mean(0)) / stacked.std()

    image = load_tokenizer(tokenizers["image"])
    expected_image = [cb.codebook.detach() for cb in image.model.quantizer.codebooks]
    # DAC: a code's contribution to the latent, read through the codec's own decoding path
    # (codebook k's contribution = from_codes with code i in k minus from_codes without k).
    codec = load_tokenizer(tokenizers["audio"]).codec
    codes = torch.arange(64)
    with torch.no_grad():
        expected_audio = []
        for k in range(4):
            prefix = torch.zeros(1, k, 64, dtype=torch.long)
            with_k = torch.cat([prefix, codes[None, None]], dim=1)
            base = codec.quantizer.from_codes(prefix) if k else 0.0
            expected_audio.append((codec.quantizer.from_codes(with_k) - base)[0].t())
    with torch.no_grad():
        for modality, expected in (("image", expected_image), ("audio", expected_audio)):
            table = translator.codebook_vectors[modality]
            torch.testing.assert_close(table.vectors, standardised(expected), rtol=1e-4, atol=1e-5)
            ids = torch.arange(
                vocab.codebook_range(modality, 0).start, vocab.codebook_range(modality, 3).stop
            )
            assert torch.count_nonzero(translator.token_embedding.weight[ids]) == 0
            torch.testing.assert_close(translator.embed_ids(ids), table.project(table.vectors))

    # Switched off (or no tokenizers): plain embedding tables, as before.
    _, plain, _, _ = build(
        validate(compose(_overrides(setup["shards"], tmp_path, tokenizers, "init_codebook_embeddings=false")))
    )
    assert len(plain.translator.codebook_vectors) == 0
    assert plain.hparams["model"]["image_code_dim"] == 0


def test_training_refuses_shards_of_other_tokenizers(setup, tmp_path) -> None:
    from umt.errors import CheckpointError, UserError
    from umt.training.config import compose
    from umt.training.train import train

    others = setup["others"]
    with pytest.raises(UserError, match="tokenizer_hash"):
        train(compose(_overrides(setup["shards"], tmp_path / "a", {"image": others["image"]})))
    # Resuming the run on shards baked by other tokenizers is refused before any step.
    other_shards = make_shards(
        tmp_path / "other_shards", tiny_vocab(), DATASETS, hashes=_fingerprints(others)
    )
    run = tmp_path / "b"
    with pytest.raises(CheckpointError, match="trained on audio tokens of tokenizer"):
        train(compose(_overrides(other_shards, run, None, f"resume={setup['checkpoint']}")))


def test_export_refuses_a_tokenizer_the_model_was_not_trained_with(setup, tmp_path, capsys) -> None:
    checkpoint, tokenizers, others = setup["checkpoint"], setup["tokenizers"], setup["others"]
    out = tmp_path / "model"
    argv = ["export", str(checkpoint), "--out", str(out)]
    assert main([*argv, "--tokenizer", str(tokenizers["image"]), "--tokenizer", str(others["audio"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("umt: error: "), err
    wrong = _fingerprints({"audio": others["audio"]})["audio"]
    assert f"trained with audio tokenizer {setup['hashes']['audio']}, not {wrong}" in err, err
    assert not out.exists() and not list(tmp_path.iterdir())

    assert (
        main([*argv, "--tokenizer", str(tokenizers["image"]), "--tokenizer", str(tokenizers["audio"])]) == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert {m: e["fingerprint"] for m, e in config["tokenizers"].items()} == setup["hashes"]
    assert (out / "tokenizers" / "audio" / "config.json").is_file()

    # Without --tokenizer the trained fingerprints are still recorded (from_pretrained checks them).
    assert main([*argv]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["tokenizers"] == {m: {"fingerprint": h} for m, h in setup["hashes"].items()}

    # The library call refuses a mismatched folder given without a fingerprint, writing nothing.
    from umt.errors import CheckpointError
    from umt.pretrained import export_checkpoint

    with pytest.raises(CheckpointError, match="trained with image tokenizer"):
        export_checkpoint(checkpoint, tmp_path / "lib", tokenizer_dirs={"image": others["image"]})
    assert not (tmp_path / "lib").exists()
