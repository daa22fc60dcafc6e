"""``umt export CHECKPOINT --out DIR [--tokenizer DIR ...]``: a training checkpoint to a model folder.

The folder (``config.json`` + ``model.safetensors``, see :mod:`umt.pretrained`) records the
fingerprint of each ``--tokenizer`` folder and carries a copy of it under ``tokenizers/<modality>/``,
so inference finds the right tokenizers. A tokenizer whose codes do not fit the model's vocabulary,
or whose fingerprint is not that of the tokenizer the training shards were baked with (recorded in
the checkpoint), is refused before anything is written; the folder appears whole or not at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="turn a training checkpoint (.ckpt) into a model folder")
    parser.add_argument(
        "checkpoint", help="Lightning .ckpt of a translator (e.g. runs/NAME/checkpoints/last.ckpt)"
    )
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument(
        "--tokenizer",
        action="append",
        default=[],
        metavar="DIR",
        help="image or audio tokenizer folder the model was trained with (repeatable, one per modality)",
    )
    parser.set_defaults(func=run)


def checkpoint_vocabulary(checkpoint: str | Path):
    """The :class:`~umt.vocab.Vocabulary` a translator checkpoint was trained with (weights memory-mapped,
    not read)."""
    import torch

    from umt.errors import CheckpointError
    from umt.vocab import vocabulary_from_dict

    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError("no such checkpoint", path)
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many kinds for a corrupt or hostile file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"not a readable training checkpoint ({first})", path) from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "model" not in hparams or "state_dict" not in ckpt:
        raise CheckpointError("not a translator training checkpoint (no model hyperparameters)", path)
    try:
        return vocabulary_from_dict(hparams.get("vocab"))
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"bad vocabulary in the checkpoint ({error})", path) from None


def run(args: argparse.Namespace) -> int:
    from umt.errors import UserError
    from umt.pretrained import export_checkpoint
    from umt.tokenizers.folders import fitting_tokenizers
    from umt.utils.io import staging_dir

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").is_file())):
        raise UserError("exists and is not a model folder; refusing to overwrite it", out)
    hashes, folders = fitting_tokenizers(args.tokenizer, checkpoint_vocabulary(args.checkpoint))
    with staging_dir(out) as staging:
        export_checkpoint(args.checkpoint, staging, tokenizer_hashes=hashes, tokenizer_dirs=folders)
    listed = ", ".join(f"{m} {h[:16]}" for m, h in sorted(hashes.items())) or "no tokenizers"
    print(f"{out}\t{listed}")
    return 0
