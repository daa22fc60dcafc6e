"""``umt retrieve``: the pieces of an index that a score image or a MIDI file most likely is.

    umt retrieve --checkpoint SIM_MODEL --query FILE [--query FILE ...] --index DIR [--top-k 10]
        [--scorer match|contrastive] [--cache FILE]

A query image (PNG, JPEG, ...) is ranked against the music of every item of the index; a query MIDI
or MusicXML file (its first 20 s) against every item's image. The index is a folder with a
``manifest.jsonl`` (``umt corpus build``'s, or a prepared data set with images and music) or such a
manifest. ``match`` scores each pair with the match head (one encoder pass per item); ``contrastive``
compares embeddings (models trained with ``sim.objectives.contrastive``). ``--cache FILE`` keeps the
index's tokens (checked against the manifest, the tokenizer and the label field, so a stale cache is
read again). A query that cannot be read is one line on stderr; the others go on, and the exit
status is 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retrieve",
        help="score image <-> MIDI retrieval with a SIM model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, metavar="SIM_MODEL", help="a SIM model folder")
    parser.add_argument(
        "--query", action="append", required=True, metavar="FILE", help="image or MIDI (repeat)"
    )
    parser.add_argument(
        "--index", required=True, metavar="DIR", help="folder with manifest.jsonl, or a manifest"
    )
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--scorer", choices=("match", "contrastive"), help="default: the model's first")
    parser.add_argument("--label-field", default="metadata.composer", help="shown beside each hit")
    parser.add_argument(
        "--cache", metavar="FILE", help="keep the index's tokens here (.npz); later calls start at once"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from umt.errors import UserError
    from umt.sim.evaluate import score_matrix
    from umt.sim.folder import SimFolder
    from umt.sim.items import load_reported

    if args.top_k < 1:
        raise UserError("--top-k must be >= 1")
    folder = SimFolder.from_pretrained(args.checkpoint)
    scorer = args.scorer or folder.scorers[0]
    if scorer not in folder.scorers:
        raise UserError(
            f"was not trained for the {scorer} scorer (it has {', '.join(folder.scorers)})", args.checkpoint
        )
    cache = Path(args.cache) if args.cache else None
    vocab = folder.model.vocab
    items, failures, manifest = load_reported(args.index, folder.tokenizer, vocab, args.label_field, cache)
    if not items:
        raise UserError("holds no readable item", manifest)
    grids, music = (
        [item.grid for item in items],
        [item.midi_ids(vocab) for item in items],
    )  # once, not per query
    status = 0
    for query in args.query:
        try:
            kind, rows = read_query(Path(query), folder)
        except UserError as error:
            print(f"umt: error: {error}", file=sys.stderr)
            status = 1
            continue
        if kind == "image":
            scores = score_matrix(folder.model, [rows], music, scorer)[0]
        else:
            scores = score_matrix(folder.model, grids, [rows], scorer)[:, 0]
        print(f"{query} ({kind}; {scorer} scores, best first):")
        for rank, index in enumerate(scores.argsort()[::-1][: args.top_k], 1):
            item = items[index]
            label = f"  [{item.label}]" if item.label else ""
            print(f"  {rank:2d}. {scores[index]:8.3f}  {item.key}  ({item.piece}){label}")
    return 1 if failures else status


def read_query(path: Path, folder) -> tuple[str, object]:
    """``("image", code grid)`` or ``("midi", MIDI ids of its first window)`` for a query file."""
    from umt.errors import InputError
    from umt.modalities.image import RASTER_SUFFIXES
    from umt.modalities.lmx import MUSICXML_SUFFIXES
    from umt.sim.items import image_grid
    from umt.tokenizers.image import image_errors
    from umt.tokenizers.midi import encode_windows, notes_from_midi

    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError("no such file", path)
    vocab = folder.model.vocab
    if suffix in RASTER_SUFFIXES:
        with image_errors(path):
            return "image", image_grid(folder.tokenizer, path, vocab)
    if suffix in (".mid", ".midi"):
        notes = notes_from_midi(path)
    elif suffix in MUSICXML_SUFFIXES:
        from umt.inference.inputs import musicxml_to_notes
        from umt.utils.safe_xml import read_xml_file_bytes

        notes = musicxml_to_notes(read_xml_file_bytes(path).decode("utf-8"), str(path))
    else:
        raise InputError("not a score image, MIDI or MusicXML file", path)
    if not notes:
        raise InputError("holds no notes", path)
    return "midi", encode_windows(notes, vocab)[0]
