"""U-MusT's tokenized data sets as UMT token shards: train on exactly the paper's tokens.

Their token files, as their bake scripts write them (MALerLab/U-MusT ``scripts/bake_image_tokens.py``,
``scripts/bake_audio_tokens.py``) and their manifests (``dataset_pair_paths/NAME.json[.gz]``:
``{split: [entry, ...]}``) list them:

* **image** (``"pt"``): ``torch.save`` of an int16 tensor ``[8, 4, H, W, K]``, the RQ-VAE codes of
  8 horizontal x 4 vertical one-pixel shifts of a system image, or ``[6, 8, 4, H, W, K]`` with five
  degraded copies after the clean one, or ``[H, W, K]`` unshifted. An entry may list several files,
  the systems of one page. Their shift ``[dx, dy]`` is the crop UMT calls variant ``4 * dx + dy``
  (:func:`umt.tokenizers.image.shift_variants`: the same canvas, content ``dx`` px left and ``dy``
  px up); degraded copy ``a`` becomes variant ``32 * a + 4 * dx + dy``.
* **audio** (``"dac"``): descript-audio-codec ``DACFile`` files, a pickled dict
  ``{"codes": uint16 [B, K, T], "metadata": {...}}`` read without unpickling code
  (:func:`umt.utils.safe_pickle.load_npy`). ``B`` is 9 for their shift variants (shifts -20..20
  samples in steps of 5, index 4 unshifted; their shift ``s`` takes the signal ``s`` samples later,
  UMT's shift ``-s``) or 1. An entry lists a recording's 60 s segments, one file each, named
  ``STEM_START.dac`` (start in seconds; 50 s apart); a single file starts at 0. UMT cuts each
  ``window_seconds`` window (:func:`umt.modalities.windows.sample_windows`) out of the segment that
  holds it whole, at the nearest frame; the frames are theirs.

Keys: an entry's key names its example the way ``umt data prepare`` does, so the other modality's
shards (baked by UMT from the same data set) pair with it. It is the path of the entry's partner
file (``lmx``, ``npy``/``midi``; else the token file) without its extension and without the
suffixes their scripts add (``_note_events``, ``_yolo_resized``); ``--key stem`` keeps only the last
name, and ``--strip-prefix`` drops a leading folder.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from umt.errors import InputError, UserError
from umt.modalities.windows import WINDOW_SECONDS, sample_windows, window_key
from umt.tokenizers.audio import SHIFT_SAMPLES
from umt.tokenizers.image import NUM_SHIFTS_X, NUM_SHIFTS_Y, flatten_systems
from umt.utils.safe_pickle import load_npy
from umt.vocab import Vocabulary

TOKEN_FIELDS = {"image": "pt", "audio": "dac"}
"""UMT modality -> the manifest field of its token files."""
PARTNER_FIELDS = ("lmx", "npy", "midi")
THEIR_SUFFIXES = ("_note_events", "_yolo_resized")
TOKEN_FOLDERS = ("image_tokens", "audio_tokens", "mono_augmented", "mono")
"""Folders their bake scripts put token files in (left out of a key made from a token path)."""
THEIR_SHIFTS = tuple(range(-20, 21, 5))
"""Their audio variants' shifts in samples (index 4 is the signal itself)."""
MAX_MANIFEST_BYTES = 1 << 30
SEGMENT_START = re.compile(r"_(\d+(?:\.\d+)?)$")


# -------------------------------------------------------------------------------------- manifests
def read_manifest(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """``{split: [entry, ...]}`` of a ``dataset_pair_paths`` file (``.json`` or ``.json.gz``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError("no such manifest", path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read(MAX_MANIFEST_BYTES + 1)
            if len(raw) > MAX_MANIFEST_BYTES:
                raise UserError(f"inflates to more than {MAX_MANIFEST_BYTES >> 20} MiB; refused", path)
        else:
            raw = path.read_bytes()
        data = json.loads(raw)
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"not a readable U-MusT manifest ({type(error).__name__})", path) from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise UserError('not a U-MusT manifest (expected {"train": [...], "test": [...]})', path)
    return data


def entry_key(
    entry: dict[str, Any], token_field: str, stem_only: bool = False, strip_prefix: str = ""
) -> str:
    """The UMT key of a manifest entry (see the module docstring)."""
    partner = next((entry[f] for f in PARTNER_FIELDS if isinstance(entry.get(f), str)), None)
    if partner is not None:
        path = PurePosixPath(partner)
        folder = path.parent
    else:
        first = entry[token_field][0] if isinstance(entry[token_field], list) else entry[token_field]
        path = PurePosixPath(str(first))
        parts = path.parent.parts
        cut = next((i for i, part in enumerate(parts) if part in TOKEN_FOLDERS), len(parts))
        folder = PurePosixPath(*parts[:cut])
    name = path.stem
    if partner is None and token_field == "dac":
        name = SEGMENT_START.sub("", name)
    for suffix in THEIR_SUFFIXES:
        name = name.removesuffix(suffix)
    key = name if stem_only else str(folder / name)
    prefix = strip_prefix.strip("/")
    if prefix and key.startswith(prefix + "/"):
        key = key[len(prefix) + 1 :]
    return key


def token_paths(entry: dict[str, Any], token_field: str, root: Path, manifest: Path) -> list[Path]:
    """The entry's token files under ``root``; a path that leaves it is refused."""
    value = entry.get(token_field)
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(name, str) and name for name in names):
        raise UserError(f"an entry's {token_field!r} is not a path or a list of paths", manifest)
    paths = []
    for name in names:
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise UserError(f"{name!r} leaves the --root folder; refused", manifest)
        paths.append(root / relative)
    return paths


