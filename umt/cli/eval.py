"""``umt eval``: the paper's benchmarks on prepared test sets (see :mod:`umt.evaluate`).

    umt eval TASK --checkpoint MODEL --data MANIFEST [--data MANIFEST ...] [--split test]
        [--out DIR] [--batch-size N] [--limit N] [--transcriber AMT_MODEL] [--omr OMR_MODEL]
    umt eval paper-table-7 --checkpoint MODEL --data olimpic-synth --data olimpic-scanned --data bpsd
    umt eval compare DIR1 DIR2 ... [--table paper-table-7]
    umt eval attention IMAGE OUT.png --checkpoint MODEL
    umt eval match --checkpoint SIM_MODEL --data MANIFEST [--split test|all] [--label-field FIELD]

TASK is omr, amt, i2a, m2a, a2i or l2i; ``paper-table-7`` (OMR), ``paper-table-8`` (AMT),
``paper-table-i2a``, ``paper-table-a2i`` and ``paper-table-m2a`` run the task of one of the paper's
tables and lay its ``table.md`` out like it, with the paper's figures beside ours where the sources
at hand give them. ``compare --table NAME`` lays several runs out as the rows of that table, as
the paper's mixture ablations are. Each
``--data`` (a ``manifest.jsonl`` of ``umt data prepare`` or ``umt corpus build``, or its folder)
is one test set, a row of the table. ``i2a`` and ``m2a`` transcribe audio with ``--transcriber``
(an AMT model folder; default the checkpoint when it does AMT); ``a2i`` and ``l2i`` read images
with ``--omr`` (default the checkpoint when it does OMR). Writes ``DIR/metrics.json``,
``DIR/per_item.jsonl`` and ``DIR/table.md``; rerunning the command resumes where it stopped.
``attention`` plots where an image-to-audio model looks in the score while it plays, and writes the
alignment (audio frame -> image column) beside the plot as JSON. ``match`` scores a SIM model
(``umt train experiment=sim_pretrain``): retrieval both ways, masked bars, and the composer probe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from umt.cli import add_dtype_argument

TASK_NAMES = ("omr", "amt", "i2a", "m2a", "a2i", "l2i")
TABLE_NAMES = ("paper-table-7", "paper-table-8", "paper-table-i2a", "paper-table-a2i", "paper-table-m2a")
"""Kept here too so that ``umt --help`` imports nothing heavy (a test checks them)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="the paper's benchmarks: score a model on test sets, paper-style tables",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "what",
        choices=(
            *TASK_NAMES,
            *TABLE_NAMES,
            "compare",
            "attention",
            "fid",
            "style-probe",
            "features",
            "match",
        ),
        metavar="TASK",
    )
    parser.add_argument(
        "runs", nargs="*", metavar="ARG", help="compare: eval folders; attention: IMAGE OUT.png"
    )
    parser.add_argument("--checkpoint", metavar="MODEL", help="exported model folder")
    parser.add_argument("--data", action="append", default=[], metavar="MANIFEST", help="a test set (repeat)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: eval/TASK)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, help="at most N items per test set")
    parser.add_argument("--transcriber", metavar="AMT_MODEL", help="transcribes audio for i2a and m2a")
    parser.add_argument("--omr", metavar="OMR_MODEL", help="reads images back for a2i and l2i")
    parser.add_argument("--device", default="auto")
    add_dtype_argument(parser)
    parser.add_argument("--max-len", type=int, help="longest output in rows")
    parser.add_argument("--audio-temperature", type=float, default=1.0, help="sampling of audio codes")
    parser.add_argument("--audio-top-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--table", choices=TABLE_NAMES, help="compare: the runs as rows of this paper table")
    parser.add_argument("--real", metavar="DIR", help="fid: the real page images")
    parser.add_argument("--generated", metavar="DIR", help="fid: the generated page images")
    parser.add_argument("--n", default="8,16,32,64", help="fid: FID-n for these n (MusicScore's)")
    parser.add_argument("--repeats", type=int, default=10, help="fid: draws per FID-n")
    parser.add_argument("--features", default="page-classifier", help="fid: the image features")
    parser.add_argument("--classifier", metavar="MODEL", help="fid: page classifier folder (its features)")
    parser.add_argument("--inception", metavar="FILE", help="fid: pytorch-fid's Inception weights (.pth)")
    parser.add_argument(
        "--patches", metavar="MANIFEST", help="style-probe: a `umt data patches` manifest with labels"
    )
    parser.add_argument("--autoencoder", metavar="MODEL", help="style-probe: a sheet autoencoder folder")
    parser.add_argument(
        "--image-tokenizer", metavar="DIR", help="style-probe: an image tokenizer (its latents)"
    )
    parser.add_argument("--plot", metavar="OUT.png", help="features: where to draw the bottleneck maps")
    parser.add_argument(
        "--label-field", default="metadata.composer", help="match: the record field the probe predicts"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from umt.errors import UserError

    if args.what == "compare":
        from umt.evaluate.report import compare

        if len(args.runs) < 1:
            raise UserError("compare needs eval folders: umt eval compare DIR1 DIR2 ...")
        sys.stdout.write(compare([Path(d) for d in args.runs], args.table))
        return 0
    if args.table:
        raise UserError(f"--table lays out 'umt eval compare'; 'umt eval {args.what}' takes a table as TASK")
    if args.what == "attention":
        return _attention(args)
    if args.what == "fid":
        return _fid(args)
    if args.what == "style-probe":
        return _style_probe(args)
    if args.what == "features":
        return _features(args)
    if args.what == "match":
        return _match(args)
    if args.runs:
        raise UserError(f"unexpected arguments {' '.join(args.runs)} (inputs are --data manifests)")
    if not args.checkpoint or not args.data:
        raise UserError(f"umt eval {args.what} needs --checkpoint MODEL and --data MANIFEST")
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise UserError("--batch-size and --limit must be >= 1")
    return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    from umt.evaluate.items import read_items
    from umt.evaluate.report import PAPER_TABLES
    from umt.evaluate.run import run_eval
    from umt.evaluate.tasks import NEEDS, EvalContext
    from umt.inference import GenerationConfig, TranslationPipeline

    table = args.what if args.what in PAPER_TABLES else None
    task = PAPER_TABLES[table].task if table else args.what
    items = [item for data in args.data for item in read_items(data, args.split, args.limit, NEEDS[task])]
    pipeline = TranslationPipeline.from_pretrained(args.checkpoint, device=args.device, dtype=args.dtype)
    pipeline.check_task(task)
    generation = GenerationConfig(batch_size=args.batch_size, max_len=args.max_len, seed=args.seed)
    audio_generation = GenerationConfig(
        temperature=args.audio_temperature,
        top_p=args.audio_top_p,
        batch_size=args.batch_size,
        max_len=args.max_len,
        seed=args.seed,
    )
    ctx = EvalContext(pipeline, generation, audio_generation)
    ctx.transcriber = _transcriber(args, pipeline, generation) if task in ("i2a", "m2a") else None
    ctx.reader = _reader(args, pipeline, generation) if task in ("a2i", "l2i") else None
    settings = {
        "task": task,
        "table": table,
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "data": [str(Path(d).resolve()) for d in args.data],
        "split": args.split,
        "limit": args.limit,
        "transcriber": args.transcriber and str(Path(args.transcriber).resolve()),
        "omr": args.omr and str(Path(args.omr).resolve()),
        "generation": {"max_len": args.max_len, "seed": args.seed},
        "audio_generation": {"temperature": args.audio_temperature, "top_p": args.audio_top_p},
    }
    if args.dtype != "fp32":  # (folders of fp32 runs keep the settings they were made with)
        settings["dtype"] = args.dtype
    out = Path(args.out or Path("eval") / (table or task))
    metrics = run_eval(task, ctx, items, out, settings, args.batch_size, not args.no_progress, table)
    sys.stdout.write((out / "table.md").read_text(encoding="utf-8"))
    print(f"umt eval: {metrics['items']} items, {len(metrics['failed'])} failed -> {out}", file=sys.stderr)
    return 1 if metrics["failed"] else 0


def _fid(args: argparse.Namespace) -> int:
    """``umt eval fid --real DIR --generated DIR``: FID over all images and FID-n (table on stdout;
    ``--out DIR`` also writes ``metrics.json``)."""
    import json

    from umt.cli import report_failures
    from umt.errors import UserError
    from umt.metrics.fid import FEATURES, fid, fid_n
    from umt.utils.io import atomic_write_text

    if not args.real or not args.generated:
        raise UserError("usage: umt eval fid --real DIR --generated DIR [--n 8,16,32,64] --classifier MODEL")
    if args.features not in FEATURES:
        raise UserError(f"--features {args.features!r}: one of {', '.join(sorted(FEATURES))}")
    model = args.inception if args.features == "inception" else args.classifier
    if not model:
        option = "--inception FILE" if args.features == "inception" else "--classifier MODEL"
        raise UserError(f"--features {args.features} needs its model: {option}")
    try:
        sizes = [int(n) for n in str(args.n).split(",") if n.strip()]
    except ValueError:
        raise UserError(f"--n must be comma-separated integers, not {args.n!r}") from None
    features = FEATURES[args.features](model)
    failures: dict[str, str] = {}
    real = _folder_features(Path(args.real), features, failures)
    generated = _folder_features(Path(args.generated), features, failures)
    if min(len(real), len(generated)) < 2:
        raise UserError("FID needs at least two readable images in each folder")
    results = {"features": args.features, "real": len(real), "generated": len(generated)}
    results["fid"] = fid(real, generated)
    lines = ["| metric | value |", "|---|---|", f"| FID ({len(real)} real, {len(generated)} generated) | "
             f"{results['fid']:.2f} |"]  # fmt: skip
    for n in sizes:
        if n > min(len(real), len(generated)) or n < 2:
            failures[f"FID-{n}"] = f"needs 2..{min(len(real), len(generated))} images per set"
            continue
        result = fid_n(real, generated, n, args.repeats, args.seed)
        results[f"fid_{n}"] = {"mean": result.mean, "std": result.std, "values": result.values}
        lines.append(f"| FID-{n} (mean ± std of {args.repeats}) | {result.mean:.2f} ± {result.std:.2f} |")
    sys.stdout.write("\n".join(lines) + "\n")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out) / "metrics.json", json.dumps(results, indent=2) + "\n")
    return report_failures(failures)


