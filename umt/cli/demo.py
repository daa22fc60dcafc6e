"""``umt demo``: the end-to-end demo (see :mod:`umt.demo`), the README's main command."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="build a corpus, train tokenizers and a model, evaluate, write an HTML report",
        description="From music21's bundled scores to an HTML report: builds a small corpus, trains "
        "small image and audio tokenizers and an image-to-audio-direction Translator (OMR, then "
        "MIDI-to-audio, then image-to-audio), runs OMR, the cascade and direct image-to-audio on "
        "held-out systems and writes OUT/report.html. Rerun the same command to finish a killed run.",
    )
    parser.add_argument("--out", default="demo", help="output folder (default: demo)")
    parser.add_argument(
        "--preset",
        default="default",
        help="default (about 20 min on 2 CPU cores), quick (a couple of minutes) or gpu (larger)",
    )
    parser.add_argument("--quick", action="store_const", const="quick", dest="preset", help="--preset quick")
    parser.add_argument("--translator-steps", type=int, help="optimizer steps of the Translator")
    parser.add_argument("--image-tokenizer-steps", type=int)
    parser.add_argument("--audio-tokenizer-steps", type=int)
    parser.add_argument("--eval-excerpts", type=int, help="held-out excerpts to evaluate")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--workers", type=int, default=None, help="processes for the corpus (default: cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from umt.demo import run_demo, settings_for
    from umt.errors import UserError

    for name in ("translator_steps", "image_tokenizer_steps", "audio_tokenizer_steps", "eval_excerpts"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    settings = settings_for(
        args.preset,
        translator_steps=args.translator_steps,
        image_tokenizer_steps=args.image_tokenizer_steps,
        audio_tokenizer_steps=args.audio_tokenizer_steps,
        eval_excerpts=args.eval_excerpts,
        seed=args.seed,
    )
    report = run_demo(
        args.out, settings, device=args.device, workers=args.workers, progress=not args.no_progress
    )
    print(report)
    return 0
