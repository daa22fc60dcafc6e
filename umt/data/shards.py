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
              window_seconds  for a modality with a time axis (audio, MIDI): the wall-clock window
                              each item covers (:mod:`umt.modalities.windows`); absent otherwise
              keys            JSON list of item keys (usually the input file's manifest key)
              variants        JSON list of variant numbers, one per item

Files are written atomically, so a killed baking job leaves only whole shards; rerunning skips
the (key, variant) pairs already present. :class:`ShardSet` refuses shards whose format, modality,
vocabulary or tokenizer hash disagree with what the reader expects.

**Reading** never decodes a whole file: opening a set reads each file's header and ``offsets``
(so item lengths are known without touching ``rows``), and :meth:`ShardSet.get` copies one item's
rows out of a memory-mapped file. At most ``max_open_files`` files are mapped at a time (least
recently used closed first), so a reader's memory does not grow with the size of the set, however
many dataloader workers and ranks read it; the mapped pages are the OS page cache, shared by all of
them and reclaimable.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from umt.errors import InputError
from umt.utils.io import atomic_path

SHARD_FORMAT = "umt-shards/1"
LAYOUT_HINT = " (shards baked before vocabulary layout 2 convert with `umt migrate DIR --out NEW`)"


@dataclass(frozen=True)
class ShardInfo:
    modality: str
    vocab_hash: str
    tokenizer_hash: str
    window_seconds: float | None = None
    """Seconds of the window each item covers (time-axis modalities; ``None`` for the others)."""


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

    def add_together(self, items: list[tuple[str, int, np.ndarray]]) -> None:
        """Add ``(key, variant, rows)`` items that must land in the same file (the windows of one
        input: a rerun after a kill then finds all of them or none)."""
        for key, variant, rows in items:
            self._buffer(key, rows, variant)
        if len(self._keys) >= self.items_per_shard:
            self.flush()

    def add(self, key: str, rows: np.ndarray, variant: int = 0) -> None:
        self._buffer(key, rows, variant)
        if len(self._keys) >= self.items_per_shard:
            self.flush()

    def _buffer(self, key: str, rows: np.ndarray, variant: int) -> None:
        rows = np.asarray(rows)
        if rows.ndim != 2:
            raise ValueError(f"{key}: token rows must be [T, K], got shape {rows.shape}")
        if self._rows and rows.shape[1] != self._rows[0].shape[1]:
            raise ValueError(f"{key}: {rows.shape[1]} codebooks, the shard has {self._rows[0].shape[1]}")
        self._rows.append(rows.astype(np.int32, copy=False))
        self._keys.append(key)
        self._variants.append(int(variant))

    def flush(self) -> Path | None:
        """Write the buffered items as one shard file; returns its path (None if nothing buffered)."""
        if not self._keys:
            return None

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
        if self.info.window_seconds is not None:
            metadata["window_seconds"] = repr(float(self.info.window_seconds))
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


@dataclass(frozen=True, slots=True)
class _Location:
    file: Path
    start: int
    """First row of the item in the file's ``rows``."""
    stop: int


class ShardSet:
    """Read access to a shard set: ``get(key, variant)`` -> rows ``[T, K]`` (int32).

    ``max_open_files`` bounds how many shard files are memory-mapped at once (see the module
    docstring); item lengths (:meth:`length`) need no file access at all.
    """

    def __init__(
        self,
        directory: str | Path,
        modality: str | None = None,
        vocab_hash: str | None = None,
        tokenizer_hash: str | None = None,
        max_open_files: int = 16,
    ) -> None:
        if max_open_files < 1:
            raise ValueError(f"max_open_files must be >= 1, got {max_open_files}")
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise InputError("no such shard directory", self.directory)
        self.max_open_files = max_open_files
        self._index: dict[tuple[str, int], _Location] = {}
        self._widths: dict[Path, int] = {}  # K of each file, for empty items (never read)
        # path -> (open safe_open handle, its "rows" slice), least recently used first.
        self._open: OrderedDict[Path, tuple[Any, Any]] = OrderedDict()
        self.info: ShardInfo | None = None
        for path in sorted(self.directory.glob("*.safetensors")):
            if path.name.startswith("."):  # a writer's temporary file, left by a hard kill
                continue
            header = _read_index(path)
            info = header.info
            expected = {"modality": modality, "vocab_hash": vocab_hash, "tokenizer_hash": tokenizer_hash}
            for field_name, want in expected.items():
                have = getattr(info, field_name)
                if want is not None and have != want:
                    hint = LAYOUT_HINT if field_name == "vocab_hash" else ""
                    raise InputError(f"shard {field_name} is {have!r}, expected {want!r}{hint}", path)
            if self.info is None:
                self.info = info
            elif info != self.info:
                raise InputError(f"shard disagrees with the rest of the set ({info} vs {self.info})", path)
            self._widths[path] = header.width
            offsets = header.offsets.tolist()  # Python ints: cheaper to index than numpy scalars
            for index, (key, variant) in enumerate(zip(header.keys, header.variants)):
                self._index[(key, variant)] = _Location(path, offsets[index], offsets[index + 1])

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

    def length(self, key: str, variant: int = 0) -> int:
        """Number of rows ``T`` of an item, from the offsets read at opening (no file access)."""
        location = self._locate(key, variant)
        return location.stop - location.start

    def get(self, key: str, variant: int = 0) -> np.ndarray:
        """The item's rows ``[T, K]`` (int32), a fresh array (not a view into the file)."""
        location = self._locate(key, variant)
        if location.start == location.stop:
            # safetensors refuses an empty slice at the end of a tensor; there is nothing to read.
            return np.zeros((0, self._widths[location.file]), dtype=np.int32)
        # get_slice copies the bytes out of the mapping, so the array outlives the file's handle.
        return self._rows(location.file)[location.start : location.stop]

    def close(self) -> None:
        """Unmap every open file (reading again reopens them)."""
        while self._open:
            _, (handle, _) = self._open.popitem(last=False)
            handle.__exit__(None, None, None)

    def __getstate__(self) -> dict[str, Any]:
        # Open handles cannot be pickled (spawned dataloader workers); the copy reopens its own.
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state

    def _locate(self, key: str, variant: int) -> _Location:
        try:
            return self._index[(key, variant)]
        except KeyError:
            raise KeyError(f"{self.directory}: no item {key!r} variant {variant}") from None

    def _rows(self, path: Path) -> Any:
        """The memory-mapped ``rows`` of a file (a safetensors slice: ``[start:stop]`` -> ndarray)."""
        entry = self._open.get(path)
        if entry is not None:
            self._open.move_to_end(path)
            return entry[1]

        handle = safe_open(str(path), framework="numpy")
        entry = (handle, handle.get_slice("rows"))
        self._open[path] = entry
        while len(self._open) > self.max_open_files:
            _, (old, _) = self._open.popitem(last=False)
            old.__exit__(None, None, None)
        return entry[1]


class _FileIndex(NamedTuple):
    info: ShardInfo
    keys: list[str]
    variants: list[int]
    offsets: np.ndarray
    """int64 ``[n + 1]``: item i is ``rows[offsets[i] : offsets[i + 1]]``."""
    width: int
    """``K``, the number of codebooks (columns of ``rows``)."""


def _read_header(path: Path) -> tuple[ShardInfo, list[str], list[int]]:
    info, keys, variants, _, _ = _read_index(path)
    return info, keys, variants


def _read_index(path: Path) -> _FileIndex:
    """A shard file's metadata and ``offsets`` (``rows`` is never read, only its shape)."""

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != SHARD_FORMAT:
                raise InputError(
                    f"unknown shard format {metadata.get('format')!r} (expected {SHARD_FORMAT})", path
                )
            offsets = handle.get_tensor("offsets")
            shape = handle.get_slice("rows").get_shape()
    except InputError:
        raise
    except Exception as error:  # safetensors raises several types for a corrupt header
        raise InputError(f"not a readable shard ({error})", path) from None
    window = metadata.get("window_seconds")
    info = ShardInfo(
        metadata["modality"],
        metadata["vocab_hash"],
        metadata["tokenizer_hash"],
        float(window) if window is not None else None,
    )
    keys, variants = json.loads(metadata["keys"]), json.loads(metadata["variants"])
    # A file that lies about its layout would make get() return other items' rows: refuse it now.
    if not (
        len(shape) == 2
        and len(keys) == len(variants) == len(offsets) - 1
        and offsets[0] == 0
        and offsets[-1] == shape[0]
        and bool(np.all(np.diff(offsets) >= 0))
    ):
        last = int(offsets[-1]) if len(offsets) else None
        raise InputError(
            f"inconsistent shard ({len(keys)} keys, {len(offsets)} offsets ending at {last}, rows {shape})",
            path,
        )
    return _FileIndex(info, keys, variants, offsets, int(shape[1]))