def _features(args: argparse.Namespace) -> int:
    """``umt eval features --checkpoint AUTOENCODER PAGE... --plot OUT.png``."""
    from PIL import Image

    from umt.cli import report_failures
    from umt.errors import InputError, UserError
    from umt.style.autoencoder import AutoencoderFolder
    from umt.style.plot import feature_sheet
    from umt.tokenizers.image import read_image
    from umt.utils.io import atomic_write

    if not args.checkpoint or not args.runs or not args.plot:
        raise UserError("usage: umt eval features --checkpoint AUTOENCODER PAGE... --plot OUT.png")
    if Path(args.plot).suffix.lower() != ".png":
        raise UserError("the plot is written as PNG: name it .png", args.plot)
    folder = AutoencoderFolder.from_pretrained(args.checkpoint)
    failures, pages = {}, []
    for page in args.runs:
        try:
            pages.append(read_image(page))
        except InputError as error:
            failures[page] = error.problem
    if pages:
        with atomic_write(Path(args.plot), "wb") as handle:
            Image.fromarray(feature_sheet(folder, pages)).save(handle, format="PNG")
        print(f"umt eval features: {len(pages)} page(s) -> {args.plot}", file=sys.stderr)
    return report_failures(failures)


def _match(args: argparse.Namespace) -> int:
    """``umt eval match --checkpoint SIM_MODEL --data MANIFEST [--split test|all] [--out DIR]``."""
    import json

    from umt.errors import UserError
    from umt.sim.evaluate import evaluate_model, report_markdown
    from umt.sim.folder import SimFolder
    from umt.sim.items import load_reported
    from umt.utils.io import atomic_write_text

    if not args.checkpoint or len(args.data) != 1:
        raise UserError("usage: umt eval match --checkpoint SIM_MODEL --data MANIFEST [--split test|all]")
    folder = SimFolder.from_pretrained(args.checkpoint)
    items, failures, manifest = load_reported(
        args.data[0], folder.tokenizer, folder.model.vocab, args.label_field
    )
    test = items if args.split == "all" else [item for item in items if item.split == args.split]
    if len(test) < 2:
        raise UserError(
            f"holds {len(test)} readable items of split {args.split!r}; retrieval needs 2", manifest
        )
    evaluation = evaluate_model(folder, test, items, args.seed)
    sys.stdout.write(report_markdown(evaluation))
    if args.out:
        atomic_write_text(Path(args.out) / "metrics.json", json.dumps(evaluation, indent=2) + "\n")
    return 1 if failures else 0


