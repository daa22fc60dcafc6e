"""Baking: a manifest of input files -> token shards (:mod:`umt.data.shards`), resumably.

This module holds everything but the distribution over devices (that is
:mod:`umt.training.bake`, through Lightning): reading the manifest, planning what is left to do
in an existing output folder, the per-file work (load -> augmentation variants -> tokenize), the
per-rank shard writing and the failures report. :func:`bake_files` runs it all in one process.

Manifest
--------
A *JSON Lines* file (``.jsonl``, or any file whose first entry starts with ``{``), one object per
input file::

    {"key": "imslp/123/p1-s2", "path": "images/123-p1-s2.png", "split": "train"}

``key`` (optional; default: ``path`` as written) names the item in the shards, so it must be
unique. ``path`` is resolved against the manifest's folder when relative. ``split`` is optional
(``umt bake --split`` bakes one split only). Other fields are ignored. Blank lines and lines
starting with ``#`` are skipped. A record without ``path`` names its file under the modality's
name, so one manifest of several modalities (``umt data prepare``'s) serves every ``umt bake``::

    {"key": "perf1", "audio": "audio/train/perf1.flac", "midi": "midi/train/perf1.mid", "split": "train"}

Any other file is a *plain list*, one path per line; an item's key is its path relative to the
manifest's folder (or the path as written, when it lies outside it).

Output folder
-------------
``OUT/shard-rankRRRR-NNNNN.safetensors``: each rank (process) writes its own files, so ranks never
touch each other's files. Every shard records the modality, the vocabulary hash and the tokenizer
fingerprint; baking into a folder whose shards disagree is refused. Items are ``(key, variant)``
pairs; a rerun skips the pairs already present, so a killed job is finished by running it again.
``OUT/failures.json`` lists the files of the last run that could not be baked, with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from umt.data.shards import ShardInfo, ShardSet, ShardWriter
from umt.errors import InputError, UserError
from umt.modalities.windows import (
    WINDOW_SECONDS,
    check_window_seconds,
    has_time_axis,
    split_window_key,
    window_key,
)
from umt.utils.io import atomic_write_text
from umt.vocab import Vocabulary

SHARD_PREFIX = "shard"
FAILURES_FILE = "failures.json"

# ---------------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class ManifestEntry:
    """One input file of a manifest."""

    key: str
    path: Path
    split: str | None = None
    line: int = 0
    """1-based line number in the manifest (for messages)."""


def read_manifest(
    manifest: str | Path, split: str | None = None, modality: str | None = None
) -> list[ManifestEntry]:
    """The entries of a JSON Lines or plain-list manifest (see the module docstring), in order.

    ``split`` keeps only the entries of that split. With ``modality``, a JSON record without
    ``path`` gives its file under the modality's name (``"audio": "audio/x.flac"``: the manifests of
    ``umt data prepare``), and records without one are passed over. Raises :class:`UserError`
    naming the manifest and the line for a malformed line, a duplicate key, or a manifest without
    entries.
    """
    manifest = Path(manifest)
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("no such manifest", manifest) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read manifest ({error})", manifest) from None
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise UserError("manifest lists no files", manifest)
    is_json_lines = manifest.suffix.lower() == ".jsonl" or lines[0][1].startswith("{")
    base = manifest.parent
    entries: list[ManifestEntry] = []
    first_line_of: dict[str, int] = {}
    for number, line in lines:
        if is_json_lines:
            entry = _json_entry(manifest, number, line, base, modality)
            if entry is None:
                continue
        else:
            entry = ManifestEntry(key=_key_for(line, base), path=_resolve(line, base), line=number)
        if entry.key in first_line_of:
            raise UserError(
                f"line {number}: duplicate key {entry.key!r} (first on line {first_line_of[entry.key]})",
                manifest,
            )
        first_line_of[entry.key] = number
        entries.append(entry)
    if split is not None:
        entries = [entry for entry in entries if entry.split == split]
        if not entries:
            raise UserError(f"manifest has no entries with split {split!r}", manifest)
    return entries


def _json_entry(
    manifest: Path, number: int, line: str, base: Path, modality: str | None = None
) -> ManifestEntry | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise UserError(f"line {number}: not valid JSON ({error.msg})", manifest) from None
    if not isinstance(record, dict):
        raise UserError(f'line {number}: expected a JSON object like {{"key": ..., "path": ...}}', manifest)
    path = record.get("path")
    prepared = path is None and modality is not None
    if prepared:
        path = record.get(modality)
        if path is None:
            return None  # a record of other modalities
    if not isinstance(path, str) or not path:
        raise UserError(f'line {number}: "path" must be a non-empty string', manifest)
    key = record.get("key", path)
    if not isinstance(key, str) or not key:
        raise UserError(f'line {number}: "key" must be a non-empty string', manifest)
    split = record.get("split")
    if split is not None and not isinstance(split, str):
        raise UserError(f'line {number}: "split" must be a string', manifest)
    resolved = _resolve(path, base)
    # A prepared data set's files lie in its folder: one elsewhere (../../etc/passwd) is refused, unread.
    if prepared and not resolved.resolve().is_relative_to(base.resolve()):
        raise UserError(f"line {number}: {path!r} leaves the manifest's folder", manifest)
    return ManifestEntry(key=key, path=resolved, split=split, line=number)


def _resolve(path: str, base: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def _key_for(path: str, base: Path) -> str:
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        return candidate.as_posix()
    try:
        return candidate.relative_to(base.resolve()).as_posix()
    except ValueError:
        return candidate.as_posix()


# ---------------------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class VariantChoice:
    """Which augmentation variants to bake: all of them (``limit=None``) or the first ``limit``."""

    limit: int | None = None

    @classmethod
    def parse(cls, text: str | int) -> VariantChoice:
        """``"all"`` | ``"none"`` (variant 0, the input itself, only) | ``N`` (variants 0..N-1)."""
        if isinstance(text, int) or str(text).strip().isdigit():
            count = int(text)
            if count < 1:
                raise UserError(f"--variants must be 'all', 'none' or a count >= 1, got {text!r}")
            return cls(count)
        word = str(text).strip().lower()
        if word == "all":
            return cls(None)
        if word == "none":
            return cls(1)
        raise UserError(f"--variants must be 'all', 'none' or a count >= 1, got {text!r}")

    def numbers(self, available: int) -> list[int]:
        """The variant numbers to bake when the tokenizer offers ``available`` variants."""
        return list(range(available if self.limit is None else min(self.limit, available)))


# ------------------------------------------------------------------------------------ output folder


def shard_info(tokenizer: Any, vocab: Vocabulary, window_seconds: float = WINDOW_SECONDS) -> ShardInfo:
    """What the shards of ``tokenizer`` record; time-axis modalities record their window too."""
    windowed = has_time_axis(tokenizer.modality)
    return ShardInfo(
        modality=tokenizer.modality,
        vocab_hash=vocab.layout_hash,
        tokenizer_hash=tokenizer.fingerprint,
        window_seconds=check_window_seconds(window_seconds) if windowed else None,
    )


def rank_prefix(rank: int) -> str:
    """The shard-file prefix of one rank: ``shard-rank0003`` (files ``shard-rank0003-00000...``)."""
    return f"{SHARD_PREFIX}-rank{rank:04d}"


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Delete the hidden temporary shard files (``.shard-*.safetensors``) a killed writer can leave;
    a shard reader would otherwise take them for broken shards.

    Shard files are written only between the collective start and end of a distributed
    prediction, so removing them while planning (before it, on every rank) races with no writer.
    """
    stale = list(out_dir.glob(f".{SHARD_PREFIX}-*.safetensors"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def completed_items(out_dir: str | Path, info: ShardInfo) -> dict[str, set[int]]:
    """The variants already baked per key in ``out_dir`` (empty if there are no shards yet).

    Raises :class:`UserError` if the existing shards were made with another modality, vocabulary
    or tokenizer, or one is unreadable.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        if out_dir.exists():
            raise UserError("not a directory", out_dir)
        return {}
    remove_stale_temporaries(out_dir)
    shards = ShardSet(out_dir)
    if shards.info is not None and shards.info != info:
        have, want = shards.info, info
        differences = [
            f"{label} {getattr(have, name)!r} (this run: {getattr(want, name)!r})"
            for name, label in (
                ("modality", "modality"),
                ("vocab_hash", "vocabulary hash"),
                ("tokenizer_hash", "tokenizer fingerprint"),
                ("window_seconds", "window seconds"),
            )
            if getattr(have, name) != getattr(want, name)
        ]
        raise UserError(f"holds shards with {', '.join(differences)}; bake into a new --out folder", out_dir)
    done: dict[str, set[int]] = {}
    for key, variant in shards.items():
        if info.window_seconds is not None:
            # An input's windows are written together (ShardWriter.add_together): window 0 stands
            # for all of them.
            key, index = split_window_key(key)
            if index != 0:
                continue
        done.setdefault(key, set()).add(variant)
    return done


def known_variant_count(tokenizer: Any, entries: Sequence[ManifestEntry], probe_limit: int = 8) -> int | None:
    """How many variants the tokenizer makes per input: its ``num_variants`` if it says, else the
    count for the first of ``entries`` that loads (``None`` if none of the first few does)."""
    count = getattr(tokenizer, "num_variants", None)
    if isinstance(count, int):
        return count
    for entry in entries[:probe_limit]:
        try:
            return len(tokenizer.variants(tokenizer.load(entry.path)))
        except Exception:  # a bad file: try the next one
            continue
    return None


def plan(
    entries: Sequence[ManifestEntry],
    done: dict[str, set[int]],
    choice: VariantChoice,
    variant_count: int | None,
) -> list[ManifestEntry]:
    """The entries with variants left to bake (all entries whose state cannot be told in advance)."""
    if variant_count is None:
        return list(entries)
    wanted = set(choice.numbers(variant_count))
    return [entry for entry in entries if wanted - done.get(entry.key, set())]


# ------------------------------------------------------------------------------------ per-file work


@dataclass
class LoadedEntry:
    """One input after reading and decoding (e.g. an image ``[1, H, W]``), or why that failed."""

    entry: ManifestEntry
    data: Any = None
    done_variants: frozenset[int] = frozenset()
    """Variants already in the output folder (not tokenized again)."""
    error: str | None = None


@dataclass
class TokenizedEntry:
    """One input's items ``(key, variant, rows [T, K])``, or why it failed. The key is the entry's,
    or for a time-axis modality that of each window (:func:`umt.modalities.windows.window_key`)."""

    entry: ManifestEntry
    items: list[tuple[str, int, np.ndarray]] = field(default_factory=list)
    error: str | None = None


def _reason(error: BaseException, path: Path) -> str:
    """The problem part of an error message (without the file name, which the report adds)."""
    message = str(error)
    for prefix in {str(path), getattr(error, "path", None) or ""} - {""}:
        if message.startswith(f"{prefix}: "):
            return message[len(prefix) + 2 :]
    if isinstance(error, UserError):
        return message or type(error).__name__
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def load_entry(entry: ManifestEntry, tokenizer: Any, done_variants: Iterable[int] = ()) -> LoadedEntry:
    """Read and decode one file with ``tokenizer.load``. Never raises for bad input: a missing,
    empty, unreadable or corrupt file comes back with ``error`` set."""
    path = entry.path
    try:
        if not path.exists():
            raise InputError("no such file", path)
        if path.is_dir():
            raise InputError("is a directory, not a file", path)
        if path.stat().st_size == 0:
            raise InputError("empty file", path)
        data = tokenizer.load(path)
    except Exception as error:  # any library's error for a bad file becomes a listed failure
        return LoadedEntry(entry, error=_reason(error, path))
    return LoadedEntry(entry, data=data, done_variants=frozenset(done_variants))


def tokenize_entry(
    loaded: LoadedEntry,
    tokenizer: Any,
    vocab: Vocabulary,
    choice: VariantChoice,
    device: Any = None,
    window_seconds: float = WINDOW_SECONDS,
) -> TokenizedEntry:
    """Make the chosen variants of one loaded input that are not done yet and tokenize each; a
    time-axis input is first cut into ``window_seconds`` windows, one item each.

    The input moves to ``device`` first (variants are made there: no 32 copies cross processes).
    Never raises for a per-file problem (``error`` is set instead).
    """
    if loaded.error is not None:
        return TokenizedEntry(loaded.entry, error=loaded.error)
    key = loaded.entry.key
    items: list[tuple[str, int, np.ndarray]] = []
    try:
        data = loaded.data
        if device is not None and isinstance(data, torch.Tensor):
            data = data.to(device)
        if has_time_axis(tokenizer.modality):
            # A tokenizer that cannot cut (no ``windows``) makes each file one window.
            cut = getattr(tokenizer, "windows", None)
            windows = cut(data, window_seconds, vocab) if cut is not None else [data]
            pieces = [(window_key(key, index), window) for index, window in enumerate(windows)]
        else:
            pieces = [(key, data)]
        for item_key, piece in pieces:
            items += _tokenized_variants(item_key, piece, tokenizer, vocab, choice, loaded)
    except Exception as error:
        return TokenizedEntry(loaded.entry, error=_reason(error, loaded.entry.path))
    return TokenizedEntry(loaded.entry, items=items)


def _tokenized_variants(
    key: str, data: Any, tokenizer: Any, vocab: Vocabulary, choice: VariantChoice, loaded: LoadedEntry
) -> list[tuple[str, int, np.ndarray]]:
    all_variants = tokenizer.variants(data)
    items = []
    for variant in choice.numbers(len(all_variants)):
        if variant in loaded.done_variants:
            continue
        rows = np.asarray(tokenizer.tokenize(all_variants[variant], vocab))
        if rows.ndim != 2 or rows.shape[1] != vocab.num_codebooks:
            raise ValueError(
                f"tokenizer returned rows of shape {rows.shape}, expected [T, {vocab.num_codebooks}]"
            )
        if rows.shape[0] == 0:
            raise InputError("produced no tokens", loaded.entry.path)
        items.append((key, variant, rows))
    return items


class BakeDataset:
    """A map-style dataset over manifest entries whose items are :class:`LoadedEntry` s.

    Reading and decoding files happens here, i.e. in DataLoader workers; variants and tokenizing
    happen where the tokenizer's model lives. Batches are plain lists (:func:`collate_entries`).
    ``min_length`` pads the dataset with ``None`` items (skipped by the collate function): a
    distributed prediction sampler needs at least one item per rank.
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        tokenizer: Any,
        done: dict[str, set[int]] | None = None,
        min_length: int = 0,
    ) -> None:
        self.entries = list(entries)
        self.tokenizer = tokenizer
        self.done = done or {}
        self.min_length = min_length

    def __len__(self) -> int:
        return max(len(self.entries), self.min_length)

    def __getitem__(self, index: int) -> LoadedEntry | None:
        if index >= len(self.entries):
            return None
        entry = self.entries[index]
        return load_entry(entry, self.tokenizer, self.done.get(entry.key, ()))


def collate_entries(batch: list[LoadedEntry | None]) -> list[LoadedEntry]:
    """DataLoader ``collate_fn``: inputs differ in size, so a batch stays a list (padding dropped)."""
    return [item for item in batch if item is not None]


# ---------------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Failure:
    """A file that could not be baked, and why."""

    key: str
    path: str
    reason: str


class ShardSink:
    """Writes one rank's tokenized entries to its own shard files and collects its failures."""

    def __init__(
        self, out_dir: str | Path, info: ShardInfo, rank: int = 0, items_per_shard: int = 1024
    ) -> None:
        self.writer = ShardWriter(out_dir, info, prefix=rank_prefix(rank), items_per_shard=items_per_shard)
        self.failures: list[Failure] = []
        self.items_written = 0

    def add(self, tokenized: TokenizedEntry) -> None:
        entry = tokenized.entry
        if tokenized.error is not None:
            self.failures.append(Failure(entry.key, str(entry.path), tokenized.error))
            return
        self.writer.add_together(tokenized.items)
        self.items_written += len(tokenized.items)

    def close(self) -> None:
        """Write what is buffered (every buffered item is whole, so this is right after a crash too)."""
        self.writer.close()


def write_failures_report(out_dir: str | Path, manifest: str | Path, failures: Sequence[Failure]) -> Path:
    """``OUT/failures.json`` (atomically): the files this run could not bake, with the reason."""
    path = Path(out_dir) / FAILURES_FILE
    report = {
        "manifest": str(manifest),
        "failed": len(failures),
        "failures": [{"key": f.key, "path": f.path, "reason": f.reason} for f in failures],
    }
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")
    return path


@dataclass
class BakeSummary:
    """What a bake run did (the same on every rank after a distributed run)."""

    entries: int
    """Manifest entries considered."""
    skipped: int
    """Entries already complete in the output folder, not read again."""
    items_written: int
    failures: list[Failure]
    out_dir: Path
    is_global_zero: bool = True

    def failure_lines(self) -> dict[str, str]:
        """``{path: reason}`` for :func:`umt.cli.report_failures`."""
        return {failure.path: failure.reason for failure in self.failures}


@dataclass
class BakeJob:
    """Everything decided before the per-file work starts (the same on every rank)."""

    entries: list[ManifestEntry]
    todo: list[ManifestEntry]
    done: dict[str, set[int]]
    info: ShardInfo


def prepare_job(
    manifest: str | Path,
    out_dir: str | Path,
    tokenizer: Any,
    vocab: Vocabulary,
    choice: VariantChoice,
    split: str | None = None,
    window_seconds: float = WINDOW_SECONDS,
) -> BakeJob:
    """Read the manifest, check the output folder against this tokenizer and plan what is left."""
    entries = read_manifest(manifest, split=split, modality=tokenizer.modality)
    info = shard_info(tokenizer, vocab, window_seconds)
    done = completed_items(out_dir, info)
    count = known_variant_count(tokenizer, entries) if done else getattr(tokenizer, "num_variants", None)
    todo = plan(entries, done, choice, count if isinstance(count, int) else None)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return BakeJob(entries=entries, todo=todo, done=done, info=info)


def bake_files(
    manifest: str | Path,
    out_dir: str | Path,
    tokenizer: Any,
    vocab: Vocabulary,
    variants: VariantChoice | str | int = "all",
    split: str | None = None,
    items_per_shard: int = 1024,
    progress: bool = True,
    on_entry_done: Callable[[TokenizedEntry], None] | None = None,
    window_seconds: float = WINDOW_SECONDS,
) -> BakeSummary:
    """Bake a manifest in this process, without Lightning (one rank; tokenizer on its own device).

    ``on_entry_done`` is called after each file is handed to the shard writer (tests use it to
    interrupt a run). Returns the summary; the failures report is written to ``out_dir``.
    """
    choice = variants if isinstance(variants, VariantChoice) else VariantChoice.parse(variants)
    job = prepare_job(manifest, out_dir, tokenizer, vocab, choice, split=split, window_seconds=window_seconds)
    sink = ShardSink(out_dir, job.info, rank=0, items_per_shard=items_per_shard)

    try:
        for entry in tqdm(job.todo, desc=f"baking {tokenizer.modality}", unit="file", disable=not progress):
            loaded = load_entry(entry, tokenizer, job.done.get(entry.key, ()))
            tokenized = tokenize_entry(loaded, tokenizer, vocab, choice, window_seconds=window_seconds)
            sink.add(tokenized)
            if on_entry_done is not None:
                on_entry_done(tokenized)
    finally:
        sink.close()
    write_failures_report(out_dir, manifest, sink.failures)
    return BakeSummary(
        entries=len(job.entries),
        skipped=len(job.entries) - len(job.todo),
        items_written=sink.items_written,
        failures=sink.failures,
        out_dir=Path(out_dir),
    )
