"""``umt corpus build``: make the four-modality corpus (see :mod:`umt.data.corpus_builder`)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("corpus", help="build the training corpus from real and generated scores")
    actions = parser.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="excerpts of 1-4 measures as MusicXML, LMX, PNG, MIDI and WAV, with a manifest",
        description="Build (or resume) the corpus: every file is written atomically, finished "
        "excerpts are skipped, failures are listed in OUT/failures.jsonl.",
    )
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--max-pieces", type=int, default=None, help="at most N pieces per corpus source")
    build.add_argument("--procedural", type=int, default=0, help="number of generated piano pieces")
    build.add_argument("--excerpts-per-piece", type=int, default=8, help="at most N excerpts per piece")
    build.add_argument("--max-measures", type=int, default=4, help="excerpts are 1..N measures long")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--workers", type=int, default=1, help="parallel processes")
    build.add_argument(
        "--sources",
        default="all",
        help="comma-separated corpus sources (bach,quartets,joplin,schumann,others), 'all' or 'none'",
    )
    build.add_argument("--files", nargs="*", default=[], help="extra score files (MusicXML/MXL/kern)")
    build.add_argument("--degrade", type=int, default=0, help="degraded PNG copies per excerpt")
    build.add_argument(
        "--staff-height",
        type=int,
        default=None,
        help="px from a staff's top line to its bottom line (default: umt.data.render.STAFF_HEIGHT_PX)",
    )
    build.add_argument("--no-audio", action="store_true", help="skip the WAV files (no FluidSynth needed)")
    build.add_argument("--no-progress", action="store_true")
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from umt.data.corpus_builder import BuildOptions, build_corpus
    from umt.data.excerpts import SOURCES

    if args.sources == "all":
        sources = sorted(SOURCES)
    elif args.sources == "none":
        sources = []
    else:
        sources = [name.strip() for name in args.sources.split(",") if name.strip()]
    options = BuildOptions(
        out=args.out,
        sources=sources,
        max_pieces=args.max_pieces,
        procedural=args.procedural,
        max_excerpts_per_piece=args.excerpts_per_piece,
        max_measures=args.max_measures,
        seed=args.seed,
        workers=args.workers,
        audio=not args.no_audio,
        degrade_copies=args.degrade,
        **({} if args.staff_height is None else {"staff_height": args.staff_height}),
        extra_files=list(args.files),
        progress=not args.no_progress,
    )
    summary = build_corpus(options)
    for line in failure_lines(summary.failures):
        print(line, file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0


SHOWN_FAILURES = 20
"""Failures printed one per line; the rest are counted (all are in failures.jsonl)."""


def failure_lines(failures: list[dict]) -> list[str]:
    """A file that cannot be read is an error naming it; an excerpt that fails a later stage (render,
    synthesis) is a warning naming the piece, the excerpt and the stage."""
    lines = []
    for row in failures[:SHOWN_FAILURES]:
        if row["stage"] == "load":
            lines.append(f"umt: error: {row['reason']}")
        else:
            lines.append(
                f"umt: warning: {row['piece']} excerpt {row['key']}: {row['stage']} failed: {row['reason']}"
            )
    if len(failures) > SHOWN_FAILURES:
        lines.append(f"umt: ... and {len(failures) - SHOWN_FAILURES} more failures")
    return lines
