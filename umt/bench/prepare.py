"""Speed of ``umt data prepare maestro`` against plain decoding of the same files.

``python -m umt.bench prepare [--minutes 60] [--pieces 12] [--workers 1,2] [--dir DIR]``

Writes a synthetic MAESTRO folder in its published layout (``maestro-v3.0.0.csv``, stereo 16-bit
44.1 kHz WAVs of noise-shaped tones and their MIDI files; ``--minutes`` of audio in ``--pieces``
performances), then times, on the same files, in one run:

* plain decoding: ``soundfile.read`` of every WAV to float32 (the floor: the converter must read
  every sample once), after one untimed read of the files so that both sides read from the page
  cache;
* ``prepare`` with each ``--workers`` count: read, mix down to mono, write FLAC, copy the notes.

Figures are seconds per hour of audio and the ratio to plain decoding. Writing FLAC (encoding,
the converter's other fixed cost) is timed on its own too, so the Python left over is visible.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

RATE = 44100


def make_fixture(root: Path, minutes: float, pieces: int, seed: int = 0) -> list[Path]:
    """A MAESTRO-layout folder with ``pieces`` performances totalling ``minutes`` of audio."""
    from umt.data.prepare.maestro import write_metadata
    from umt.tokenizers.midi import Note, notes_to_midi

    rng = np.random.default_rng(seed)
    seconds = minutes * 60 / pieces
    rows, wavs = [], []
    (root / "2004").mkdir(parents=True, exist_ok=True)
    for index in range(pieces):
        stem = f"MIDI-Unprocessed_Bench_{index:02d}_wav--1"
        frames = int(seconds * RATE)
        tone = np.sin(2 * np.pi * 220 * (1 + index % 5) * np.arange(frames) / RATE)
        stereo = 0.3 * tone[:, None] + 0.05 * rng.standard_normal((frames, 2))
        wav = root / "2004" / f"{stem}.wav"
        soundfile.write(str(wav), stereo.astype(np.float32), RATE, subtype="PCM_16")
        onsets = np.arange(0.0, seconds - 1.0, 0.25)
        notes = [Note(int(rng.integers(40, 90)), 0, False, float(t), float(t) + 0.4) for t in onsets]
        notes_to_midi(notes, root / "2004" / f"{stem}.midi")
        split = ("train", "validation", "test")[index % 3]
        rows.append(["C", f"P{index}", split, "2004", f"2004/{stem}.midi", f"2004/{stem}.wav", seconds])
        wavs.append(wav)
    write_metadata(root, rows)
    return wavs


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench prepare", description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of audio in the fixture")
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--dir", help="where to write the fixture (default: a temporary folder)")
    args = parser.parse_args(argv)

    from umt.data.prepare import prepare
    from umt.data.prepare.maestro import MaestroConverter

    work = Path(args.dir or tempfile.mkdtemp(prefix="umt-bench-prepare-"))
    try:
        root = work / "maestro"
        print(
            f"writing a {args.minutes:g}-minute MAESTRO fixture ({args.pieces} performances) ...", flush=True
        )
        wavs = make_fixture(root, args.minutes, args.pieces)
        hours = args.minutes / 60
        for wav in wavs:  # both sides then read from the page cache, not the first one from disk
            wav.read_bytes()
        decode = _timed(lambda: [soundfile.read(str(w), dtype="float32") for w in wavs])
        mono = [soundfile.read(str(w), dtype="float32")[0].mean(axis=1) for w in wavs[:1]]
        flac_one = _timed(lambda: soundfile.write(str(work / "one.flac"), mono[0], RATE, subtype="PCM_16"))
        print(f"\n{'measure':<34} {'s / hour of audio':>18} {'vs decoding':>12}")
        print(f"{'plain decoding (soundfile)':<34} {decode / hours:>18.1f} {1.0:>11.2f}x")
        flac = flac_one * len(wavs)
        print(f"{'FLAC encoding alone (estimate)':<34} {flac / hours:>18.1f} {flac / decode:>11.2f}x")
        for workers in (int(w) for w in args.workers.split(",")):
            out = work / f"out-{workers}"
            seconds = _timed(lambda: prepare(MaestroConverter(root, out), workers=workers, progress=False))  # noqa: B023
            label = f"umt data prepare, {workers} worker(s)"
            print(f"{label:<34} {seconds / hours:>18.1f} {seconds / decode:>11.2f}x")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
