"""Random square patches of score pages, as the sheet-music autoencoder (ICCCM 2025) trains on:
``per_page`` patches of ``size`` px from each page, each redrawn while its mean whiteness (pixel
mean on [0, 1]) is above ``max_whiteness``, so mostly-blank paper is not learnt.

Draws are seeded per page (from the seed and the page's path relative to the pages folder), so a
rerun gives the same patches and a killed run is finished by running it again (a page whose
patches and record exist is skipped). A page smaller than a patch is skipped and counted; a page
where no draw within the bound has enough ink (a blank page) gives what it found and is counted.
Writes ``OUT/patches/PAGE_I.png`` and ``OUT/manifest.jsonl`` (``key``, ``image``, ``page``, ``x``,
``y``, ``whiteness``), which ``umt bake image`` and the tokenizer trainers read.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from umt.errors import InputError, UserError
from umt.modalities.image import PAGE_SUFFIXES, page_files
from umt.utils.io import atomic_write_bytes, atomic_write_text

DRAWS_PER_PATCH = 20
"""Draws allowed per wanted patch before a page is given up on."""


@dataclass
class PatchOptions:
    pages: str
    """A folder of page images, or a JSON Lines manifest of them (``image_field``: the file,
    relative to the manifest; ``label_field``: a dotted field copied to each patch as ``label``)."""
    out: str
    size: int = 448
    per_page: int = 5
    max_whiteness: float = 0.9
    seed: int = 0
    progress: bool = True
    image_field: str = "image"
    label_field: str | None = None
    group_field: str | None = None
    """A (dotted) field copied as ``group``: held-out splits keep a group together (a piece's
    excerpts), where without one they keep a page's patches together."""


@dataclass
class PatchSummary:
    pages: int = 0
    patches: int = 0
    skipped: int = 0
    """Pages done by an earlier run."""
    too_small: list[str] = field(default_factory=list)
    short: dict[str, int] = field(default_factory=dict)
    """Pages that gave fewer patches than asked (too little ink), with how many they gave."""
    failures: dict[str, str] = field(default_factory=dict)


def sample_patches(
    gray: np.ndarray, size: int, count: int, max_whiteness: float, rng: np.random.Generator
) -> list[tuple[int, int, float]]:
    """Up to ``count`` patches ``(x, y, whiteness)`` of ``gray [H, W]``, each with mean whiteness at
    most ``max_whiteness``, from at most ``count * DRAWS_PER_PATCH`` draws."""
    height, width = gray.shape
    if height < size or width < size:
        return []
    integral = np.pad(gray.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    found = []
    for _ in range(count * DRAWS_PER_PATCH):
        y, x = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        total = integral[y + size, x + size] - integral[y, x + size] - integral[y + size, x] + integral[y, x]
        whiteness = total / (size * size * 255.0)
        if whiteness <= max_whiteness:
            found.append((x, y, float(whiteness)))
            if len(found) == count:
                break
    return found


def make_patches(options: PatchOptions) -> PatchSummary:
    """Cut every page under ``options.pages`` into patches (see the module docstring)."""
    from PIL import Image

    from umt.tokenizers.image import read_image

    if options.size < 8 or options.per_page < 1 or not 0.0 < options.max_whiteness <= 1.0:
        raise UserError("--size must be >= 8, --per-page >= 1 and --max-whiteness in (0, 1]")
    out = Path(options.out)
    pages_dir, pages, labels = _pages(options)
    if not pages:
        raise UserError(f"no page images ({', '.join(PAGE_SUFFIXES)})", options.pages)
    records_dir = out / "records"  # made by the first record written
    summary = PatchSummary(pages=len(pages))
    for page in tqdm(pages, desc="patches", unit="page", disable=not options.progress):
        name = page.relative_to(pages_dir).with_suffix("").as_posix()
        record_path = records_dir / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"
        if record_path.is_file():
            stored = json.loads(record_path.read_text(encoding="utf-8"))
            summary.skipped += 1
            _count(summary, name, stored, options.per_page)
            continue
        try:
            gray = read_image(page)
        except InputError as error:
            summary.failures[str(page)] = error.problem
            continue
        digest = hashlib.sha256(f"{options.seed}:{name}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
        found = sample_patches(gray, options.size, options.per_page, options.max_whiteness, rng)
        rows = []
        for index, (x, y, whiteness) in enumerate(found):
            relative = Path("patches") / f"{name}_{index}.png"
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            patch = Image.fromarray(gray[y : y + options.size, x : x + options.size])
            buffer = io.BytesIO()
            patch.save(buffer, format="PNG")
            atomic_write_bytes(out / relative, buffer.getvalue())
            place = {"x": x, "y": y, "whiteness": round(whiteness, 4)}
            label, group = labels.get(page, (None, None))
            rows.append({"key": f"{name}_{index}", "image": relative.as_posix(), "page": str(page),
                         **place, "label": label, "group": group or str(page)})  # fmt: skip
        stored = {"rows": rows, "too_small": min(gray.shape) < options.size}
        atomic_write_text(record_path, json.dumps(stored))
        _count(summary, name, stored, options.per_page)
    if len(summary.failures) == len(pages):
        return summary  # no page could be read: no manifest, each page's problem is reported
    lines = []
    for record in sorted(records_dir.glob("*.json")):
        lines += [json.dumps(row, sort_keys=True) for row in json.loads(record.read_text())["rows"]]
    atomic_write_text(out / "manifest.jsonl", "".join(line + "\n" for line in sorted(lines)))
    return summary


def dotted_field(record: dict, dotted: str | None) -> str | None:
    """The string at a dotted path of a record (`metadata.composer`), or None."""
    value: object = record
    for part in dotted.split(".") if dotted else []:
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str) and dotted else None


def _pages(options: PatchOptions) -> tuple[Path, list[Path], dict[Path, tuple[str | None, str | None]]]:
    """The pages' folder (names are relative to it), the pages, and each page's (label, group)."""
    source = Path(options.pages)
    if source.is_dir():
        return source, page_files(source), {}
    if not source.is_file():
        raise UserError("no such folder or manifest of pages", source)
    pages, labels = [], {}
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            page = source.parent / str(record[options.image_field])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"line {number}: not a record with {options.image_field!r}", source) from None
        if ".." in Path(str(record[options.image_field])).parts:
            raise UserError(f"line {number}: a page outside the manifest's folder", source)
        pages.append(page)
        labels[page] = (dotted_field(record, options.label_field), dotted_field(record, options.group_field))
    return source.parent, sorted(set(pages)), labels


def _count(summary: PatchSummary, name: str, stored: dict, wanted: int) -> None:
    summary.patches += len(stored["rows"])
    if stored["too_small"]:
        summary.too_small.append(name)
    elif len(stored["rows"]) < wanted:
        summary.short[name] = len(stored["rows"])
