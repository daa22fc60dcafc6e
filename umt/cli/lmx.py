"""``umt lmx``: MusicXML <-> Linearized MusicXML (LMX).

umt lmx linearize FILE... [--part-index N | --all-parts] [--by-system]
umt lmx delinearize FILE.lmx -o OUT.musicxml
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lmx", help="MusicXML <-> Linearized MusicXML (LMX) tokens")
    commands = parser.add_subparsers(dest="lmx_command", metavar="ACTION", required=True)

    linearize = commands.add_parser(
        "linearize",
        help="print the LMX tokens of MusicXML files (.musicxml, .xml, .mxl)",
        description="Print LMX tokens: one line per part (or per system with --by-system). "
        "With several files, each is processed; failures are reported per file at the end.",
    )
    linearize.add_argument("files", nargs="+", metavar="FILE")
    which = linearize.add_mutually_exclusive_group()
    which.add_argument(
        "--part-index",
        type=int,
        default=None,
        help="0-based index among <part> elements (default: piano, else first)",
    )
    which.add_argument("--all-parts", action="store_true", help="print every part, one after the other")
    linearize.add_argument("--by-system", action="store_true", help="one line per system instead of per part")
    linearize.add_argument(
        "--with-name",
        action="store_true",
        help="prefix each line with 'FILE<TAB>' (useful with several files)",
    )
    linearize.set_defaults(func=_linearize)

    delinearize = commands.add_parser(
        "delinearize",
        help="write MusicXML for an LMX file",
        description="Read LMX tokens, one system per line as `umt lmx linearize --by-system` prints "
        "them (or the reference .lmx format: a header, '#' comments and '---' between systems), and "
        "write score-partwise MusicXML with a system break before each system after the first. "
        "Dropped and repaired token counts are reported on stderr.",
    )
    delinearize.add_argument("file", metavar="FILE.lmx")
    delinearize.add_argument("-o", "--output", required=True, metavar="OUT.musicxml")
    delinearize.add_argument("-v", "--verbose", action="store_true", help="list each dropped / repaired item")
    delinearize.set_defaults(func=_delinearize)


def _linearize(args: argparse.Namespace) -> int:
    from umt.cli import report_failures
    from umt.errors import UserError
    from umt.tokenizers.lmx import linearize_part, linearize_part_systems, part_count, select_part
    from umt.utils.safe_xml import read_musicxml

    failures: dict[str, str] = {}
    for name in args.files:
        try:
            root = read_musicxml(name)
            indices = range(part_count(root, name)) if args.all_parts else [args.part_index]
            lines = []  # built completely before printing: no partial output for a failing file
            for index in indices:
                part = select_part(root, index, name)
                if args.by_system:
                    lines.extend(" ".join(system) for system in linearize_part_systems(part))
                else:
                    lines.append(" ".join(linearize_part(part)))
        except UserError as error:
            failures[name] = error.problem
            continue
        prefix = f"{name}\t" if args.with_name else ""
        sys.stdout.write("".join(f"{prefix}{line}\n" for line in lines))
        sys.stdout.flush()
    return report_failures(failures)


def _delinearize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from umt.errors import InputError
    from umt.tokenizers.lmx import delinearize, parse_lmx_text
    from umt.utils.io import atomic_write_text

    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except IsADirectoryError:
        raise InputError("is a directory", path) from None
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file", path) from None
    except OSError as error:
        raise InputError(f"cannot read file: {error.strerror or error}", path) from None
    if not text.strip():
        raise InputError("empty file", path)
    systems = parse_lmx_text(text)
    result = delinearize(systems)
    try:
        atomic_write_text(args.output, result.musicxml)
    except OSError as error:
        raise InputError(f"cannot write: {error.strerror or error}", args.output) from None
    if args.verbose:
        for problem in result.problems:
            print(f"umt: {path}: {problem}", file=sys.stderr)
    print(
        f"umt: {path}: wrote {args.output} ({len(systems)} system{'s' if len(systems) > 1 else ''}, "
        f"{result.dropped} tokens dropped, {result.repaired} repaired)",
        file=sys.stderr,
    )
    return 0
