"""Token shards: round trip, atomic/resumable writing, and refusal of mismatched shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umt.data.shards import ShardInfo, ShardSet, ShardWriter
from umt.errors import InputError

INFO = ShardInfo(modality="image", vocab_hash="v1", tokenizer_hash="t1")


def _rows(seed: int, length: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 100, size=(length, 4))


def test_round_trip_across_several_files(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, INFO, items_per_shard=3) as writer:
        for i in range(7):
            for variant in range(2):
                writer.add(f"item{i}", _rows(10 * i + variant, 5 + i), variant=variant)
    assert len(list(tmp_path.glob("*.safetensors"))) == 5  # 14 items, 3 per file
    shards = ShardSet(tmp_path, modality="image", vocab_hash="v1", tokenizer_hash="t1")
    assert len(shards) == 14
    assert shards.keys() == [f"item{i}" for i in range(7)]
    assert shards.variants("item3") == [0, 1]
    for i in range(7):
        np.testing.assert_array_equal(shards.get(f"item{i}", 1), _rows(10 * i + 1, 5 + i))
    assert shards.get("item0").dtype == np.int32


def test_rerun_appends_new_files_and_keeps_old_ones(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, INFO) as writer:
        writer.add("a", _rows(0, 3))
    with ShardWriter(tmp_path, INFO) as writer:
        writer.add("b", _rows(1, 3))
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]
    assert ("a", 0) in ShardSet(tmp_path) and ("b", 0) in ShardSet(tmp_path)


def test_mismatched_hash_is_refused(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, INFO) as writer:
        writer.add("a", _rows(0, 3))
    with pytest.raises(InputError, match="vocab_hash is 'v1', expected 'v2'"):
        ShardSet(tmp_path, vocab_hash="v2")


def test_corrupt_shard_is_named(tmp_path: Path) -> None:
    (tmp_path / "shard-00000.safetensors").write_bytes(b"not a shard")
    with pytest.raises(InputError, match=r"shard-00000\.safetensors: not a readable shard"):
        ShardSet(tmp_path)


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.numpy

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", broken_save)
    writer = ShardWriter(tmp_path, INFO)
    writer.add("a", _rows(0, 3))
    with pytest.raises(OSError):
        writer.flush()
    assert list(tmp_path.iterdir()) == []


def test_temporary_files_of_a_killed_writer_are_ignored(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, INFO) as writer:
        writer.add("a", _rows(0, 3))
    (tmp_path / ".shard-00001.x1y2.safetensors").write_bytes(b"half-written")
    assert ShardSet(tmp_path).keys() == ["a"]
