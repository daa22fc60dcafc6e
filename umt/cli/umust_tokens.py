"""``umt import-umust-tokens MANIFEST --root DIR --tokenizer DIR --out SHARDS``.

U-MusT's tokenized data sets (their ``dataset_pair_paths/NAME.json`` manifests and the ``.pt``
image and ``.dac`` audio token files they list, as the authors baked them) become UMT token shards
(:mod:`umt.interop.umust_tokens`), so a model can be trained on exactly the paper's tokens. The
other side of each pair (LMX, MIDI) is baked by UMT from the same data set (``umt data prepare``,
``umt bake``); ``--key`` and ``--strip-prefix`` make the keys meet. Rerunning finishes a killed
run; a token file that cannot be read is one line, and the others go on.

Example (MAESTRO's audio tokens, paired with ``umt data prepare maestro`` keys)::

    umt import-umust-tokens dataset_pair_paths/maestro.json --root dataset/maestro \\
        --tokenizer tokenizers/unidac4 --key stem --out shards/maestro/audio
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-umust-tokens",
        help="U-MusT's tokenized data sets (.pt image, .dac audio tokens) as UMT token shards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", metavar="MANIFEST", help="a dataset_pair_paths/*.json or .json.gz")
    parser.add_argument("--root", required=True, help="the folder the manifest's paths are relative to")
    parser.add_argument(
        "--tokenizer", required=True, help="the UMT tokenizer folder of these codes (e.g. imported unidac4)"
    )
    parser.add_argument("--out", required=True, help="output folder of shard files")
    parser.add_argument(
        "--vocab", help="as for umt bake (an experiment name, or a vocabulary / model config file)"
    )
    parser.add_argument("--split", action="append", help="a split of the manifest (repeatable; default: all)")
    parser.add_argument(
        "--key", choices=("path", "stem"), default="path", help="keys are partner paths or their last name"
    )
    parser.add_argument("--strip-prefix", default="", help="a leading folder left out of the keys")
    parser.add_argument("--variants", default="all", help="all | none (variant 0 only) | N (the first N)")
    parser.add_argument("--window-seconds", type=float, default=20.0, help="audio windows, as for umt bake")
    parser.add_argument("--items-per-shard", type=int, default=1024)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from umt.cli import report_failures
    from umt.cli.bake import vocabulary_option
    from umt.data.bake import VariantChoice
    from umt.errors import UserError
    from umt.interop.umust_tokens import import_tokens
    from umt.modalities.windows import check_window_seconds
    from umt.tokenizers.folders import fit_problem, load_tokenizer

    root = Path(args.root)
    if not root.is_dir():
        raise UserError("no such folder", root)
    if args.items_per_shard < 1:
        raise UserError("--items-per-shard must be at least 1")
    try:
        window_seconds = check_window_seconds(args.window_seconds, "--window-seconds")
    except ValueError as error:
        raise UserError(str(error)) from None
    tokenizer = load_tokenizer(args.tokenizer)
    vocab = vocabulary_option(args.vocab)
    problem = fit_problem(tokenizer, vocab)
    if problem:
        raise UserError(problem, args.tokenizer)
    summary = import_tokens(
        Path(args.manifest),
        root,
        Path(args.out),
        tokenizer,
        vocab,
        splits=args.split,
        stem_only=args.key == "stem",
        strip_prefix=args.strip_prefix,
        variants=VariantChoice.parse(args.variants).limit,
        window_seconds=window_seconds,
        items_per_shard=args.items_per_shard,
        progress=not args.no_progress,
    )
    print(
        f"umt import-umust-tokens: {summary.entries} entries, {summary.skipped} already imported, "
        f"{summary.items} items written, {len(summary.failures)} failed -> {args.out}",
        file=sys.stderr,
    )
    return report_failures(summary.failures)
