"""``umt translate``: translate files with an exported model folder.

umt translate --checkpoint DIR --task omr|amt|i2a|a2i|m2a|l2i|cascade-i2a INPUT... -o OUTDIR
    [--device auto|cpu|cuda[:N]] [--batch-size N] [--temperature T] [--top-p P] [--top-k K]
    [--max-len N] [--seed S] [--repetition-penalty R] [--guidance S] [--m2a-checkpoint DIR]
    [--dtype fp32|bf16|int8]
    [--image-tokenizer DIR] [--audio-tokenizer DIR] [--quiet]

For ``t2i`` (a vocabulary with the text modality) an INPUT is a ``.txt`` file or the prompt itself,
``umt translate --task t2i "a music score, instrumentation is violin, key is A major" -o out/``;
``--guidance 4`` is classifier-free guidance (MusicScore's scale), for models trained with
``data.condition_dropout`` above 0.

``infer.py`` at the repository root runs the same command (``python infer.py --checkpoint ...``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from umt.cli import add_dtype_argument


def task_help() -> dict[str, str]:
    """Every task ``umt translate`` runs, with what it reads and writes (from the task registry and
    the modality specs)."""
    from umt.modalities import get_spec
    from umt.tasks import CASCADE_TASK, TASKS

    helps = {}
    for name in TASKS:
        task = TASKS.get(name)
        helps[name] = f"{get_spec(task.source).input_help} -> {get_spec(task.target).output_help}"
    helps[CASCADE_TASK] = "score image -> MusicXML -> MIDI -> audio (OMR, then the model's M2A task)"
    return helps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="input files")
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="exported model folder")
    helps = task_help()
    parser.add_argument(
        "--task",
        required=True,
        choices=tuple(helps),
        help="; ".join(f"{name}: {text}" for name, text in helps.items()),
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the outputs")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    add_dtype_argument(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="units (systems, windows) per batch")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    parser.add_argument("--top-k", type=int, default=0, help="sample from the k most likely ids (0 = off)")
    parser.add_argument(
        "--repetition-penalty",
        type=float,
        default=1.0,
        help="above 1, ids already chosen in a codebook become less likely (1 = off)",
    )
    parser.add_argument(
        "--max-len", type=int, default=None, help="most output rows per unit (default: the model's limit)"
    )
    parser.add_argument(
        "--guidance", type=float, default=1.0, help="text sources: classifier-free guidance scale (1 = off)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument(
        "--m2a-checkpoint", metavar="DIR", help="cascade-i2a: model folder for the MIDI-to-audio step"
    )
    parser.add_argument(
        "--image-tokenizer", metavar="DIR", help="image tokenizer folder (default: the model's)"
    )
    parser.add_argument(
        "--audio-tokenizer", metavar="DIR", help="audio tokenizer folder (default: the model's)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "translate",
        help="translate score images, audio, MIDI or MusicXML with a trained model",
        description="Translate files with an exported model folder. Pages are split into systems, "
        "audio into 20 s windows, MIDI into 20 s segments; outputs are named after the inputs. "
        "A bad input is reported as one line and the others go on (exit status 1).",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from umt.cli import report_failures
    from umt.errors import UserError
    from umt.inference import GenerationConfig, TranslationPipeline, translate_files
    from umt.tasks import CASCADE_TASK

    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise UserError("is a file, not a folder for the outputs", args.output)
    generation = GenerationConfig(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_len=args.max_len,
        batch_size=args.batch_size,
        seed=args.seed,
        repetition_penalty=args.repetition_penalty,
        guidance_scale=args.guidance,
    )
    pipeline = TranslationPipeline.from_pretrained(
        args.checkpoint,
        device=args.device,
        image_tokenizer=args.image_tokenizer,
        audio_tokenizer=args.audio_tokenizer,
        dtype=args.dtype,
    )
    m2a = None
    if args.m2a_checkpoint:
        if args.task != CASCADE_TASK:
            raise UserError("--m2a-checkpoint is only used by --task cascade-i2a")
        m2a = TranslationPipeline.from_pretrained(
            args.m2a_checkpoint, device=args.device, audio_tokenizer=args.audio_tokenizer, dtype=args.dtype
        )
    summary = translate_files(
        pipeline, args.task, args.inputs, args.output, generation, m2a_pipeline=m2a, progress=not args.quiet
    )
    if summary.truncated and not args.quiet:
        print(
            f"umt: warning: {summary.truncated} output(s) reached --max-len before the model ended them",
            file=sys.stderr,
        )
    if not args.quiet:
        done = len(args.inputs) - len(summary.failures)
        print(f"translate: {done} of {len(args.inputs)} inputs -> {args.output}", file=sys.stderr)
    return report_failures(summary.failures)


def main(argv: Sequence[str] | None = None) -> int:
    """``python infer.py ...``: the ``umt translate`` arguments, without the subcommand."""
    from umt.cli import main as umt_main

    return umt_main(["translate", *(sys.argv[1:] if argv is None else argv)])
