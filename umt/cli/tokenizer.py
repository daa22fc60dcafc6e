"""``umt tokenizer train|info|import``: train, inspect and import the neural (image / audio) tokenizers.

- ``umt tokenizer train image|audio [--config NAME] [--data PATH] [--out DIR] [OVERRIDE ...]``
  composes ``conf/tokenizer/NAME.yaml`` (default ``rqvae`` / ``dac``) with Hydra overrides, trains,
  and exports ``DIR/tokenizer`` (``DIR`` defaults to the config's ``output_dir``).
- ``umt tokenizer info DIR`` prints the modality, fingerprint and sizes of a tokenizer folder.
- ``umt tokenizer import image|audio REFERENCE --out DIR`` converts a released reference checkpoint
  (a kakaobrain-format RQ-VAE folder: ``config.yaml`` + ``*.pt``; a descript-audio-codec ``.pth``)
  into a self-describing tokenizer folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIGS = {"image": "rqvae", "audio": "dac"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="train, inspect or import image/audio tokenizers")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = actions.add_parser(
        "train",
        help="train a tokenizer from conf/tokenizer/<config>.yaml",
        description="Options and Hydra overrides may come in any order after the modality.",
        usage="%(prog)s {audio,image} [--config NAME] [--data PATH] [--out DIR] [--print-config] "
        "[OVERRIDE ...]",
    )
    train.add_argument("modality", choices=sorted(DEFAULT_CONFIGS))
    train.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        help="[--config NAME] [--data PATH] [--out DIR] "
        "[--print-config] [OVERRIDE ...] (Hydra overrides, e.g. trainer.max_steps=1000)",
    )
    train.set_defaults(func=run_train)

    info = actions.add_parser("info", help="print a tokenizer folder's modality, fingerprint and sizes")
    info.add_argument("directory")
    info.set_defaults(func=run_info)

    importer = actions.add_parser("import", help="convert a released reference checkpoint to a folder")
    importer.add_argument("modality", choices=sorted(DEFAULT_CONFIGS))
    importer.add_argument("reference", help="RQ-VAE folder (config.yaml + *.pt) or DAC .pth file")
    importer.add_argument("--out", required=True, help="tokenizer folder to write")
    importer.add_argument("--chunk-frames", type=int, default=512, help="audio: frames per encoding chunk")
    importer.add_argument("--context-frames", type=int, default=16, help="audio: context frames per side")
    importer.add_argument(
        "--loudness-db",
        type=float,
        help="audio: normalise what is encoded to this loudness in LUFS first (U-MusT's tokens: -16)",
    )
    importer.set_defaults(func=run_import)


def _train_options() -> argparse.ArgumentParser:
    """The options of ``umt tokenizer train MODALITY``, parsed intermixed with the overrides."""
    parser = argparse.ArgumentParser(prog="umt-tokenizer-train", add_help=False)
    parser.add_argument("--config", help="conf/tokenizer/NAME.yaml (default: rqvae for image, dac for audio)")
    parser.add_argument("--data", help="folder or manifest (.txt) of training images / audio files")
    parser.add_argument("--out", help="run folder (checkpoints, logs, tokenizer/); default: the config's")
    parser.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.max_steps=1000")
    return parser


def compose_tokenizer_config(name: str, overrides: list[str]):
    """``conf/tokenizer/<name>.yaml`` composed at the root with Hydra ``overrides``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from umt.training.config import conf_dir

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(conf_dir()) / "tokenizer"), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


def run_train(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from umt.errors import UserError

    options = _train_options()
    options.prog = "umt tokenizer train " + args.modality
    options.parse_intermixed_args(args.rest, namespace=args)
    name = args.config or DEFAULT_CONFIGS[args.modality]
    data_key = "data.images" if args.modality == "image" else "data.files"
    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"{data_key}={_quote(args.data)}")
    if args.out is not None:
        overrides.append(f"output_dir={_quote(args.out)}")
    try:
        is_image_config = "preprocess" in compose_tokenizer_config(name, [])
        if is_image_config != (args.modality == "image"):
            kind = "an image" if is_image_config else "an audio"
            raise UserError(f"conf/tokenizer/{name}.yaml is {kind} tokenizer config, not {args.modality}")
        cfg = compose_tokenizer_config(name, overrides)
        if args.print_config:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return 0
        if OmegaConf.is_missing(cfg.data, data_key.split(".")[1]):
            raise UserError(f"no training data: pass --data PATH (or {data_key}=PATH)")
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as error:
        raise UserError(f"bad tokenizer config: {str(error).splitlines()[0]}") from None
    if args.modality == "image":
        from umt.training.rqvae import list_image_files, train_rqvae

        list_image_files(cfg.data.images)  # a missing or empty data folder fails before training starts
        export_dir = train_rqvae(cfg)
    else:
        from umt.training.dac import train_dac

        export_dir = train_dac(cfg)
    from umt.tokenizers.folders import load_tokenizer

    print(f"{export_dir}\t{args.modality}\t{load_tokenizer(export_dir).fingerprint}")
    return 0


def _quote(value: str) -> str:
    """A path as a Hydra override value (quoted, so ``=`` or ``,`` in it stay literal)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_info(args: argparse.Namespace) -> int:
    from umt.tokenizers.folders import load_tokenizer, summary

    facts = summary(load_tokenizer(args.directory))
    width = max(len(key) for key in facts)
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from umt.errors import UserError

    out = Path(args.out)
    reference = Path(args.reference)
    if out.resolve() == reference.resolve():
        raise UserError("--out must differ from the reference checkpoint", out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").is_file())):
        raise UserError("exists and is not a tokenizer folder; refusing to overwrite it", out)
    if args.modality == "image":
        from umt.tokenizers.image import load_rqvae

        tokenizer = load_rqvae(reference)
    else:
        from umt.tokenizers.audio import AudioTokenizer

        if args.chunk_frames <= 0 or args.context_frames < 0:
            raise UserError("--chunk-frames must be positive and --context-frames not negative")
        if args.loudness_db is not None and not -70.0 < args.loudness_db <= 0.0:
            raise UserError(f"--loudness-db must be in (-70, 0] LUFS, not {args.loudness_db}")
        tokenizer = AudioTokenizer.from_codec_file(
            reference,
            chunk_frames=args.chunk_frames,
            context_frames=args.context_frames,
            loudness_db=args.loudness_db,
        )
    tokenizer.save_pretrained(out)
    print(f"{out}\t{args.modality}\t{tokenizer.fingerprint}")
    return 0