# ------------------------------------------------------------------------------------------ image
def read_image_tokens(path: Path) -> np.ndarray:
    """A ``.pt`` token file -> codes ``[V, H, W, K]`` in UMT's variant order."""
    import torch

    if not path.is_file():
        raise InputError("no such token file", path)
    try:
        tensor = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError (code refused), RuntimeError (not a torch file), ...
        raise InputError(f"not a readable token file ({type(error).__name__})", path) from None
    if not isinstance(tensor, torch.Tensor) or tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise InputError("does not hold an integer code tensor", path)
    codes = tensor.numpy().astype(np.int64)
    if codes.ndim == 3:
        return codes[None]
    if codes.ndim == 5 and codes.shape[:2] == (NUM_SHIFTS_X, NUM_SHIFTS_Y):
        return codes.reshape(-1, *codes.shape[2:])
    if codes.ndim == 6 and codes.shape[1:3] == (NUM_SHIFTS_X, NUM_SHIFTS_Y):
        return codes.reshape(-1, *codes.shape[3:])
    expected = "[8, 4, H, W, K], [6, 8, 4, H, W, K] or [H, W, K]"
    raise InputError(f"code tensor of shape {tuple(codes.shape)}: expected {expected}", path)


def image_items(paths: list[Path], vocab: Vocabulary, variants: int | None) -> list[np.ndarray]:
    """Each variant's content rows ``[T, K]`` of one entry (its systems joined by SEP)."""
    systems = [read_image_tokens(path) for path in paths]
    count = min(len(s) for s in systems)
    if variants is not None:
        count = min(count, variants)
    for path, codes in zip(paths, systems, strict=True):
        _check_codes(codes, vocab, "image", path)
    return [flatten_systems([codes[v] for codes in systems], vocab) for v in range(count)]


# ------------------------------------------------------------------------------------------ audio
@dataclass
class Segment:
    """One ``.dac`` file: codes ``[V, K, T]`` in UMT's variant order, from ``start`` samples on."""

    start: int
    samples: int
    codes: np.ndarray


def read_dac_file(path: Path, sample_rate: int, hop_length: int, start_seconds: float) -> Segment:
    """One ``.dac`` file (a numpy-saved dict, read without running code) as a :class:`Segment`; its
    length is the recorded ``original_length``, else its frames times ``hop_length``."""
    if not path.is_file():
        raise InputError("no such token file", path)
    value = load_npy(path)
    if not isinstance(value, dict) or not isinstance(value.get("codes"), np.ndarray):
        raise InputError("not a DAC file (no codes array)", path)
    codes = value["codes"].astype(np.int64)
    metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
    if codes.ndim != 3 or codes.shape[0] not in (1, len(THEIR_SHIFTS)):
        raise InputError(f"codes of shape {codes.shape}: expected [9, K, T] or [1, K, T]", path)
    rate = int(metadata.get("sample_rate", sample_rate))
    if rate != sample_rate:
        raise InputError(f"coded at {rate} Hz, the tokenizer's rate is {sample_rate} Hz", path)
    if codes.shape[0] > 1:  # UMT's shift u is their shift -u
        codes = codes[[THEIR_SHIFTS.index(-shift) for shift in SHIFT_SAMPLES]]
    samples = int(metadata.get("original_length", 0)) or codes.shape[-1] * hop_length
    return Segment(round(start_seconds * sample_rate), samples, codes)


def segment_start(path: Path, single: bool) -> float:
    """A segment's start in seconds, from its name ``STEM_START.dac`` (0 for a lone file)."""
    if single:
        return 0.0
    found = SEGMENT_START.search(path.name.removesuffix(".dac"))
    if found is None:
        raise InputError("segment name does not end in _START (seconds)", path)
    return float(found.group(1))


