"""Vocabulary layout 1 -> 2 (`umt migrate`): the id map, shards, model folders and checkpoints.

Layout-1 artifacts are made here from layout-2 ones by the inverse permutation; the golden ids of
layout 1 (frozen by tests/test_vocab.py until layout 2) check the map itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._vocab import TINY_VOCAB
from umt.cli import main as umt_main
from umt.data.shards import ShardInfo, ShardSet, ShardWriter
from umt.errors import CheckpointError, InputError
from umt.migrate import PER_ID_WEIGHTS, v1_layout_hash, v1_to_v2
from umt.models.translator import Translator, TranslatorConfig
from umt.pretrained import export_checkpoint, from_pretrained
from umt.vocab import VocabConfig, Vocabulary, default_vocabulary


def test_layout_1_hash_and_ids_are_the_ones_it_froze() -> None:
    config = VocabConfig()
    assert v1_layout_hash(config) == "affddcd2ab193aab"  # layout 1's golden hash
    new_id = v1_to_v2(config)
    assert sorted(new_id.tolist()) == list(range(default_vocabulary().size))
    v2 = default_vocabulary()
    # layout 1: sos 1..4, eos 5..8 (image, audio, lmx, midi), sep 9, height 10..35, lmx 8228..
    assert [int(new_id[i]) for i in (1, 2, 3, 4)] == [v2.sos(m) for m in ("image", "audio", "lmx", "midi")]
    assert [int(new_id[i]) for i in (5, 6, 7, 8)] == [v2.eos(m) for m in ("image", "audio", "lmx", "midi")]
    assert new_id[9] == v2.sep and new_id[10] == v2.height(1) and new_id[35] == v2.height(26)
    assert new_id[36] == v2["image/cb0"].start and new_id[4132] == v2["audio/cb0"].start
    assert new_id[8228] == v2.lmx_id("measure") and new_id[10452] == v2["midi/shift"].id(2000)


def _layout_1_shards(directory: Path, config: VocabConfig, rows_v2: list[np.ndarray]) -> None:
    to_v1 = np.argsort(v1_to_v2(config))
    info = ShardInfo("lmx", v1_layout_hash(config), "")
    with ShardWriter(directory, info, items_per_shard=2) as writer:
        for index, rows in enumerate(rows_v2):
            writer.add(f"item{index}", to_v1[rows])


def test_shards_are_converted_into_a_new_folder(tmp_path: Path, capsys) -> None:
    config = VocabConfig(**TINY_VOCAB)
    vocab = Vocabulary(config)
    rows = [
        vocab.single_stream_rows([vocab.lmx_id(t) for t in ("measure", "C4", "quarter")][: n + 1])
        for n in range(3)
    ]
    _layout_1_shards(tmp_path / "old", config, rows)
    (tmp_path / "old" / "notes.txt").write_text("beside the shards\n")
    with pytest.raises(InputError, match="umt migrate"):
        ShardSet(tmp_path / "old", vocab_hash=vocab.layout_hash)
    sizes = [f"--vocab={key}={value}" for key, value in TINY_VOCAB.items() if key != "modalities"]
    argv = ["migrate", str(tmp_path / "old"), "--out", str(tmp_path / "new")]
    assert umt_main([*argv, *sizes]) == 0
    assert "converted 2 shard files" in capsys.readouterr().out
    shards = ShardSet(tmp_path / "new", modality="lmx", vocab_hash=vocab.layout_hash)
    for index, expected in enumerate(rows):
        np.testing.assert_array_equal(shards.get(f"item{index}"), expected)
    assert (tmp_path / "new" / "notes.txt").read_text() == "beside the shards\n"
    # Without the sizes the shards were baked with, their hash is not layout 1's: one line, no output.
    assert umt_main(["migrate", str(tmp_path / "old"), "--out", str(tmp_path / "other")]) == 2
    assert "is not a layout-1 hash" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    # Converting again is refused: the output exists, and converted shards are layout 2 already.
    assert umt_main([*argv, *sizes]) == 2
    assert "already exists" in capsys.readouterr().err
    again = [
        "migrate",
        str(tmp_path / "new"),
        "--out",
        str(tmp_path / "x"),
        *sizes,
    ]
    assert umt_main(again) == 2
    assert "already in vocabulary layout 2" in capsys.readouterr().err
    assert (
        umt_main(["migrate", str(tmp_path / "old"), "--out", str(tmp_path / "y"), "--vocab", "sizes=3"]) == 2
    )
    assert "KEY one of" in capsys.readouterr().err


def _tiny_translator(vocab: Vocabulary) -> tuple[Translator, TranslatorConfig]:
    config = TranslatorConfig.tiny(d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1, ff_dim=32,
                                   subdecoder_heads=2, max_source_len=32, max_target_len=16)  # fmt: skip
    torch.manual_seed(0)
    model = Translator(config, vocab)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))  # biases too: every per-id row differs
    return model.eval(), config


def _layout_1_checkpoint(path: Path, model: Translator, config: TranslatorConfig) -> dict:
    """A training checkpoint as layout 1 stored it: per-id rows (and their Adam moments) in old order."""
    vocab_config = model.vocab.config
    new_id = torch.from_numpy(v1_to_v2(vocab_config))
    state = {f"translator.{k}": v.clone() for k, v in model.state_dict().items()}
    for name in PER_ID_WEIGHTS:
        state[f"translator.{name}"] = state[f"translator.{name}"][new_id]
    moments = {
        0: {"step": torch.tensor(3.0), "exp_avg": state["translator.head.weight"] * 0.5},
        1: {"step": torch.tensor(3.0), "exp_avg": torch.ones(config.d_model)},  # not per-id
    }
    ckpt = {
        "hyper_parameters": {"model": config.to_dict(), "vocab": dict(TINY_VOCAB), "tasks": ["omr"]},
        "state_dict": state,
        "optimizer_states": [{"state": moments, "param_groups": []}],
        "global_step": 7,
        "umt_vocab_hash": v1_layout_hash(vocab_config),
    }
    torch.save(ckpt, path)
    return ckpt


def _source(vocab: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
    codes = vocab.codes_to_ids("image", np.arange(6 * 2).reshape(6, 2) % 8)
    rows = np.concatenate(
        [vocab.special_row(vocab.sos("image"))[None], vocab.special_row(vocab.height(2))[None], codes]
    )
    return torch.from_numpy(rows)[None], torch.ones(1, len(rows), dtype=torch.bool)


def test_checkpoints_and_model_folders_translate_as_before(tmp_path: Path, capsys) -> None:
    vocab = Vocabulary(VocabConfig(**TINY_VOCAB))
    model, config = _tiny_translator(vocab)
    src, mask = _source(vocab)
    lmx = torch.tensor([vocab.modality_index("lmx")])
    expected = model.generate(src, mask, None, lmx, max_len=10, temperature=0)
    old = _layout_1_checkpoint(tmp_path / "old.ckpt", model, config)

    # Unconverted, the checkpoint is refused with the way out.
    with pytest.raises(CheckpointError, match="layout 1: convert it with `umt migrate"):
        export_checkpoint(tmp_path / "old.ckpt", tmp_path / "refused")
    assert umt_main(["migrate", str(tmp_path / "old.ckpt"), "--out", str(tmp_path / "new.ckpt")]) == 0
    new = torch.load(tmp_path / "new.ckpt", weights_only=True)
    assert new["umt_vocab_hash"] == vocab.layout_hash and new["global_step"] == 7
    for key, value in model.state_dict().items():
        torch.testing.assert_close(new["state_dict"][f"translator.{key}"], value, rtol=0, atol=0)
    moments = new["optimizer_states"][0]["state"]
    torch.testing.assert_close(moments[0]["exp_avg"], model.state_dict()["head.weight"] * 0.5)
    torch.testing.assert_close(moments[1]["exp_avg"], old["optimizer_states"][0]["state"][1]["exp_avg"])

    folder = export_checkpoint(tmp_path / "new.ckpt", tmp_path / "model")
    restored = from_pretrained(folder, vocab)
    assert torch.equal(restored.generate(src, mask, None, lmx, max_len=10, temperature=0), expected)

    # A model folder exported by layout 1: its rows in the old order and the old hash.
    (tmp_path / "old_model").mkdir()
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    new_id = torch.from_numpy(v1_to_v2(vocab.config))
    for name in PER_ID_WEIGHTS:
        state[name] = state[name][new_id].contiguous()
    save_file(state, str(tmp_path / "old_model" / "model.safetensors"))
    config_json = json.loads((folder / "config.json").read_text())
    config_json["vocab_hash"] = v1_layout_hash(vocab.config)
    (tmp_path / "old_model" / "config.json").write_text(json.dumps(config_json))
    with pytest.raises(CheckpointError, match="layout 1: convert it with `umt migrate"):
        from_pretrained(tmp_path / "old_model")
    assert umt_main(["migrate", str(tmp_path / "old_model"), "--out", str(tmp_path / "new_model")]) == 0
    assert "converted a model folder" in capsys.readouterr().out
    migrated = from_pretrained(tmp_path / "new_model", vocab)
    assert torch.equal(migrated.generate(src, mask, None, lmx, max_len=10, temperature=0), expected)


def test_what_is_not_an_artifact_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert umt_main(["migrate", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "not a shard set, a model folder or a training checkpoint" in capsys.readouterr().err
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    assert umt_main(["migrate", str(tmp_path / "junk.ckpt"), "--out", str(tmp_path / "o.ckpt")]) == 2
    assert "not a readable training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.ckpt").exists()
