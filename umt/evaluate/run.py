"""``umt eval TASK``: score a model on test sets, batched, cached by item, resumable.

``OUT/eval.json`` records the settings (task, model, data, split, generation); rerunning with other
settings into the same folder is refused. Items are scored in chunks; each chunk's rows are
appended to ``OUT/per_item.jsonl`` as soon as they are made, so a killed run loses at most one
chunk and a rerun scores only the items not there yet. An item that cannot be scored (a corrupt
file, say) gets a row with its ``error`` and is left out of the figures. ``OUT/metrics.json`` and
``OUT/table.md`` (:mod:`umt.evaluate.report`) are written at the end of every run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from umt.errors import UserError
from umt.evaluate.items import EvalItem
from umt.evaluate.report import aggregate, write_report
from umt.evaluate.tasks import SCORERS, EvalContext
from umt.utils.io import claim_folder

PER_ITEM = "per_item.jsonl"
SETTINGS = "eval.json"


def run_eval(
    task: str,
    ctx: EvalContext,
    items: Sequence[EvalItem],
    out: Path,
    settings: dict[str, Any],
    chunk: int = 8,
    progress: bool = True,
    table: str | None = None,
) -> dict[str, Any]:
    """Score every item not scored yet; write the figures; return ``metrics.json``'s content."""
    out = Path(out)
    _claim(out, settings)
    ctx.cache_dir = out / "cache"
    done = read_rows(out / PER_ITEM)
    todo = [item for item in items if (item.test_set, item.key) not in done]
    bar = tqdm(
        total=len(items),
        initial=len(items) - len(todo),
        desc=f"umt eval {task}",
        unit="item",
        disable=not progress,
    )
    for start in range(0, len(todo), chunk):
        batch = todo[start : start + chunk]
        rows = _score(task, ctx, batch)
        _append(out / PER_ITEM, rows)
        done.update({(row["test_set"], row["key"]): row for row in rows})
        bar.update(len(batch))
    bar.close()
    rows = [done[(item.test_set, item.key)] for item in items]
    metrics = {"task": task, "settings": settings, **aggregate(task, rows, items, ctx.cache_dir)}
    write_report(out, metrics, table)
    return metrics


def _score(task: str, ctx: EvalContext, batch: Sequence[EvalItem]) -> list[dict[str, Any]]:
    """The batch's rows; when the batch fails, item by item (a bad item gets its error)."""
    try:
        return SCORERS[task](ctx, batch)
    except UserError as error:
        if len(batch) == 1:
            if "give --" in str(error):
                raise  # a missing helper model is the user's command, not the item
            return [{"key": batch[0].key, "test_set": batch[0].test_set, "error": str(error)}]
    rows = []
    for item in batch:
        rows += _score(task, ctx, [item])
    return rows


def read_rows(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows already scored, by (test set, key); a line cut short by a kill is dropped (and cut off
    the file, so that appending goes on cleanly)."""
    if not path.is_file():
        return {}
    rows, good = {}, 0
    with path.open("rb") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            if not line.endswith(b"\n"):
                break
            rows[(row["test_set"], row["key"])] = row
            good += len(line)
    if good != path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(good)
    return rows


def _append(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _claim(out: Path, settings: dict[str, Any]) -> None:
    claim_folder(
        out, SETTINGS, settings, "umt eval", lambda found: "holds an evaluation made with other settings"
    )
