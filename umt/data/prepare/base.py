"""The run loop shared by the data set converters: plan, convert in parallel, resume, report.

A converter lists *work units* (one recording, one score) from the data set's own metadata and
turns each into files under ``OUT`` plus one manifest record. Each unit's files are written
atomically and its record last, to ``OUT/records/NNNNNN.json``, so a killed run loses at most the
units in flight: rerunning the same command skips the units whose record exists and then writes
``OUT/manifest.jsonl`` (every record, in the order of the units, so a killed and rerun conversion
gives the same manifest as an uninterrupted one) and ``OUT/failures.jsonl`` (units that could not
be converted and why; the exit status is then 1), and ``OUT/left_out.jsonl`` (items the converter
leaves out by design, such as recordings without labels; not failures). ``OUT/prepare.json``
records the data set and its root: preparing another one into the same folder is refused, never
silently overwritten.

Manifest records hold each modality's file under the modality's name (``"audio"``, ``"midi"``,
``"image"``, ``"lmx"``), relative to the manifest, with ``key``, ``split``, ``piece`` (the data
set's own name for the recording or score) and, for recordings, ``start_seconds`` and
``end_seconds`` in the source. ``umt bake MODALITY --manifest OUT/manifest.jsonl`` bakes the
records that have that modality; audio and MIDI are cut into time-exact windows there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from umt.errors import InputError, UserError
from umt.utils.io import atomic_write_text, claim_folder, remove_partial_files

FORMAT = "umt-prepare/2"
"""Version 2: a record file holds ``{"records": [...], "left_out": [...]}``."""


@dataclass(frozen=True)
class WorkUnit:
    """One recording or score to convert."""

    key: str
    split: str
    piece: str
    sources: dict[str, str] = field(default_factory=dict)
    """Input files by role, as paths relative to the data set's root."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Metadata to copy into the record (composer, title, ...)."""


@dataclass
class Converted:
    """What :meth:`Converter.convert` may return for a unit that makes several examples, some of
    which it drops by rule (a video's title card, a slide with too long a sound, ...)."""

    records: list[dict[str, Any]]
    left_out: list[dict[str, str]] = field(default_factory=list)


class Converter:
    """A data set's converter: :meth:`units` from its metadata, :meth:`convert` one unit."""

    name = ""
    description = ""
    missing_source = "named in the metadata, but no such file"
    """What a missing input file is called (``failures.jsonl``)."""

    def __init__(self, root: Path, out: Path) -> None:
        self.root = root
        self.out = out
        self.left_out: list[dict[str, str]] = []
        """Set by :meth:`units`: items of the data set it leaves out by design, with why (``key``,
        ``piece``, ``reason``): not failures (MusicNet recordings that MusicNet-EM has no labels
        for, say); written to ``OUT/left_out.jsonl``."""

    @property
    def settings(self) -> dict[str, Any]:
        """Options the output depends on besides the data set (recorded in ``prepare.json``; a
        rerun with other ones is refused). None for most data sets."""
        return {}

    def source_files(self, unit: WorkUnit) -> dict[str, Path]:
        """The unit's input files by role; InputError naming the first one that is missing."""
        files = {role: self.root / relative for role, relative in unit.sources.items()}
        for path in files.values():
            if not path.is_file():
                raise InputError(self.missing_source, path)
        return files

    def output_path(self, modality: str, unit: WorkUnit, suffix: str, name: str | None = None) -> Path:
        """``MODALITY/SPLIT/NAME{suffix}`` (``NAME``: the unit's key unless given, such as
        ``PIECE/SYSTEM`` for a unit that writes several files), relative to :attr:`out` (its
        folder is made)."""
        relative = Path(modality) / unit.split / f"{unit.key if name is None else name}{suffix}"
        (self.out / relative).parent.mkdir(parents=True, exist_ok=True)
        return relative

    def units(self) -> list[WorkUnit]:
        """Every unit of the data set, in a fixed order (raises UserError for a missing layout)."""
        raise NotImplementedError

    def convert(self, unit: WorkUnit) -> dict[str, Any] | list[dict[str, Any]] | Converted:
        """Write the unit's files under :attr:`out`; return its manifest record (or records, for a
        unit that makes several examples, such as a piece's systems; with the examples it dropped,
        as :class:`Converted`). Raises for a unit that cannot be converted (the message goes to
        ``failures.jsonl``)."""
        raise NotImplementedError


@dataclass
class PrepareSummary:
    units: int
    skipped: int
    """Units already converted by an earlier run."""
    converted: int
    failures: list[dict[str, str]]
    manifest: Path
    seconds: float
    left_out: list[dict[str, str]] = field(default_factory=list)


