"""Figures from per-item rows, paper-style tables, and runs side by side.

:func:`aggregate` turns the rows of ``per_item.jsonl`` into figures per test set (and over all of
them): SER is the corpus rate (edit distances summed over gold lengths, as OLiMPiC/Zeus compute
it); every other figure is the mean over the items that define it (an EMD is undefined for an
image with no notes read; those are counted). For ``a2i`` it adds the paper's random-pairing
baseline: the EMD between each item's gold LMX and another item's (a seeded derangement).

:data:`PAPER_TABLES` holds each paper table's test sets, and the paper's published figures where
the sources at hand give them (U-MusT's README: Table VII, OMR; Table VIII, AMT); ``table.md``
shows them beside ours, marked as the paper's. :func:`compare` puts runs side by side, or, given a
table, lays several runs out as its rows: the paper's mixture ablations (OMR only, + image-to-audio,
+ MIDI-to-audio) are such tables of three runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umt.errors import UserError
from umt.evaluate.items import EvalItem
from umt.utils.io import atomic_write_text

SER_TASKS = ("omr", "l2i")
COLUMNS: dict[str, tuple[tuple[str, str, float], ...]] = {
    "omr": (("ser", "SER %", 1.0), ("ser_no_tuplets", "SER w/o tuplets %", 1.0)),
    "l2i": (("ser", "read-back SER %", 1.0),),
    "amt": (
        ("onset_f1", "onset F1", 100.0),
        ("onset_offset_f1", "onset+offset F1", 100.0),
        ("multi_onset_f1", "multi-instrument onset F1", 100.0),
    ),
    "i2a": (
        ("onset_f1_50ms", "onset F1 @50 ms", 100.0),
        ("onset_f1_100ms", "@100 ms", 100.0),
        ("onset_f1_200ms", "@200 ms", 100.0),
        ("midi_onset_f1_50ms", "vs MIDI @50 ms", 100.0),
        ("fad_log_mel", "FAD (log-mel)", 1.0),
    ),
    "m2a": (
        ("onset_f1_50ms", "onset F1 @50 ms", 100.0),
        ("onset_f1_100ms", "@100 ms", 100.0),
        ("onset_f1_200ms", "@200 ms", 100.0),
        ("fad_log_mel", "FAD (log-mel)", 1.0),
    ),
    "a2i": (
        ("pitch_emd", "pitch EMD", 1.0),
        ("duration_emd", "duration EMD", 1.0),
        ("tokenizer_pitch_emd", "tokenizer pitch EMD", 1.0),
        ("tokenizer_duration_emd", "tokenizer duration EMD", 1.0),
        ("random_pitch_emd", "random-pair pitch EMD", 1.0),
        ("random_duration_emd", "random-pair duration EMD", 1.0),
    ),
}
"""Task -> (figure, column title, scale: F1 shown x100 as the paper does)."""


@dataclass(frozen=True)
class PaperTable:
    task: str
    title: str
    metric: str
    columns: tuple[str, ...]
    match: tuple[tuple[str, int], ...]
    """(text in our test set's name, the paper column it is) pairs, first match wins."""
    rows: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """The paper's published figures, a row per method (empty where the sources at hand lack them)."""
    full: str = ""
    """The row of the paper's full model (shown beside ours)."""
    note: str = ""

    def column_of(self, test_set: str) -> int | None:
        return next((index for text, index in self.match if text in test_set.lower()), None)


_UNPUBLISHED = (
    "The paper reports this in its Tables IV-VI, whose figures are not in the sources UMT was built "
    "from (U-MusT's README publishes Tables VII and VIII only): put them beside ours by hand."
)

PAPER_TABLES = {
    "paper-table-7": PaperTable(
        "omr",
        "Table VII: optical music recognition, symbol error rate (%), lower is better",
        "ser",
        ("OLiMPiC synthetic", "OLiMPiC scanned", "BPSD scanned"),
        (("synthetic", 0), ("scanned", 1), ("bpsd", 2)),
        {
            "OMR only": (15.90, 24.58, 45.39),
            "+ Image-to-Audio": (10.57, 15.45, 23.85),
            "+ MIDI-to-Audio (full)": (9.72, 13.67, 23.36),
            "Zeus (prior SOTA, retrained)": (10.10, 14.45, 31.24),
        },
        "+ MIDI-to-Audio (full)",
        "The paper's BPSD column is a hand-annotated 9-piece subset of scanned pages.",
    ),
    "paper-table-8": PaperTable(
        "amt",
        "Table VIII: automatic music transcription, note onset F1 (x100), higher is better",
        "onset_f1",
        ("MusicNet_EM strings", "MusicNet_EM woodwinds", "MAESTRO"),
        (("strings", 0), ("woodwind", 1), ("maestro", 2)),
        {
            "AMT only": (87.21, 72.04, 89.40),
            "+ Audio-to-Image": (87.28, 72.61, 89.38),
            "+ LMX-to-Image (full)": (87.25, 75.52, 89.45),
        },
        "+ LMX-to-Image (full)",
        "The paper splits MusicNet-EM's test recordings into strings and woodwinds; prepare each "
        "group into its own folder (--splits) to get those two rows.",
    ),
    "paper-table-i2a": PaperTable(
        "i2a",
        "direct image-to-audio, DTW note onset F1 (x100) at 50/100/200 ms, higher is better",
        "onset_f1_50ms",
        ("BPSD", "YTSV test"),
        (("bpsd", 0), ("ytsv", 1)),
        note=_UNPUBLISHED,
    ),
    "paper-table-a2i": PaperTable(
        "a2i",
        "audio-to-image, pitch and duration token EMD of the score read back, lower is better",
        "pitch_emd",
        ("BPSD", "YTSV test"),
        (("bpsd", 0), ("ytsv", 1)),
        note=_UNPUBLISHED,
    ),
    "paper-table-m2a": PaperTable(
        "m2a",
        "MIDI-to-audio, note onset F1 (x100) of the transcribed audio, higher is better",
        "onset_f1_50ms",
        ("MAESTRO",),
        (("maestro", 0),),
        note=_UNPUBLISHED,
    ),
}
"""Each paper table's test sets and figures. ``paper-table-7``/``-8`` are the paper's numbered
tables; the direct image-to-audio, audio-to-image and MIDI-to-audio sets are named by task, since
the sources at hand give neither their figures nor which of Tables IV-VI each is."""


def aggregate(
    task: str, rows: Sequence[dict[str, Any]], items: Sequence[EvalItem], cache_dir: Path | None = None
) -> dict[str, Any]:
    """``{"test_sets": {name: figures}, "items": n, "failed": [...]}`` (see the module docstring)."""
    scored = [row for row in rows if "error" not in row]
    failed = [
        {"key": row["key"], "test_set": row["test_set"], "error": row["error"]}
        for row in rows
        if "error" in row
    ]
    names = list(dict.fromkeys(row["test_set"] for row in rows))
    groups = {name: [row for row in scored if row["test_set"] == name] for name in names}
    if len(names) > 1:
        groups["all"] = scored
    figures = {name: _figures(task, group) for name, group in groups.items()}
    for name in figures:
        chosen = [item for item in items if name == "all" or item.test_set == name]
        if task == "a2i":
            figures[name].update(random_pairing_emd(chosen))
        if task in ("i2a", "m2a") and cache_dir is not None:
            figures[name]["fad_log_mel"] = test_set_fad(chosen, cache_dir)
    return {"test_sets": figures, "items": len(rows), "failed": failed}


def _figures(task: str, rows: Sequence[dict[str, Any]]) -> dict[str, float | int | None]:
    figures: dict[str, float | int | None] = {"items": len(rows)}
    if task in SER_TASKS:
        gold = sum(row["gold_tokens"] for row in rows)
        gold_nt = sum(row["gold_tokens_no_tuplets"] for row in rows)
        figures["ser"] = 100.0 * sum(row["errors"] for row in rows) / gold if gold else None
        figures["ser_no_tuplets"] = (
            100.0 * sum(row["errors_no_tuplets"] for row in rows) / gold_nt if gold_nt else None
        )
        return figures
    names = sorted({k for row in rows for k, v in row.items() if v is None or isinstance(v, int | float)})
    for name in names:
        values = [float(row[name]) for row in rows if isinstance(row.get(name), int | float)]
        figures[name] = float(np.mean(values)) if values else None
        undefined = sum(1 for row in rows if name in row and row[name] is None)
        if undefined:
            figures[f"{name}_undefined"] = undefined
    return figures


def random_pairing_emd(items: Sequence[EvalItem], seed: int = 0) -> dict[str, float | None]:
    """The paper's random baseline: each gold LMX against another item's (a seeded derangement)."""
    from umt.evaluate.tasks import read_lmx_tokens
    from umt.metrics.emd import lmx_emd

    with_lmx = [item for item in items if item.lmx is not None]
    if len(with_lmx) < 2:
        return {"random_pitch_emd": None, "random_duration_emd": None}
    order = np.random.default_rng(seed).permutation(len(with_lmx))
    golds = [read_lmx_tokens(item) for item in with_lmx]
    pairs = [lmx_emd(golds[order[(k + 1) % len(order)]], golds[order[k]]) for k in range(len(order))]
    result = {}
    for name in ("pitch_emd", "duration_emd"):
        values = [pair[name] for pair in pairs if pair[name] is not None]
        result[f"random_{name}"] = float(np.mean(values)) if values else None
    return result


def test_set_fad(items: Sequence[EvalItem], cache_dir: Path) -> float | None:
    """FAD (log-mel embedding) of the audio generated for ``items`` against their reference audio;
    None without two frames on each side."""
    from umt.data.prepare.recordings import read_mono
    from umt.evaluate.tasks import fad_sums_path
    from umt.metrics.fad import LOG_MEL_RATE, cached_statistics, frechet_distance, statistics_from_sums

    sums = []
    for item in items:
        path = fad_sums_path(cache_dir, item)
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                sums.append((int(data["count"]), data["total"], data["outer"]))
    references = [item.audio for item in items if item.audio is not None]
    if not sums or not references:
        return None

    def load(path: Path) -> tuple[np.ndarray, int]:
        return read_mono(path, LOG_MEL_RATE), LOG_MEL_RATE

    try:
        generated = statistics_from_sums(sums)
        reference = cached_statistics(cache_dir / "fad-reference", references, load)
    except ValueError:
        return None
    return frechet_distance(*generated, *reference)


def _cell(value: Any, scale: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value * scale:.2f}"


def markdown_table(metrics: dict[str, Any], table: str | None = None) -> str:
    """Rows per test set, the task's figures as columns; with ``table``, the paper's figure for
    each test set beside ours and the paper's whole table below."""
    task = metrics["task"]
    columns = COLUMNS[task]
    paper = PAPER_TABLES.get(table or "")
    beside = paper is not None and bool(paper.rows)
    head = ["test set", "items", *(title for _, title, _ in columns)]
    if beside:
        head.append("paper, full model")
    lines = [f"# umt eval {task}" + (f" ({paper.title})" if paper else ""), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, figures in metrics["test_sets"].items():
        cells = [
            name,
            str(figures.get("items", 0)),
            *(_cell(figures.get(key), scale) for key, _, scale in columns),
        ]
        if beside:
            column = paper.column_of(name)
            cells.append("—" if column is None else f"{paper.rows[paper.full][column]:.2f} (paper)")
        lines.append("| " + " | ".join(cells) + " |")
    if paper:
        lines += ["", *_paper_rows(paper)]
    if metrics.get("failed"):
        lines += ["", f"{len(metrics['failed'])} item(s) could not be scored (per_item.jsonl has why)."]
    return "\n".join(lines) + "\n"


def _paper_rows(paper: PaperTable) -> list[str]:
    """The paper's table as published (with its note), or just the note where it has no figures."""
    lines = []
    if paper.rows:
        lines += [f"The paper's {paper.title.split(':')[0]}, as published:", ""]
        lines += ["| method | " + " | ".join(paper.columns) + " |", "|" + "---|" * (len(paper.columns) + 1)]
        lines += [
            f"| {row} | " + " | ".join(f"{v:.2f}" for v in values) + " |"
            for row, values in paper.rows.items()
        ]
        lines.append("")
    return [*lines, paper.note] if paper.note else lines


def write_report(out: Path, metrics: dict[str, Any], table: str | None = None) -> None:
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / "table.md", markdown_table(metrics, table))


def compare(directories: Sequence[Path], table: str | None = None) -> str:
    """The figures of several runs side by side: one row per (test set, figure), a column per run.
    With ``table`` (a :data:`PAPER_TABLES` name), the runs are the rows of that table instead, as
    in the paper's mixture ablations: a run per row, the table's test sets as columns, the paper's
    own rows below."""
    runs = _read_runs(directories)
    tasks = {metrics["task"] for _, metrics in runs}
    if len(tasks) > 1:
        raise UserError(f"the folders hold different tasks ({', '.join(sorted(tasks))})")
    task = tasks.pop()
    if table is not None:
        return _ablation(runs, task, table)
    test_sets = list(dict.fromkeys(name for _, metrics in runs for name in metrics["test_sets"]))
    lines = [
        "| test set | figure | " + " | ".join(name for name, _ in runs) + " |",
        "|" + "---|" * (len(runs) + 2),
    ]
    for test_set in test_sets:
        for key, title, scale in (("items", "items", 1.0), *COLUMNS[task]):
            values = [metrics["test_sets"].get(test_set, {}).get(key) for _, metrics in runs]
            cells = [str(v) if key == "items" and v is not None else _cell(v, scale) for v in values]
            lines.append(f"| {test_set} | {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _read_runs(directories: Sequence[Path]) -> list[tuple[str, dict[str, Any]]]:
    runs = []
    for directory in directories:
        path = Path(directory) / "metrics.json"
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"not an umt eval folder ({error})", directory) from None
        runs.append((Path(directory).resolve().name, metrics))
    return runs


def _ablation(runs: list[tuple[str, dict[str, Any]]], task: str, table: str) -> str:
    paper = PAPER_TABLES.get(table)
    if paper is None:
        raise UserError(f"no paper table {table!r} (tables: {', '.join(PAPER_TABLES)})")
    if paper.task != task:
        raise UserError(f"{table} is a table of {paper.task} runs; the folders hold {task} runs")
    scale = next(scale for key, _, scale in COLUMNS[task] if key == paper.metric)
    lines = [f"# {paper.title}", "", "| run | " + " | ".join(paper.columns) + " |"]
    lines.append("|" + "---|" * (len(paper.columns) + 1))
    for name, metrics in runs:
        cells = ["—"] * len(paper.columns)
        for test_set, figures in metrics["test_sets"].items():
            column = paper.column_of(test_set)
            if column is not None and cells[column] == "—":
                cells[column] = _cell(figures.get(paper.metric), scale)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        f"| {row} (paper) | " + " | ".join(f"{v:.2f}" for v in values) + " |"
        for row, values in paper.rows.items()
    ]
    if paper.note:
        lines += ["", paper.note]
    return "\n".join(lines) + "\n"
