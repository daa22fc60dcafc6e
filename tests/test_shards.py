"""Token shards: round trip, atomic/resumable writing, and refusal of mismatched shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import umt.data.shards as shards_module
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
    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(shards_module, "save_file", broken_save)
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


def _whole_file_items(directory: Path) -> dict[tuple[str, int], np.ndarray]:
    """Every item as the former reader gave it: the whole file decoded, then sliced by offsets."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import load_file

    items = {}
    for path in sorted(directory.glob("*.safetensors")):
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata()
        keys, variants = json.loads(metadata["keys"]), json.loads(metadata["variants"])
        offsets = tensors["offsets"]
        for i, item in enumerate(zip(keys, variants)):
            items[item] = tensors["rows"][offsets[i] : offsets[i + 1]]
    return items


def _mapped_shard_files(directory: Path) -> set[str]:
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return set()  # not Linux: the bound is still checked on the open-file table
    return {line.split()[-1] for line in maps.read_text().splitlines() if str(directory) in line}


def test_reads_match_whole_file_decode_with_few_files_mapped(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, INFO, items_per_shard=3) as writer:
        for i in range(14):
            # Empty items too, one of them last in its file (safetensors refuses that slice).
            writer.add(f"item{i}", _rows(i, 0 if i in (4, 5, 9) else 1 + i % 7))
    expected = _whole_file_items(tmp_path)
    shards = ShardSet(tmp_path, max_open_files=2)
    order = np.random.default_rng(0).permutation(len(expected))
    items = list(expected)
    for n in order:
        key, variant = items[n]
        rows = shards.get(key, variant)
        assert rows.dtype == np.int32 and rows.shape == expected[(key, variant)].shape
        np.testing.assert_array_equal(rows, expected[(key, variant)])
        assert shards.length(key, variant) == len(rows)
        assert len(shards._open) <= 2 and len(_mapped_shard_files(tmp_path)) <= 2
    kept = shards.get("item3")
    kept[:] = -1  # a fresh array: changing it changes nothing stored
    np.testing.assert_array_equal(shards.get("item3"), expected[("item3", 0)])
    shards.close()
    assert not _mapped_shard_files(tmp_path)
    assert (kept == -1).all()  # arrays outlive the unmapped files
    np.testing.assert_array_equal(shards.get("item13"), expected[("item13", 0)])


def test_opening_and_lengths_read_no_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors
    import safetensors.numpy

    with ShardWriter(tmp_path, INFO, items_per_shard=3) as writer:
        for i in range(7):
            writer.add(f"item{i}", _rows(i, 2 + i))

    real_open = safetensors.safe_open

    class NoRows:
        """A safe_open that fails on any read of ``rows`` data (its shape may be asked)."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            self.handle = real_open(*args, **kwargs)

        def __enter__(self) -> NoRows:
            return self

        def __exit__(self, *exc_info: object) -> None:
            self.handle.__exit__(*exc_info)

        def __getattr__(self, name: str) -> object:
            return getattr(self.handle, name)

        def get_tensor(self, name: str) -> np.ndarray:
            assert name != "rows", "rows decoded"
            return self.handle.get_tensor(name)

        def get_slice(self, name: str) -> object:
            inner = self.handle.get_slice(name)

            class Shape:
                def get_shape(self) -> list[int]:
                    return inner.get_shape()

                def __getitem__(self, index: object) -> np.ndarray:
                    raise AssertionError("rows read")

            return Shape() if name == "rows" else inner

    def no_load_file(*args: object, **kwargs: object) -> None:
        raise AssertionError("rows decoded")

    monkeypatch.setattr(shards_module, "safe_open", NoRows)
    monkeypatch.setattr(safetensors.numpy, "load_file", no_load_file)
    shards = ShardSet(tmp_path)
    assert [shards.length(f"item{i}") for i in range(7)] == [2 + i for i in range(7)]
    with pytest.raises(AssertionError, match="rows read"):
        shards.get("item0")  # the guard works
    monkeypatch.undo()
    np.testing.assert_array_equal(ShardSet(tmp_path).get("item6"), _rows(6, 8))


def test_a_pickled_shard_set_reopens_its_files(tmp_path: Path) -> None:
    import pickle

    with ShardWriter(tmp_path, INFO) as writer:
        writer.add("a", _rows(0, 3))
    shards = ShardSet(tmp_path)
    shards.get("a")  # a file is open now; spawned dataloader workers get a pickled copy
    copy = pickle.loads(pickle.dumps(shards))
    np.testing.assert_array_equal(copy.get("a"), _rows(0, 3))


def test_offsets_that_disagree_with_rows_are_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    metadata = {"format": "umt-shards/1", "modality": "image", "vocab_hash": "v1", "tokenizer_hash": "t1"}
    metadata |= {"keys": '["a", "b"]', "variants": "[0, 0]"}
    tensors = {"rows": np.zeros((5, 4), dtype=np.int32), "offsets": np.array([0, 3, 7], dtype=np.int64)}
    save_file(tensors, str(tmp_path / "shard-00000.safetensors"), metadata=metadata)
    with pytest.raises(InputError, match=r"inconsistent shard \(2 keys, 3 offsets ending at 7"):
        ShardSet(tmp_path)