def audio_items(
    paths: list[Path], vocab: Vocabulary, tokenizer: Any, window_seconds: float, variants: int | None
) -> list[tuple[int, int, np.ndarray]]:
    """``(window, variant, rows [F, K])`` of one recording's segments."""
    rate, hop = tokenizer.sample_rate, tokenizer.hop_length
    segments = [read_dac_file(p, rate, hop, segment_start(p, len(paths) == 1)) for p in paths]
    wanted = vocab.modality_codebooks("audio")
    for path, segment in zip(paths, segments, strict=True):
        segment.codes = segment.codes[:, :wanted]  # residual codes: a prefix is the coarser code
        _check_codes(segment.codes.transpose(0, 2, 1), vocab, "audio", path)
    total = max(s.start + s.samples for s in segments)
    count = min(len(s.codes) for s in segments)
    if variants is not None:
        count = min(count, variants)
    items = []
    for index, (start, stop) in enumerate(sample_windows(total, rate, window_seconds, min_samples=hop)):
        frames = -(-(stop - start) // hop)
        holding = [s for s in segments if s.start <= start and stop <= s.start + s.samples]
        if not holding:
            where = f"{start / rate:.2f} s to {stop / rate:.2f} s"
            raise InputError(f"no segment holds window {index} ({where})", paths[0])
        segment = holding[-1]
        first = round((start - segment.start) / hop)
        first = min(first, max(0, segment.codes.shape[-1] - frames))
        for variant in range(count):
            piece = segment.codes[variant, :, first : first + frames]
            items.append((index, variant, vocab.codes_to_ids("audio", piece.T)))
    return items


def _check_codes(codes: np.ndarray, vocab: Vocabulary, modality: str, path: Path) -> None:
    """``codes [..., K]`` fit the vocabulary: K codebooks of codes below the codebook size."""
    wanted = vocab.modality_codebooks(modality)
    size = vocab[f"{modality}/cb0"].size
    if codes.shape[-1] != wanted:
        raise InputError(f"{codes.shape[-1]} codebooks; the vocabulary has {wanted}", path)
    if codes.size and (codes.min() < 0 or codes.max() >= size):
        raise InputError(f"codes range {codes.min()}..{codes.max()}; the codebooks hold 0..{size - 1}", path)


# ------------------------------------------------------------------------------------- the import
@dataclass
class TokenEntry:
    key: str
    split: str
    paths: list[Path]


def token_entries(
    manifest: Path, root: Path, modality: str, splits: list[str] | None, stem_only: bool, strip_prefix: str
) -> Iterator[TokenEntry]:
    """The manifest's entries with ``modality`` token files, in the splits asked for."""
    field_name = TOKEN_FIELDS[modality]
    data = read_manifest(manifest)
    unknown = sorted(set(splits or []) - set(data))
    if unknown:
        raise UserError(f"no split {', '.join(unknown)} (it has {', '.join(sorted(data))})", manifest)
    seen: dict[str, str] = {}
    for split in splits or sorted(data):
        for entry in data[split]:
            if not isinstance(entry, dict) or field_name not in entry:
                continue
            key = entry_key(entry, field_name, stem_only, strip_prefix)
            if key in seen:
                if seen[key] == split:
                    continue  # listed twice (their test sets repeat their train entries)
                raise UserError(f"key {key!r} is in two splits ({seen[key]}, {split})", manifest)
            seen[key] = split
            yield TokenEntry(key, split, token_paths(entry, field_name, root, manifest))


@dataclass
class ImportSummary:
    entries: int = 0
    skipped: int = 0
    items: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    """Entry's file -> problem (one line)."""


def import_tokens(
    manifest: Path,
    root: Path,
    out: Path,
    tokenizer: Any,
    vocab: Vocabulary,
    *,
    splits: list[str] | None = None,
    stem_only: bool = False,
    strip_prefix: str = "",
    variants: int | None = None,
    window_seconds: float = WINDOW_SECONDS,
    items_per_shard: int = 1024,
    progress: bool = True,
) -> ImportSummary:
    """Write the manifest's ``tokenizer.modality`` token files as UMT shards in ``out``.

    Each entry's items go to one shard file together, so a killed run is finished by running it
    again (entries already there are skipped). A file that cannot be read is a failure of its entry
    (name -> reason in the summary); the others go on.
    """
    from tqdm.auto import tqdm

    from umt.data.bake import completed_items, rank_prefix, shard_info
    from umt.data.shards import ShardWriter

    modality = tokenizer.modality
    info = shard_info(tokenizer, vocab, window_seconds)
    done = completed_items(out, info)
    entries = list(token_entries(manifest, root, modality, splits, stem_only, strip_prefix))
    summary = ImportSummary(entries=len(entries))
    with ShardWriter(out, info, prefix=rank_prefix(0), items_per_shard=items_per_shard) as writer:
        for entry in tqdm(entries, unit="entry", desc=f"import {modality}", disable=not progress):
            if entry.key in done:
                summary.skipped += 1
                continue
            try:
                items = _entry_items(entry, tokenizer, vocab, window_seconds, variants)
            except InputError as error:
                name = error.path or str(entry.paths[0])
                summary.failures[name] = error.problem
                continue
            writer.add_together(items)
            summary.items += len(items)
    return summary


def _entry_items(
    entry: TokenEntry, tokenizer: Any, vocab: Vocabulary, window_seconds: float, variants: int | None
) -> list[tuple[str, int, np.ndarray]]:
    if tokenizer.modality == "image":
        rows = image_items(entry.paths, vocab, variants)
        return [(entry.key, variant, r) for variant, r in enumerate(rows)]
    windows = audio_items(entry.paths, vocab, tokenizer, window_seconds, variants)
    return [(window_key(entry.key, index), variant, r) for index, variant, r in windows]
