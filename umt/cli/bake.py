"""``umt bake MODALITY``: turn a manifest of files into token shards (see :mod:`umt.data.bake`).

Examples::

    umt bake image --tokenizer tokenizers/image --manifest data/images.jsonl --out shards/image
    umt bake audio --tokenizer tokenizers/audio --manifest data/audio.jsonl --out shards/audio \\
        --devices 4 --num-workers 8
    umt bake lmx --manifest data/scores.txt --out shards/lmx

Rerunning the same command finishes a killed run (baked items are skipped). Files that cannot be
read are listed on stderr and in ``OUT/failures.json``; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys

from umt.modalities import MODALITY_SPECS  # light: the specs import no tokenizer
from umt.modalities.windows import WINDOW_SECONDS  # light, as the specs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bake",
        help="tokenize a manifest of files into token shards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("modality", choices=MODALITY_SPECS.names())
    parser.add_argument(
        "--manifest", required=True, help="JSON Lines ({key, path, split}) or a list of paths"
    )
    parser.add_argument("--out", required=True, help="output folder of shard files")
    parser.add_argument("--tokenizer", help="trained tokenizer folder (image and audio only)")
    parser.add_argument(
        "--variants",
        default="all",
        help="augmentation variants: all | none (the input only) | N (the first N)",
    )
    parser.add_argument(
        "--vocab",
        help="the vocabulary of the ids: an experiment name (the vocab of conf/experiment/NAME.yaml, "
        "e.g. demo or tiny) or a YAML/JSON file of vocabulary sizes; default: the paper's",
    )
    parser.add_argument("--split", help="bake only the manifest entries of this split")
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=WINDOW_SECONDS,
        help="audio and MIDI are cut into windows of this length, one item each (training's "
        "data.window_seconds must match; default: %(default)s, the paper's)",
    )
    parser.add_argument(
        "--items-per-shard", type=int, default=1024, help="items (file variants) per shard file"
    )
    parser.add_argument("--devices", default="auto", help="devices per node (a count, or 'auto')")
    parser.add_argument("--accelerator", default="auto", help="cpu | gpu | auto")
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--strategy", default="auto", help="Lightning strategy (e.g. ddp)")
    parser.add_argument("--batch-size", type=int, default=8, help="files per prediction batch")
    parser.add_argument(
        "--num-workers", type=int, default=0, help="DataLoader worker processes reading files"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from umt.cli import report_failures
    from umt.data.bake import VariantChoice
    from umt.errors import UserError
    from umt.modalities.windows import check_window_seconds
    from umt.tokenizers.registry import load_tokenizer

    choice = VariantChoice.parse(args.variants)
    try:
        window_seconds = check_window_seconds(args.window_seconds)
    except ValueError as error:
        raise UserError(f"--window-seconds: {error}") from None
    for name in ("items_per_shard", "batch_size", "num_nodes"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if args.num_workers < 0:
        raise UserError("--num-workers must be >= 0")
    devices: int | str = int(args.devices) if str(args.devices).isdigit() else args.devices
    tokenizer = load_tokenizer(args.modality, args.tokenizer)
    if tokenizer.modality != args.modality:
        raise UserError(f"{args.tokenizer}: is a {tokenizer.modality} tokenizer, not {args.modality}")

    from umt.training.bake import bake_with_lightning

    summary = bake_with_lightning(
        args.manifest,
        args.out,
        tokenizer,
        vocabulary_option(args.vocab),
        variants=choice,
        split=args.split,
        items_per_shard=args.items_per_shard,
        accelerator=args.accelerator,
        devices=devices,
        num_nodes=args.num_nodes,
        strategy=args.strategy,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        progress=not args.no_progress,
        window_seconds=window_seconds,
    )
    if not summary.is_global_zero:
        return 1 if summary.failures else 0
    print(
        f"umt bake: {summary.entries} files in the manifest, {summary.skipped} already baked, "
        f"{summary.items_written} items written, {len(summary.failures)} failed -> {summary.out_dir}",
        file=sys.stderr,
    )
    return report_failures(summary.failure_lines())


def vocabulary_option(value: str | None):
    """The :class:`~umt.vocab.Vocabulary` that ``--vocab`` names (see its help); UserError otherwise."""
    from pathlib import Path

    from umt.errors import UserError
    from umt.vocab import default_vocabulary, vocabulary_from_dict

    if value is None:
        return default_vocabulary()
    path = Path(value)
    if path.is_file():
        import yaml

        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise UserError(f"cannot read the vocabulary file ({type(error).__name__})", path) from None
        if isinstance(values, dict) and isinstance(values.get("vocab"), dict):
            values = values["vocab"]  # a whole config with a vocab node
        if not isinstance(values, dict):
            raise UserError("a vocabulary file holds a mapping of vocabulary sizes", path)
    else:
        from hydra.errors import HydraException

        from umt.training.config import experiment_vocab

        try:
            values = experiment_vocab(value)
        except HydraException:
            raise UserError(f"--vocab {value}: not a file, nor a conf/experiment/ name") from None
    try:
        return vocabulary_from_dict(values)
    except (TypeError, ValueError) as error:
        raise UserError(f"--vocab {value}: {error}") from None
