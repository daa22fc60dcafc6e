"""``umt data prepare NAME --root DIR --out DIR``: convert a paper data set (see
:mod:`umt.data.prepare`).

Example::

    umt data prepare maestro --root downloads/maestro-v3.0.0 --out data/maestro --workers 2
    umt bake audio --tokenizer tokenizers/audio --manifest data/maestro/manifest.jsonl \\
        --out shards/maestro/audio
    umt bake midi --manifest data/maestro/manifest.jsonl --out shards/maestro/midi

Rerunning the same command finishes a killed run; a finished one is not redone. Items that cannot
be converted are listed on stderr and in ``OUT/failures.jsonl``; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys

NAMES = ("bpsd", "grandstaff", "maestro", "musicnet", "olimpic", "slakh", "ytsv")
"""The converters (kept here too so that ``umt --help`` imports nothing heavy)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="convert the paper's data sets to manifests for baking")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    prepare = actions.add_parser(
        "prepare",
        help="a data set in its published layout -> files and a manifest under --out",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prepare.add_argument("name", choices=NAMES)
    prepare.add_argument("--root", required=True, help="the unpacked data set")
    prepare.add_argument("--out", required=True, help="output folder")
    prepare.add_argument("--workers", type=int, default=1, help="parallel processes")
    prepare.add_argument("--limit", type=int, help="convert the first N items only")
    prepare.add_argument(
        "--splits", help="a U-MusT dataset_pair_paths/*.json: its splits replace the published ones"
    )
    prepare.add_argument("--no-progress", action="store_true")
    prepare.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from umt.cli import report_failures
    from umt.data.prepare import CONVERTERS, prepare
    from umt.data.prepare.base import read_splits_file
    from umt.errors import UserError

    if args.workers < 1:
        raise UserError("--workers must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    root = Path(args.root)
    if not root.is_dir():
        raise UserError("no such data set folder", root)
    converter = CONVERTERS[args.name](root, Path(args.out))
    splits = None
    if args.splits:
        splits = read_splits_file(Path(args.splits), [unit.piece for unit in converter.units()])
    summary = prepare(converter, args.workers, args.limit, splits, progress=not args.no_progress)
    print(
        f"umt data prepare: {summary.units} items, {summary.skipped} already done, {summary.converted} "
        f"converted, {len(summary.failures)} failed{_left_out(summary.left_out)} in {summary.seconds:.1f} s "
        f"-> {summary.manifest}",
        file=sys.stderr,
    )
    return report_failures({f["key"]: f["reason"] for f in summary.failures})


def _left_out(rows: list[dict[str, str]]) -> str:
    return f", {len(rows)} left out (left_out.jsonl)" if rows else ""
