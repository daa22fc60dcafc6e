"""``umt midi``: MIDI files to MT3-style event tokens and back.

``umt midi encode FILE.mid [--segment-seconds 20]`` prints one line of event names per segment
(``tie shift:12 program:0 velocity:1 pitch:60 ... eos``); ``umt midi decode FILE -o OUT.mid``
reads that text back (a line per segment; bare integer ids are accepted too, as ``id:N`` or ``N``)
and writes a MIDI file atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from umt.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("midi", help="MIDI <-> event tokens (MT3 / YourMT3 style)")
    commands = parser.add_subparsers(dest="midi_command", metavar="ACTION", required=True)

    encode = commands.add_parser("encode", help="print the event tokens of a MIDI file, a line per segment")
    encode.add_argument("file", type=Path, metavar="FILE.mid")
    encode.add_argument("--segment-seconds", type=float, default=20.0, help="segment length (default 20)")
    encode.set_defaults(func=run_encode)

    decode = commands.add_parser("decode", help="write a MIDI file from event-token lines")
    decode.add_argument("file", type=Path, metavar="FILE", help="token text (as `umt midi encode` prints)")
    decode.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mid")
    decode.add_argument("--segment-seconds", type=float, default=20.0, help="segment length (default 20)")
    decode.set_defaults(func=run_decode)


def _check_segment_seconds(value: float, vocab) -> None:
    from umt.errors import UserError
    from umt.tokenizers.midi import segment_ticks

    try:
        segment_ticks(value, vocab)
    except ValueError as error:
        raise UserError(f"--segment-seconds: {error}") from None


def run_encode(args: argparse.Namespace) -> int:
    from umt.tokenizers.midi import encode_notes, event_names, notes_from_midi
    from umt.vocab import default_vocabulary

    vocab = default_vocabulary()
    _check_segment_seconds(args.segment_seconds, vocab)
    notes = notes_from_midi(args.file)
    if not notes:  # a valid file with nothing to encode: "tie eos" would hide the problem
        raise InputError("no notes: an empty MIDI file", args.file)
    lines = [event_names(ids, vocab) for ids in encode_notes(notes, vocab, args.segment_seconds)]
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def read_token_lines(path: Path, vocab) -> list[list[int]]:
    """One id list per non-blank line of ``path``; :class:`InputError` naming the line otherwise."""
    from umt.tokenizers.midi import parse_event_names

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except IsADirectoryError:
        raise InputError("is a directory", path) from None
    except OSError as error:
        raise InputError(f"cannot read ({error.strerror or error})", path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 token text (a MIDI file? use `umt midi encode`)", path) from None
    segments = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        words = [f"id:{w}" if w.isdigit() else w for w in line.split()]
        try:
            segments.append(parse_event_names(" ".join(words), vocab))
        except ValueError as error:
            raise InputError(f"line {number}: {error}", path) from None
    if not segments:
        raise InputError("empty: no token lines", path)
    return segments


def run_decode(args: argparse.Namespace) -> int:
    from umt.tokenizers.midi import decode_segments_with_problems, notes_to_midi
    from umt.vocab import default_vocabulary

    vocab = default_vocabulary()
    _check_segment_seconds(args.segment_seconds, vocab)
    segments = read_token_lines(args.file, vocab)
    result = decode_segments_with_problems(segments, vocab, args.segment_seconds)
    if result.problems:
        summary = ", ".join(f"{kind} x{count}" for kind, count in sorted(result.problems.items()))
        print(f"umt: warning: {args.file}: repaired or dropped: {summary}", file=sys.stderr)
    notes_to_midi(result.notes, args.output)
    print(f"{args.output}: {len(result.notes)} notes from {len(segments)} segments", file=sys.stderr)
    return 0
