"""``umt serve``: the browser app for every translation direction the model has.

    umt serve MODEL_DIR [--m2a-model DIR] [--host 127.0.0.1] [--port 7860] [--device auto]
        [--max-upload-mb 50] [--queue-depth 4] [--examples CORPUS] [--max-len ROWS]

Open http://127.0.0.1:7860 in a browser. Tabs: score -> audio (the cascade and the direct model side by
side), score following, audio -> score / MIDI, MIDI -> audio and MusicXML -> image, each shown only
when the model has its task. ``--examples`` (default: the demo's corpus beside a demo model) puts
held-out items of a corpus on the page. Needs the ``serve`` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path

from umt.cli import add_dtype_argument

EXAMPLE_FIELDS = {"png": "image", "mid": "midi", "musicxml": "score", "wav": "recording"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a browser app for the model's translation directions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL_DIR", help="an exported model folder")
    parser.add_argument("--m2a-model", metavar="DIR", help="a second model for MIDI -> audio (the cascade)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves every network (a warning)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="auto")
    add_dtype_argument(parser)
    parser.add_argument("--max-upload-mb", type=float, default=50.0)
    parser.add_argument("--queue-depth", type=int, default=4, help="jobs that may wait; more: 'busy'")
    parser.add_argument("--examples", metavar="CORPUS", help="a corpus folder whose test items are examples")
    parser.add_argument("--max-len", type=int, help="longest output in rows (default: the model's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from umt.errors import UserError

    try:
        import uvicorn

        from umt.serve.app import create_app
    except ImportError as error:
        raise UserError(
            f"umt serve needs the serve extra: pip install 'umt[serve]' ({error.name} missing)"
        ) from None
    from umt.inference import TranslationPipeline
    from umt.serve.work import Models

    if args.max_upload_mb <= 0 or args.queue_depth < 1:
        raise UserError("--max-upload-mb must be > 0 and --queue-depth >= 1")
    if not _is_loopback(args.host):
        print(
            f"umt: warning: serving on {args.host}: anyone who can reach this machine can use the model "
            "and upload files",
            file=sys.stderr,
        )
    main = TranslationPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    m2a = (
        TranslationPipeline.from_pretrained(args.m2a_model, device=args.device, dtype=args.dtype)
        if args.m2a_model
        else None
    )
    corpus = Path(args.examples) if args.examples else Path(args.model).resolve().parent.parent / "corpus"
    models = Models(main, m2a, max_len=args.max_len)
    app = create_app(models, args.max_upload_mb, args.queue_depth, examples_from(corpus))
    print(f"umt serve: http://{args.host}:{args.port}/ (Ctrl-C stops it)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def examples_from(corpus: Path, per_kind: int = 2) -> dict[str, Path]:
    """Up to ``per_kind`` test items of each kind (image, MIDI, score, recording) of a corpus."""
    manifest = corpus / "manifest.jsonl"
    if not manifest.is_file():
        return {}
    found: dict[str, Path] = {}
    counts = dict.fromkeys(EXAMPLE_FIELDS, 0)
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or record.get("split") != "test":
            continue
        for field, kind in EXAMPLE_FIELDS.items():
            path = corpus / str(record.get(field) or "")
            if record.get(field) and counts[field] < per_kind and path.is_file():
                found[f"{kind} {record.get('key')}{path.suffix}"] = path
                counts[field] += 1
    return found
