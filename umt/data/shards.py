"""Token shards: versioned files of token rows, the interface between baking and training.

A *shard set* is a directory of ``*.safetensors`` files. Each file holds many *items*; an item is
the token rows ``[T, K]`` (unified-vocabulary ids, int32, without SOS/EOS) of one input file in one
augmentation *variant* (e.g. one of the 32 pixel shifts of an image)::

    tensors   rows     int32 [N_total, K]   all items' rows, concatenated
              offsets  int64 [n + 1]        item i is rows[offsets[i] : offsets[i + 1]]
    metadata  format          "umt-shards/1"
              modality        "image" | "audio" | "lmx" | "midi"
              vocab_hash      Vocabulary.layout_hash of the ids
              tokenizer_hash  fingerprint of the tokenizer that made them ("" for rule-based ones)
              keys            JSON list of item keys (usually the input file's manifest key)
              variants        JSON list of variant numbers, one per item

Files are written atomically, so a killed baking job leaves only whole shards; rerunning skips
the (key, variant) pairs already present. :class:`ShardSet` refuses shards whose format, modality,
vocabulary or tokenizer hash disagree with what the reader expects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umt.errors import InputError
from umt.utils.io import atomic_path

SHARD_FORMAT = "umt-shards/1"


@dataclass(frozen=True)
class ShardInfo:
    modality: str
    vocab_hash: str
    tokenizer_hash: str


class ShardWriter:
    """Buffers items and writes them to ``out_dir/{prefix}-{index:05d}.safetensors`` atomically.

    Use as a context manager; :meth:`close` flushes the last partial shard.
    """

    def __init__(
        self,
        out_dir: str | Path,
        info: ShardInfo,
        prefix: str = "shard",
        items_per_shard: int = 1024,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.info = info
        self.prefix = prefix
        self.items_per_shard = items_per_shard
        self._rows: list[np.ndarray] = []
        self._keys: list[str] = []
        self._variants: list[int] = []
        existing = sorted(self.out_dir.glob(f"{prefix}-*.safetensors"))
        self._next_index = 1 + max((int(p.stem.rsplit("-", 1)[1]) for p in existing), default=-1)

    def add(self, key: str, rows: np.ndarray, variant: int = 0) -> None:
        rows = np.asarray(rows)
        if rows.ndim != 2:
            raise ValueError(f"{key}: token rows must be [T, K], got shape {rows.shape}")
        if self._rows and rows.shape[1] != self._rows[0].shape[1]:
            raise ValueError(f"{key}: {rows.shape[1]} codebooks, the shard has {self._rows[0].shape[1]}")
        self._rows.append(rows.astype(np.int32, copy=False))
        self._keys.append(key)
        self._variants.append(int(variant))
        if len(self._keys) >= self.items_per_shard:
            self.flush()

    def flush(self) -> Path | None:
        """Write the buffered items as one shard file; returns its path (None if nothing buffered)."""
        if not self._keys:
            return None
        from safetensors.numpy import save_file

        offsets = np.zeros(len(self._rows) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(r) for r in self._rows])
        tensors = {"rows": np.ascontiguousarray(np.concatenate(self._rows)), "offsets": offsets}
        metadata = {
            "format": SHARD_FORMAT,
            "modality": self.info.modality,
            "vocab_hash": self.info.vocab_hash,
            "tokenizer_hash": self.info.tokenizer_hash,
            "keys": json.dumps(self._keys),
            "variants": json.dumps(self._variants),
        }
        path = self.out_dir / f"{self.prefix}-{self._next_index:05d}.safetensors"
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        self._next_index += 1
        self._rows, self._keys, self._variants = [], [], []
        return path

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Flush what is complete even when interrupted: every buffered item is whole.
        self.close()


@dataclass(frozen=True)
class _Location:
    file: Path
    index: int


class ShardSet:
    """Read access to a shard set: ``get(key, variant)`` -> rows ``[T, K]`` (int32)."""

    def __init__(
        self,
        directory: str | Path,
        modality: str | None = None,
        vocab_hash: str | None = None,
        tokenizer_hash: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise InputError("no such shard directory", self.directory)
        self._index: dict[tuple[str, int], _Location] = {}
        self._cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
        self.info: ShardInfo | None = None
        for path in sorted(self.directory.glob("*.safetensors")):
            if path.name.startswith("."):  # a writer's temporary file, left by a hard kill
                continue
            info, keys, variants = _read_header(path)
            expected = {"modality": modality, "vocab_hash": vocab_hash, "tokenizer_hash": tokenizer_hash}
            for field_name, want in expected.items():
                have = getattr(info, field_name)
                if want is not None and have != want:
                    raise InputError(f"shard {field_name} is {have!r}, expected {want!r}", path)
            if self.info is None:
                self.info = info
            elif info != self.info:
                raise InputError(f"shard disagrees with the rest of the set ({info} vs {self.info})", path)
            for index, (key, variant) in enumerate(zip(keys, variants)):
                self._index[(key, variant)] = _Location(path, index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, item: tuple[str, int]) -> bool:
        return item in self._index

    def items(self) -> Iterator[tuple[str, int]]:
        """All (key, variant) pairs, in file order."""
        return iter(self._index)

    def keys(self) -> list[str]:
        """Distinct item keys, in file order."""
        return list(dict.fromkeys(key for key, _ in self._index))

    def variants(self, key: str) -> list[int]:
        return sorted(v for k, v in self._index if k == key)

    def get(self, key: str, variant: int = 0) -> np.ndarray:
        try:
            location = self._index[(key, variant)]
        except KeyError:
            raise KeyError(f"{self.directory}: no item {key!r} variant {variant}") from None
        rows, offsets = self._load(location.file)
        return rows[offsets[location.index] : offsets[location.index + 1]]

    def _load(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        if path not in self._cache:
            from safetensors.numpy import load_file

            tensors = load_file(str(path))
            self._cache[path] = (tensors["rows"], tensors["offsets"])
        return self._cache[path]


def _read_header(path: Path) -> tuple[ShardInfo, list[str], list[int]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises several types for a corrupt header
        raise InputError(f"not a readable shard ({error})", path) from None
    if metadata.get("format") != SHARD_FORMAT:
        raise InputError(f"unknown shard format {metadata.get('format')!r} (expected {SHARD_FORMAT})", path)
    info = ShardInfo(metadata["modality"], metadata["vocab_hash"], metadata["tokenizer_hash"])
    return info, json.loads(metadata["keys"]), json.loads(metadata["variants"])
