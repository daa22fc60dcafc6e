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

NAMES = ("bpsd", "grandstaff", "maestro", "musicnet", "musicscore", "olimpic", "slakh", "ytsv")
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
    musicscore = prepare.add_argument_group("musicscore")
    musicscore.add_argument("--dpi", type=int, help="pages are rendered at this resolution (default 100)")
    musicscore.add_argument("--classifier", metavar="MODEL", help="a page classifier: drop non-score pages")
    musicscore.add_argument("--score-threshold", type=float, help="P(score) a page needs to be kept (0.5)")
    musicscore.add_argument("--scales", help="page counts of seeded subsets, e.g. 400,14656,204800")
    musicscore.add_argument("--seed", type=int, help="splits by work and the scales' draw (default 0)")
    prepare.set_defaults(func=run_prepare)
    patches = actions.add_parser(
        "patches",
        help="random square patches of score pages (the sheet-music autoencoder's input)",
        description=(
            "Cut PER_PAGE patches of SIZE px from every page image under --pages, each redrawn while its "
            "mean whiteness is above --max-whiteness; seeded per page, resumable. Pages smaller than a "
            "patch and pages without enough ink are counted."
        ),
    )
    patches.add_argument(
        "--pages", required=True, help="folder of page images, or a JSON Lines manifest of them"
    )
    patches.add_argument("--image-field", default="image", help="manifest: the field naming the page image")
    patches.add_argument(
        "--label-field", help="manifest: a (dotted) field copied to the patches as their label"
    )
    patches.add_argument(
        "--group-field", help="manifest: a (dotted) field whose values are held out together (a piece)"
    )
    patches.add_argument("--out", required=True, help="output folder")
    patches.add_argument("--size", type=int, default=448)
    patches.add_argument("--per-page", type=int, default=5)
    patches.add_argument("--max-whiteness", type=float, default=0.9, help="largest mean of a patch on [0, 1]")
    patches.add_argument("--seed", type=int, default=0)
    patches.add_argument("--no-progress", action="store_true")
    patches.set_defaults(func=run_patches)


def run_prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from umt.cli import report_failures
    from umt.data.prepare import prepare
    from umt.data.prepare.base import read_splits_file
    from umt.errors import UserError

    if args.workers < 1:
        raise UserError("--workers must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    root = Path(args.root)
    if not root.is_dir():
        raise UserError("no such data set folder", root)
    converter = _converter(args, root)
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
    if args.name == "musicscore":
        _musicscore_reports(args, converter, summary.manifest)
    return report_failures({f["key"]: f["reason"] for f in summary.failures})


def run_patches(args: argparse.Namespace) -> int:
    from umt.cli import report_failures
    from umt.data.patches import PatchOptions, make_patches

    options = PatchOptions(args.pages, args.out, args.size, args.per_page, args.max_whiteness, args.seed)
    options.progress = not args.no_progress
    options.image_field, options.label_field, options.group_field = (
        args.image_field,
        args.label_field,
        args.group_field,
    )
    summary = make_patches(options)
    print(
        f"umt data patches: {summary.pages} pages ({summary.skipped} done before), "
        f"{summary.patches} patches; "
        f"{len(summary.too_small)} smaller than a patch, {len(summary.short)} with too little ink for "
        f"{args.per_page} -> {args.out}/manifest.jsonl",
        file=sys.stderr,
    )
    return report_failures(summary.failures)


MUSICSCORE_OPTIONS = ("dpi", "classifier", "score_threshold", "scales", "seed")


def _converter(args: argparse.Namespace, root):
    from pathlib import Path

    from umt.data.prepare import CONVERTERS
    from umt.errors import UserError

    given = [name for name in MUSICSCORE_OPTIONS if getattr(args, name) is not None]
    if args.name != "musicscore":
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} is a musicscore option")
        return CONVERTERS[args.name](root, Path(args.out))
    options = {
        "dpi": args.dpi or 100,
        "classifier": args.classifier,
        "threshold": 0.5 if args.score_threshold is None else args.score_threshold,
        "seed": args.seed or 0,
    }
    return CONVERTERS["musicscore"](root, Path(args.out), **options)


def _musicscore_reports(args: argparse.Namespace, converter, manifest) -> None:
    """``OUT/metadata_report.json`` (missing and garbled metadata, counted) and the scales."""
    import json

    from umt.data.prepare.musicscore import metadata_report, write_scales
    from umt.errors import UserError
    from umt.utils.io import atomic_write_text

    report = metadata_report(converter.units())
    atomic_write_text(manifest.parent / "metadata_report.json", json.dumps(report, indent=2) + "\n")
    problems = ", ".join(f"{count} {name}" for name, count in report["problems"].items()) or "none"
    print(f"umt data prepare: metadata of {report['scores']} scores; problems: {problems}", file=sys.stderr)
    if args.scales:
        try:
            sizes = [int(size) for size in args.scales.split(",") if size.strip()]
        except ValueError:
            raise UserError(f"--scales must be comma-separated page counts, not {args.scales!r}") from None
        for size, path in write_scales(manifest, sizes, args.seed or 0).items():
            print(f"umt data prepare: scale {size} -> {path}", file=sys.stderr)


def _left_out(rows: list[dict[str, str]]) -> str:
    return f", {len(rows)} left out (left_out.jsonl)" if rows else ""
