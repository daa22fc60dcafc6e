"""``umt migrate PATH --out NEW [--vocab KEY=VALUE ...]``: convert vocabulary layout 1 to layout 2.

PATH is a token shard set, an exported model folder or a training checkpoint made before the
vocabulary gave each modality a block of its own (:mod:`umt.migrate`). The converted copy is
written to NEW, whole or not at all; PATH is left as it was. Shards record only their vocabulary's
hash: give the vocabulary's sizes the way the training config does (``--vocab
image_codebook_size=256``); model folders and checkpoints carry theirs.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "migrate", help="convert shards, model folders or checkpoints to the current vocabulary layout"
    )
    parser.add_argument("path", help="shard folder, model folder or .ckpt made with vocabulary layout 1")
    parser.add_argument("--out", required=True, help="where to write the converted copy (a new path)")
    parser.add_argument(
        "--vocab",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="vocabulary size the shards were baked with (repeatable; defaults are the paper's)",
    )
    parser.set_defaults(func=run)


def parse_vocab(pairs: list[str]) -> dict[str, int]:
    from umt.errors import UserError
    from umt.utils.registry import did_you_mean
    from umt.vocab import VocabConfig

    fields = [name for name in VocabConfig.__dataclass_fields__ if name != "modalities"]
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise UserError(
                f"--vocab {pair!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}"
                f"{did_you_mean(key, fields) if sep else ''}"
            )
        try:
            values[key] = int(value)
        except ValueError:
            raise UserError(f"--vocab {pair!r}: {value!r} is not a whole number") from None
    return values


def run(args: argparse.Namespace) -> int:
    from umt.errors import UserError
    from umt.migrate import migrate

    try:
        what = migrate(args.path, args.out, parse_vocab(args.vocab) or None)
    except ValueError as error:  # a vocabulary size out of range
        raise UserError(str(error), args.path) from None
    print(f"converted {what} to vocabulary layout 2: {args.out}")
    return 0