def prepare(
    converter: Converter,
    workers: int = 1,
    limit: int | None = None,
    splits: dict[str, str] | None = None,
    progress: bool = True,
    on_unit_done: Callable[[str], None] | None = None,
) -> PrepareSummary:
    """Convert every unit not done yet (see the module docstring). ``splits`` maps piece ids to the
    split to use instead of the published one (``--splits``); ``limit`` converts the first N units."""
    start = time.perf_counter()
    out = converter.out
    units = converter.units()  # a folder that is not the data set is refused before --out is made
    _claim(out, converter)
    remove_partial_files(out)  # a killed run's half-written files
    if splits is not None:
        units = [_resplit(unit, splits) for unit in units if unit.piece in splits]
    if limit is not None:
        units = units[:limit]
    _check_keys(units)
    records_dir = out / "records"
    records_dir.mkdir(parents=True, exist_ok=True)
    todo = [(i, u) for i, u in enumerate(units) if not _record_path(records_dir, i).is_file()]
    failures: list[dict[str, str]] = []
    bar = tqdm(total=len(todo), desc=f"preparing {converter.name}", unit="item", disable=not progress)
    for index, unit, outcome in _run(converter, todo, workers):
        if not isinstance(outcome, str):
            atomic_write_text(_record_path(records_dir, index), json.dumps(_stored(outcome), sort_keys=True))
        else:
            failures.append({"key": unit.key, "piece": unit.piece, "reason": outcome})
        bar.update()
        if on_unit_done is not None:
            on_unit_done(unit.key)
    bar.close()
    manifest, dropped = _write_manifest(out, records_dir, len(units))
    left_out = [*converter.left_out, *dropped]
    atomic_write_text(out / "failures.jsonl", _json_lines(failures))
    atomic_write_text(out / "left_out.jsonl", _json_lines(left_out))
    return PrepareSummary(
        len(units),
        len(units) - len(todo),
        len(todo) - len(failures),
        failures,
        manifest,
        time.perf_counter() - start,
        left_out,
    )


def _json_lines(rows: Iterable[dict[str, str]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _run(converter: Converter, todo: Sequence[tuple[int, WorkUnit]], workers: int) -> Iterable:
    """``(index, unit, record or failure reason)`` per unit, in order."""
    if workers <= 1 or len(todo) <= 1:
        for index, unit in todo:
            yield index, unit, _convert_one(converter, unit)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        outcomes = pool.map(_convert_one, [converter] * len(todo), [u for _, u in todo], chunksize=1)
        for (index, unit), outcome in zip(todo, outcomes):
            yield index, unit, outcome


def _convert_one(
    converter: Converter, unit: WorkUnit
) -> dict[str, Any] | list[dict[str, Any]] | Converted | str:
    try:
        return converter.convert(unit)
    except Exception as error:  # a bad unit becomes a listed failure; the others go on
        message = str(error) or type(error).__name__
        return message if isinstance(error, UserError | OSError) else f"{type(error).__name__}: {message}"


def _record_path(records_dir: Path, index: int) -> Path:
    return records_dir / f"{index:06d}.json"


def _stored(outcome: dict[str, Any] | list[dict[str, Any]] | Converted) -> dict[str, Any]:
    """A unit's outcome as its record file holds it."""
    if isinstance(outcome, Converted):
        return {"records": outcome.records, "left_out": outcome.left_out}
    return {"records": outcome if isinstance(outcome, list) else [outcome], "left_out": []}


def _write_manifest(out: Path, records_dir: Path, count: int) -> tuple[Path, list[dict[str, str]]]:
    """Write the manifest from the units' record files; return it and the examples they dropped."""
    lines, dropped = [], []
    for index in range(count):
        path = _record_path(records_dir, index)
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            lines += [json.dumps(record, sort_keys=True) for record in stored["records"]]
            dropped += stored["left_out"]
    manifest = out / "manifest.jsonl"
    atomic_write_text(manifest, "".join(line + "\n" for line in lines))
    return manifest, dropped


def _claim(out: Path, converter: Converter) -> None:
    """Write ``prepare.json``, or refuse a folder that holds something else."""
    stamp = {"format": FORMAT, "dataset": converter.name, "root": os.path.abspath(converter.root)}
    if converter.settings:
        stamp["settings"] = converter.settings

    def mismatch(found: Any) -> str:
        found = found if isinstance(found, dict) else {}
        where = f"holds data prepared from {found.get('dataset')!r} at {found.get('root')!r}"
        return where + (f" with {found['settings']}" if found.get("settings") else "")

    claim_folder(out, "prepare.json", stamp, "umt data prepare", mismatch)


def _resplit(unit: WorkUnit, splits: dict[str, str]) -> WorkUnit:
    return WorkUnit(unit.key, splits[unit.piece], unit.piece, unit.sources, unit.extra)


def _check_keys(units: Sequence[WorkUnit]) -> None:
    seen: dict[str, str] = {}
    for unit in units:
        if seen.setdefault(unit.piece, unit.split) != unit.split:
            raise UserError(f"piece {unit.piece!r} is in two splits ({seen[unit.piece]}, {unit.split})")
    keys = [unit.key for unit in units]
    if len(set(keys)) != len(keys):
        raise UserError("the data set lists one item twice")


def read_splits_file(path: Path, pieces: Iterable[str]) -> dict[str, str]:
    """Piece id -> split from a U-MusT ``dataset_pair_paths/*.json`` manifest (``{split: [entry,
    ...]}``): a piece belongs to a split when one of the entry's paths names it (file or folder
    name, before any ``_suffix`` the paper's code added)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"not a readable splits file ({error})", path) from None
    if not isinstance(data, dict):
        raise UserError('expected {"train": [...], "test": [...]}', path)
    wanted = set(pieces)
    found: dict[str, str] = {}
    for split, entries in data.items():
        for entry in entries if isinstance(entries, list) else []:
            for name in _names_in(entry):
                if name in wanted and found.setdefault(name, split) != split:
                    raise UserError(f"piece {name!r} is in two splits ({found[name]}, {split})", path)
    return found


def _names_in(entry: Any) -> set[str]:
    strings = [entry] if isinstance(entry, str) else []
    if isinstance(entry, dict):
        for value in entry.values():
            strings += value if isinstance(value, list) else [value]
    names = set()
    for text in (s for s in strings if isinstance(s, str)):
        parts = Path(text).parts
        for part in parts[-3:]:
            stem = part.rsplit(".", 1)[0] if "." in part else part
            names.add(stem)
            names.add(stem.rsplit("_", 1)[0])
            names.add(stem.split("_note_events")[0])
    return names
