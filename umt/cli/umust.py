"""``umt import-umust RUN_DIR --out MODEL_DIR [--tokenizer DIR ...] [--lmx-vocab FILE]``.

A run folder of U-MusT's trainer (``RUN_DIR/files/config.yaml`` and
``RUN_DIR/files/checkpoints/iter{N}_loss{L}.pt``, as the authors release them on the Hugging Face
hub as ``malerlab/u-must``) becomes a UMT model folder that computes what their model computes
(:mod:`umt.interop.umust`): ``umt translate``, ``umt eval``, batching, long inputs and
fine-tuning (``init_from``) then work on the paper's weights. ``--tokenizer`` adds the image and
audio tokenizers (UMT folders, e.g. made by ``umt tokenizer import`` from the authors' RQ-VAE and
DAC checkpoints), checked to fit and fingerprinted. The checkpoint is read without unpickling
code; a bad run folder is one line and writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-umust",
        help="a U-MusT run folder (the paper's released weights) as a UMT model folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="U-MusT run folder (holds files/config.yaml)")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder to write")
    parser.add_argument(
        "--tokenizer", action="append", default=[], metavar="DIR", help="image or audio tokenizer folder"
    )
    parser.add_argument(
        "--lmx-vocab",
        metavar="FILE",
        help="the run's LMX vocabulary file (default: the paper's vocab/lmx_vocab_singletoken.txt)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from umt.errors import UserError
    from umt.interop.umust import import_translator, tasks_of
    from umt.interop.umust_run import read_run
    from umt.pretrained import save_translator
    from umt.tokenizers.folders import fitting_tokenizers
    from umt.utils.io import staging_dir

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").is_file())):
        raise UserError("exists and is not a model folder; refusing to overwrite it", out)
    lmx_vocab = args.lmx_vocab
    umust = read_run(args.run_dir)
    stated = str(umust.data.get("lmx_vocab_path", ""))
    if lmx_vocab is None and stated and Path(stated).name != "lmx_vocab_singletoken.txt":
        raise UserError(
            f"the run uses the LMX vocabulary {stated}: give it with --lmx-vocab FILE", args.run_dir
        )
    model = import_translator(umust, lmx_vocab)
    fingerprints, folders = fitting_tokenizers(args.tokenizer, model.vocab)
    provenance = {
        "codebase": "MALerLab/U-MusT",
        "run": Path(args.run_dir).resolve().name,
        "checkpoint": umust.checkpoint.name,
        "iteration": umust.iteration,
        "vq_model": umust.data.get("vq_model"),
        "dac_model": umust.data.get("dac_model"),
    }
    window = float(umust.data.get("midi_slice_len") or 20)
    tasks = tasks_of(umust)
    with staging_dir(out) as staging:
        save_translator(model, staging, tasks, folders, fingerprints, window, provenance)
    listed = ", ".join(f"{m} {h[:16]}" for m, h in sorted(fingerprints.items())) or "no tokenizers"
    print(f"{out}\t{', '.join(tasks)}\t{listed}")
    return 0
