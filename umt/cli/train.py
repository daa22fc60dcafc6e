"""``umt train [OVERRIDE ...]``: compose conf/train.yaml with Hydra overrides and train.

Example: ``umt train experiment=tiny data.root=shards/`` (the same overrides ``train.py`` takes).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a translator or the sheet autoencoder (Hydra overrides, e.g. experiment=tiny)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides such as experiment=omr_i2a_m2a data.root=DIR"
    )
    parser.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from umt.errors import UserError
    from umt.training.config import compose, validate

    try:
        cfg = validate(compose(args.overrides))
        if args.print_config:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return 0
    except (HydraException, OmegaConfBaseException) as error:
        raise UserError(f"bad training config: {str(error).splitlines()[0]}") from None
    from umt.training.train import train

    train(cfg)
    return 0
