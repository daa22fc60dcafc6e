"""Mutation fuzzing of every file reader users feed (``make fuzz``, or ``python -m tests.hostile.fuzz``).

``python -m tests.hostile.fuzz [--seconds S] [--seed N] [--out DIR]`` makes one valid file of each
kind (a PNG and a JPEG of a rendered system, WAV and FLAC tones, a MIDI file, a MusicXML score, a
PDF page), then, until the time is up, mutates one of them at random (flipped bytes, cut tails,
repeated or deleted chunks, a header spliced from another kind) and reads it with the reader the
commands use. A reader may accept a mutant or refuse it with :class:`~umt.errors.UserError` (one
line for the user); anything else (another exception type, or a read slower than ``--slow``
seconds) is a failure: its input is kept in ``--out`` and reported. Prints cases per second by kind.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from umt.errors import UserError


def seeds(root: Path) -> dict[str, tuple[str, bytes]]:
    """One valid file of each kind: ``kind -> (suffix, bytes)``."""
    import numpy as np
    import pretty_midi
    import soundfile
    from PIL import Image

    from tests import _inference_fixtures as fx

    system = fx.render(fx.piano_musicxml(1, 0))
    files = {}
    for kind, fmt, suffix in (("png", "PNG", ".png"), ("jpeg", "JPEG", ".jpg")):
        buffer = io.BytesIO()
        Image.fromarray(system).save(buffer, format=fmt)
        files[kind] = (suffix, buffer.getvalue())
    tone = (0.2 * np.sin(np.arange(22050) / 44100 * 2 * np.pi * 440)).astype(np.float32)
    for kind, fmt in (("wav", "WAV"), ("flac", "FLAC")):
        buffer = io.BytesIO()
        soundfile.write(buffer, tone, 44100, format=fmt)
        files[kind] = (f".{kind}", buffer.getvalue())
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(80, 60 + k, 0.25 * k, 0.25 * k + 0.2) for k in range(8)]
    midi.instruments.append(piano)
    buffer = io.BytesIO()
    midi.write(buffer)
    files["midi"] = (".mid", buffer.getvalue())
    files["musicxml"] = (".musicxml", fx.piano_musicxml(2, 0).encode())
    png = root / "page.png"
    png.write_bytes(files["png"][1])
    files["pdf"] = (".pdf", fx.save_pdf(png, root / "page.pdf").read_bytes())
    return files


def readers() -> dict[str, Callable[[Path], object]]:
    """Each kind's reader, as the commands call it."""
    from umt.inference.inputs import load_systems, read_lmx_systems
    from umt.tokenizers.audio import load_audio
    from umt.tokenizers.midi import notes_from_midi

    return {
        "png": load_systems,
        "jpeg": load_systems,
        "wav": load_audio,
        "flac": load_audio,
        "midi": notes_from_midi,
        "musicxml": read_lmx_systems,
        "pdf": load_systems,
    }


def mutate(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """One random mutation (or two) of ``data``."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2))):
        how = rng.randrange(5)
        if how == 0 and out:  # flip a few bytes
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(len(out))] = rng.randrange(256)
        elif how == 1 and out:  # cut the tail
            del out[rng.randrange(len(out)) :]
        elif how == 2 and out:  # repeat a chunk
            start = rng.randrange(len(out))
            out[start:start] = out[start : start + rng.randint(1, 4096)] * rng.randint(2, 50)
        elif how == 3 and out:  # delete a chunk
            start = rng.randrange(len(out))
            del out[start : start + rng.randint(1, 512)]
        else:  # another kind's header
            other = rng.choice(others)
            out[: rng.randint(4, 64)] = other[: rng.randint(4, 64)]
    return bytes(out)


def fuzz(seconds: float, seed: int, out: Path, slow: float = 10.0) -> tuple[Counter, list[str]]:
    """Run for ``seconds``; the cases run by kind and the failures (one line each)."""
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="umt-fuzz-"))
    files, read = seeds(work), readers()
    kinds = sorted(files)
    counts: Counter = Counter()
    failures: list[str] = []
    end = time.monotonic() + seconds
    case = 0
    while time.monotonic() < end:
        kind = rng.choice(kinds)
        suffix, data = files[kind]
        mutant = mutate(data, rng, [files[k][1] for k in kinds if k != kind])
        path = work / f"case{case}{suffix}"
        path.write_bytes(mutant)
        started = time.monotonic()
        problem = None
        try:
            read[kind](path)
        except UserError:
            pass
        except Exception as error:  # any other type is what fuzzing looks for
            problem = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        took = time.monotonic() - started
        if problem is None and took > slow:
            problem = f"took {took:.1f} s"
        if problem is not None:
            out.mkdir(parents=True, exist_ok=True)
            kept = out / path.name
            kept.write_bytes(mutant)
            failures.append(f"{kept}: {kind}: {problem}")
        path.unlink()
        counts[kind] += 1
        case += 1
    return counts, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile.fuzz", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow", type=float, default=10.0, help="a read slower than this fails")
    parser.add_argument("--out", default="fuzz-failures", help="where failing inputs are kept")
    args = parser.parse_args(argv)
    counts, failures = fuzz(args.seconds, args.seed, Path(args.out), args.slow)
    total = sum(counts.values())
    print(f"{'kind':<10} {'cases':>7} {'cases/s':>8}")
    for kind, count in sorted(counts.items()):
        print(f"{kind:<10} {count:>7} {count / args.seconds:>8.1f}")
    print(f"{'all':<10} {total:>7} {total / args.seconds:>8.1f}   failures: {len(failures)}")
    for line in failures:
        print(line, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