def _style_probe(args: argparse.Namespace) -> int:
    """``umt eval style-probe --patches MANIFEST --autoencoder MODEL [--image-tokenizer DIR]``."""
    import json

    from umt.errors import UserError
    from umt.style.autoencoder import AutoencoderFolder
    from umt.style.probe import pixel_features, rqvae_features, style_probe
    from umt.training.autoencoder import read_patches
    from umt.utils.io import atomic_write_text

    if not args.patches or not args.autoencoder:
        raise UserError(
            "usage: umt eval style-probe --patches MANIFEST --autoencoder MODEL [--image-tokenizer DIR]"
        )
    patches, pages, labels = read_patches(Path(args.patches))
    features = {"autoencoder": AutoencoderFolder.from_pretrained(args.autoencoder).features}
    if args.image_tokenizer:
        from umt.tokenizers.folders import load_tokenizer

        tokenizer = load_tokenizer(args.image_tokenizer)
        features["rqvae"] = lambda chosen: rqvae_features(tokenizer, chosen)
    features["pixels"] = pixel_features
    try:
        results, split = style_probe(list(patches), pages, labels, features, seed=args.seed)
    except ValueError as error:
        raise UserError(str(error), args.patches) from None
    held = f"{split['test_patches']} patches of {split['test_pages']} held-out groups"
    lines = [f"| features | dimensions | held-out accuracy ({held}, {len(split['classes'])} classes) |",
             "|---|---|---|"]  # fmt: skip
    lines += [f"| {r.name} | {r.dimensions or '-'} | {r.accuracy:.3f} |" for r in results]
    sys.stdout.write("\n".join(lines) + "\n")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        table = {"split": split, "results": [r.__dict__ for r in results]}
        atomic_write_text(Path(args.out) / "metrics.json", json.dumps(table, indent=2) + "\n")
    return 0


