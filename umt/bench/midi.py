"""MIDI event tokenizer throughput on music21's Bach chorales, next to a naive pretty_midi encoder.

``python -m umt.bench midi [--limit N] [--repeat R]``. Both sides start from the same MIDI bytes
(exported once by music21) and produce the same kind of MT3-style token sequences; figures are
tokens per second. The peer ("naive") is the straightforward way: pretty_midi parses the file,
every note becomes two event objects, events are sorted with a key function and each one is
turned into tokens by looking names up in a dict, with per-segment tie sets recomputed by scanning
all notes. Encode-only (notes -> tokens) and decode (tokens -> notes) figures are ours alone, for
context. The naive side pairs overlapping same-key notes the pretty_midi way, so a few pieces
with nested unisons tokenize differently; the agreement count is printed.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from umt.tokenizers.midi import decode_segments, encode_notes, notes_from_midi
from umt.vocab import default_vocabulary


def bach_chorale_paths() -> list[Path]:
    """The Bach chorales of music21's bundled corpus (MusicXML and Humdrum; not the analyses)."""
    from music21 import corpus

    return [Path(p) for p in corpus.getComposer("bach") if Path(p).suffix in {".mxl", ".xml", ".krn"}]


def export_midi(path: str | Path) -> bytes | None:
    """MIDI bytes music21 writes for a corpus file, or None when music21 cannot export it."""
    from music21 import converter
    from music21.midi import translate

    try:
        return translate.streamToMidiFile(converter.parse(path)).writestr()
    except Exception:  # e.g. badly formed repeats: music21's problem, not ours
        return None


def export_many(paths: Sequence[str | Path], workers: int | None = None) -> dict[str, bytes]:
    """``{file stem: MIDI bytes}`` for the files music21 can export, in a process pool."""
    workers = workers or max(1, min(len(os.sched_getaffinity(0)), 8))
    if workers == 1 or len(paths) < 8:
        results = [export_midi(p) for p in paths]
    else:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(export_midi, [str(p) for p in paths], chunksize=8)
    return {Path(p).stem: data for p, data in zip(paths, results) if data is not None}


# ------------------------------------------------------------------------------ naive peer
def naive_encode(midi_bytes: bytes, vocab, segment_seconds: float = 20.0) -> list[list[int]]:
    """The straightforward encoder: pretty_midi + per-event objects + name lookups."""

    import pretty_midi

    def tick(seconds: float) -> int:  # halves round up, as umt's quantization
        return math.floor(seconds * 100 + 0.5)

    pm = pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes))
    notes = []
    for instrument in pm.instruments:
        for note in instrument.notes:
            notes.append((instrument.is_drum, instrument.program, note.pitch, note.start, note.end))
    names = {}
    for kind in ("shift", "pitch", "velocity", "program", "drum"):
        token_range = vocab[f"midi/{kind}"]
        for value in range(token_range.size):
            names[f"{kind}:{value}"] = token_range.start + value
    names["tie"] = vocab["midi/tie"].start
    names["eos"] = vocab.eos("midi")
    events = []
    for is_drum, program, pitch, start, end in notes:
        on = tick(start)
        events.append({"tick": on, "drum": int(is_drum), "program": program, "velocity": 1, "pitch": pitch})
        if not is_drum:
            off = max(tick(end), on + 1)
            events.append({"tick": off, "drum": 0, "program": program, "velocity": 0, "pitch": pitch})
    events.sort(key=lambda e: (e["tick"], e["drum"], e["program"], e["velocity"], e["pitch"]))
    seg = round(segment_seconds * 100)
    last = events[-1]["tick"] if events else 0
    segments = []
    for index in range(last // seg + 1):
        start, stop = index * seg, (index + 1) * seg
        tokens = []
        ties = sorted(
            (p, n) for d, p, n, s, e in notes if not d and tick(s) < start <= max(tick(e), tick(s) + 1)
        )
        program_state = None
        for program, pitch in ties:
            if program != program_state:
                tokens.append(f"program:{program}")
                program_state = program
            tokens.append(f"pitch:{pitch}")
        tokens.append("tie")
        velocity_state, tick_state = None, start
        for event in (e for e in events if start <= e["tick"] < stop):
            if event["tick"] > tick_state:
                tokens.append(f"shift:{event['tick'] - start}")
                tick_state = event["tick"]
            if not event["drum"] and event["program"] != program_state:
                tokens.append(f"program:{event['program']}")
                program_state = event["program"]
            if event["velocity"] != velocity_state:
                tokens.append(f"velocity:{event['velocity']}")
                velocity_state = event["velocity"]
            tokens.append(f"{'drum' if event['drum'] else 'pitch'}:{event['pitch']}")
        tokens.append("eos")
        segments.append([names[t] for t in tokens])
    return segments


# ----------------------------------------------------------------------------------- timing
def _best_of(repeat: int, func) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def _count(segments_list: Iterable[list[list[int]]]) -> int:
    return sum(len(ids) for segments in segments_list for ids in segments)


def run(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench midi")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N chorales (0 = all)")
    parser.add_argument("--repeat", type=int, default=3, help="best of R timings")
    args, _ = parser.parse_known_args(list(argv))  # shares the argument list with the LMX benchmark

    vocab = default_vocabulary()
    paths = bach_chorale_paths()
    if args.limit:
        paths = paths[: args.limit]
    start = time.perf_counter()
    midis = list(export_many(paths).values())
    seconds = time.perf_counter() - start
    print(f"midi: {len(midis)} of {len(paths)} Bach chorales exported by music21 in {seconds:.1f} s")

    ours = [encode_notes(notes_from_midi(m), vocab) for m in midis]
    peer = [naive_encode(m, vocab) for m in midis]
    same = sum(a == b for a, b in zip(ours, peer))
    tokens = _count(ours)
    notes = [notes_from_midi(m) for m in midis]
    num_notes = sum(len(n) for n in notes)
    print(f"midi: {num_notes} notes, {tokens} tokens; naive encoder agrees on {same}/{len(midis)} pieces")

    t_ours = _best_of(args.repeat, lambda: [encode_notes(notes_from_midi(m), vocab) for m in midis])
    t_peer = _best_of(args.repeat, lambda: [naive_encode(m, vocab) for m in midis])
    t_encode_only = _best_of(args.repeat, lambda: [encode_notes(n, vocab) for n in notes])
    t_decode = _best_of(args.repeat, lambda: [decode_segments(s, vocab) for s in ours])
    print(f"{'midi (tokens/s)':<34}{'umt':>14}{'naive':>14}{'ratio':>9}")
    ratio = t_peer / t_ours
    print(f"{'MIDI bytes -> tokens':<34}{tokens / t_ours:>14,.0f}{tokens / t_peer:>14,.0f}{ratio:>8.1f}x")
    print(f"{'notes -> tokens (encode only)':<34}{tokens / t_encode_only:>14,.0f}{'':>14}{'':>9}")
    print(f"{'tokens -> notes (decode)':<34}{tokens / t_decode:>14,.0f}{'':>14}{'':>9}")
