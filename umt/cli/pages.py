"""``umt classify-pages``: the score / non-score page classifier of the MusicScore pipeline.

    umt classify-pages train --data LABELLED_DIR --out MODEL [--image-size 512] [--epochs 10]
    umt classify-pages predict MODEL PAGE... [--threshold 0.5]

``train`` reads ``LABELLED_DIR/score/`` and ``LABELLED_DIR/non-score/`` (or ``cover/``), holds out
a seeded fifth of each to measure accuracy, and writes a model folder (rerunning a killed run
continues it). ``predict`` prints ``PAGE<TAB>score|non-score<TAB>P(score)`` for each image; an
unreadable one is one error line and the others go on.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "classify-pages",
        help="train or run the score / non-score page classifier (MusicScore)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="pages_command", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train a classifier on labelled page folders")
    train.add_argument("--data", required=True, help="folder with score/ and non-score/ (or cover/) pages")
    train.add_argument("--out", required=True, help="model folder to write")
    train.add_argument("--image-size", type=int, default=512, help="pages are resized to N x N (paper: 2048)")
    train.add_argument("--widths", default="64,128,256,512", help="ResNet stage widths (ResNet-18's)")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--held-out", type=float, default=0.2, help="fraction of each class held out")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=run_train)
    predict = actions.add_parser("predict", help="label page images")
    predict.add_argument("model", metavar="MODEL")
    predict.add_argument("pages", nargs="+", metavar="PAGE")
    predict.add_argument(
        "--threshold", type=float, default=0.5, help="P(score) at or above which a page is a score"
    )
    predict.set_defaults(func=run_predict)


def run_train(args: argparse.Namespace) -> int:
    from umt.errors import UserError
    from umt.training.pages import PageTrainOptions, train_page_classifier

    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        raise UserError(f"--widths must be four comma-separated integers, not {args.widths!r}") from None
    if len(widths) != 4 or min(widths) < 1 or args.image_size < 32:
        raise UserError("--widths needs four positive integers and --image-size at least 32")
    report = train_page_classifier(
        PageTrainOptions(
            data=args.data,
            out=args.out,
            image_size=args.image_size,
            widths=widths,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            held_out=args.held_out,
            seed=args.seed,
            progress=not args.no_progress,
        )
    )
    print(
        f"{args.out}\t{report.train_pages} training pages\t"
        f"held-out accuracy {report.held_out_accuracy:.3f} on {report.held_out_pages} pages"
    )
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from umt.cli import report_failures
    from umt.errors import InputError
    from umt.musicscore.classifier import PageClassifier
    from umt.tokenizers.image import read_image

    classifier = PageClassifier.from_pretrained(args.model)
    failures: dict[str, str] = {}
    for page in args.pages:
        try:
            gray = read_image(page)
        except InputError as error:
            failures[page] = error.problem
            continue
        probability = float(classifier.score_probability([gray])[0])
        label = "score" if probability >= args.threshold else "non-score"
        print(f"{page}\t{label}\t{probability:.4f}")
    sys.stdout.flush()
    return report_failures(failures)
