"""The ``umt`` command line.

Subcommands live in one module each under ``umt.cli``; :data:`COMMAND_MODULES` lists them in
one place. Each module defines ``register(subparsers)`` and keeps its heavy imports inside the
functions it runs, so ``umt --help`` stays fast.

A :class:`~umt.errors.UserError` becomes one line on stderr (``umt: error: FILE: problem``) and
exit status 2, with no traceback; so does an :class:`OSError` that reaches the top (a full disk, an
unwritable folder), since atomic writes leave no partial file behind it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from umt.errors import UserError

COMMAND_MODULES: tuple[str, ...] = (
    # one line per command module, in the order `umt --help` lists them
    "umt.cli.lmx",  # MusicXML <-> LMX
    "umt.cli.midi",  # MIDI <-> event tokens
    "umt.cli.corpus",  # build the four-modality corpus from music21's scores
    "umt.cli.tokenizer",  # train / import / inspect image and audio tokenizers
    "umt.cli.bake",  # files -> token shards
    "umt.cli.train",  # train the translator (Hydra config)
    "umt.cli.export",  # Lightning checkpoint -> self-describing model folder
    "umt.cli.umust",  # U-MusT's released run folders -> model folders
    "umt.cli.umust_tokens",  # U-MusT's tokenized data sets -> token shards
    "umt.cli.data",  # the paper's data sets -> manifests
    "umt.cli.pages",  # the score / non-score page classifier (MusicScore)
    "umt.cli.migrate",  # shards, model folders, checkpoints of an older vocabulary layout
    "umt.cli.translate",  # translate files with an exported model
    "umt.cli.eval",  # the paper's benchmarks on prepared test sets
    "umt.cli.retrieve",  # score images <-> MIDI retrieval with a SIM model
    "umt.cli.serve",  # the browser app
    "umt.cli.demo",  # all of the above end to end, with an HTML report
)


DTYPE_CHOICES = ("fp32", "bf16", "int8")
"""``--dtype`` choices: :data:`umt.models.quantize.DTYPES` (a test keeps them equal), spelt out here
so that building the parser does not import torch."""


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    """``--dtype``: the Translator's weights while it translates (see :mod:`umt.models.quantize`)."""
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="fp32",
        help="the model's weights while translating: fp32 as trained (default), int8 (CPU: about 3x "
        "faster decoding) or bf16 (CUDA, or CPUs with AMX/AVX512-BF16)",
    )


def build_parser() -> argparse.ArgumentParser:
    from umt import __version__

    parser = argparse.ArgumentParser(
        prog="umt", description="Unified Music Translation: score images, MusicXML (LMX), MIDI and audio."
    )
    parser.add_argument("--version", action="version", version=f"umt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except UserError as error:
        # a library's multi-line message (a YAML parser's) still makes one line
        print("umt: error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("umt: interrupted", file=sys.stderr)
        return 130
    except SystemExit as error:
        # Lightning turns a SIGTERM during training into SystemExit(None), i.e. exit status 0: a
        # killed job must not look finished.
        if type(error).__name__ != "SIGTERMException":
            raise
        print("umt: interrupted (SIGTERM); run the same command again to continue", file=sys.stderr)
        return 143
    except BrokenPipeError:  # e.g. `umt lmx linearize x.mxl | head`
        return 0
    except OSError as error:  # disk full, permission denied, ...: the machine's state, not a bug
        print(f"umt: error: {os_error_line(error)}", file=sys.stderr)
        return 2
    return int(status or 0)


def os_error_line(error: OSError) -> str:
    """``FILE: problem`` for an :class:`OSError` (``No space left on device``, ``Permission denied``)."""
    problem = error.strerror or str(error)
    return f"{error.filename}: {problem}" if error.filename else problem


def report_failures(failures: dict[str, str]) -> int:
    """Print one line per failed input (``umt: error: FILE: problem``); 1 if any failed, else 0."""
    for name, problem in failures.items():
        print(f"umt: error: {name}: {problem}", file=sys.stderr)
    return 1 if failures else 0