def _folder_features(folder: Path, features, failures: dict[str, str], chunk: int = 64):
    """Features ``[N, D]`` of a folder's page images (sorted), read a chunk at a time so that memory
    holds features, not pages; unreadable images go to ``failures``."""
    import numpy as np

    from umt.errors import InputError, UserError
    from umt.modalities.image import page_files
    from umt.tokenizers.image import read_image

    if not folder.is_dir():
        raise UserError("no such folder", folder)
    paths = page_files(folder)
    out = []
    for start in range(0, len(paths), chunk):
        pages = []
        for path in paths[start : start + chunk]:
            try:
                pages.append(read_image(path))
            except InputError as error:
                failures[str(path)] = error.problem
        if pages:
            out.append(features(pages))
    return np.concatenate(out) if out else np.zeros((0, 1))


def _attention(args: argparse.Namespace) -> int:
    from umt.errors import UserError
    from umt.evaluate.attention import follow_score
    from umt.inference import GenerationConfig, TranslationPipeline

    if len(args.runs) != 2 or not args.checkpoint:
        raise UserError("usage: umt eval attention IMAGE OUT.png --checkpoint MODEL")
    image, out = Path(args.runs[0]), Path(args.runs[1])
    if out.suffix.lower() != ".png":
        raise UserError("the plot is written as PNG: name it .png", out)
    pipeline = TranslationPipeline.from_pretrained(args.checkpoint, device=args.device)
    generation = GenerationConfig(
        temperature=args.audio_temperature, top_p=args.audio_top_p, max_len=args.max_len, seed=args.seed
    )
    alignment = follow_score(pipeline, image, generation, out)
    print(
        f"umt eval attention: {len(alignment['frames'])} audio frames -> {out}, {out.with_suffix('.json')}",
        file=sys.stderr,
    )
    return 0


def _helper(path: str | None, pipeline, task: str, flag: str):
    """The model folder given for ``task`` (an AMT or OMR model), or the checkpoint itself."""
    from umt.errors import UserError
    from umt.inference import TranslationPipeline

    if path is not None:
        helper = TranslationPipeline.from_pretrained(path, device=str(pipeline.device))
    elif not pipeline.tasks or task in pipeline.tasks:
        helper = pipeline
    else:
        raise UserError(f"the model does not do {task}; give {flag} MODEL to score with")
    helper.check_task(task)
    return helper


def _transcriber(args, pipeline, generation):
    helper = _helper(args.transcriber, pipeline, "amt", "--transcriber")
    rate = pipeline.sample_rate
    return lambda audios: helper.transcribe([(audio, rate) for audio in audios], generation)


def _reader(args, pipeline, generation):
    helper = _helper(args.omr, pipeline, "omr", "--omr")
    return lambda images: helper.omr_tokens(list(images), generation)
