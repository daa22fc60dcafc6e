"""Speed of ``umt data prepare`` against plain decoding of the same files.

``python -m umt.bench prepare [--dataset maestro|bpsd|ytsv] [--minutes M] [--pieces N]
[--workers 1,2] [--dir DIR]``

**maestro** (default; 60 minutes in 12 performances). Writes a synthetic MAESTRO folder in its
published layout (``maestro-v3.0.0.csv``, stereo 16-bit 44.1 kHz WAVs of noise-shaped tones and
their MIDI files; ``--minutes`` of audio in ``--pieces`` performances), then times, on the same
files, in one run:

* plain decoding: ``soundfile.read`` of every WAV to float32 (the floor: the converter must read
  every sample once), after one untimed read of the files so that both sides read from the page
  cache;
* ``prepare`` with each ``--workers`` count: read, mix down to mono, write FLAC, copy the notes.

Figures are seconds per hour of audio and the ratio to plain decoding. Writing FLAC (encoding,
the converter's other fixed cost) is timed on its own too, so the Python left over is visible.

**bpsd** (default 10 minutes in 2 pieces): unfolded scores of generated piano pieces with four
performances each (the four BPSD distributes), bar times in ``ann_audio_measure``. The converter
also engraves every system once (Verovio + cairo) and linearizes it: its cost beside decoding.

**ytsv** (default 10 minutes in 2 videos): 1280x720, 30 frames/s H.264 + AAC score-following
videos, a page of generated systems every 8 s (hard cuts and crossfades). The peer is plain
decoding of the same videos (every frame as grey pixels, and the sound), which the converter must
do once.
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
    parser.add_argument("--dataset", choices=("maestro", "bpsd", "ytsv"), default="maestro")
    parser.add_argument("--minutes", type=float, help="minutes of audio (maestro 60, others 10)")
    parser.add_argument("--pieces", type=int, help="performances / pieces / videos (12, 2, 2)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--dir", help="where to write the fixture (default: a temporary folder)")
    args = parser.parse_args(argv)
    defaults = {"maestro": (60.0, 12), "bpsd": (10.0, 2), "ytsv": (10.0, 2)}[args.dataset]
    minutes = args.minutes or defaults[0]
    pieces = args.pieces or defaults[1]

    work = Path(args.dir or tempfile.mkdtemp(prefix="umt-bench-prepare-"))
    try:
        {"maestro": _run_maestro, "bpsd": _run_bpsd, "ytsv": _run_ytsv}[args.dataset](
            work, minutes, pieces, [int(w) for w in args.workers.split(",")]
        )
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def _header(unit: str) -> None:
    print(f"\n{'measure':<34} {f's / hour of {unit}':>18} {'vs decoding':>12}")


def _row(label: str, seconds: float, hours: float, decode: float) -> None:
    print(f"{label:<34} {seconds / hours:>18.1f} {seconds / decode:>11.2f}x", flush=True)


def _time_prepare(converter_class, root: Path, work: Path, workers: list[int], hours: float, decode: float):
    from umt.data.prepare import prepare

    for count in workers:
        out = work / f"out-{count}"
        seconds = _timed(lambda: prepare(converter_class(root, out), workers=count, progress=False))  # noqa: B023
        _row(f"umt data prepare, {count} worker(s)", seconds, hours, decode)


def _run_maestro(work: Path, minutes: float, pieces: int, workers: list[int]) -> None:
    from umt.data.prepare.maestro import MaestroConverter

    root = work / "maestro"
    print(f"writing a {minutes:g}-minute MAESTRO fixture ({pieces} performances) ...", flush=True)
    wavs = make_fixture(root, minutes, pieces)
    hours = minutes / 60
    for wav in wavs:  # both sides then read from the page cache, not the first one from disk
        wav.read_bytes()
    decode = _timed(lambda: [soundfile.read(str(w), dtype="float32") for w in wavs])
    mono = [soundfile.read(str(w), dtype="float32")[0].mean(axis=1) for w in wavs[:1]]
    flac_one = _timed(lambda: soundfile.write(str(work / "one.flac"), mono[0], RATE, subtype="PCM_16"))
    _header("audio")
    _row("plain decoding (soundfile)", decode, hours, decode)
    _row("FLAC encoding alone (estimate)", flac_one * len(wavs), hours, decode)
    _time_prepare(MaestroConverter, root, work, workers, hours, decode)


def _systems(seed: int, count: int) -> list[np.ndarray]:
    """``count`` engraved systems (2 bars each) of a generated piano piece, grey ``uint8``."""
    from umt.data import excerpts
    from umt.data.procedural import generate_piano_piece
    from umt.data.render import render_musicxml

    score = generate_piano_piece(seed, n_measures=2 * count)
    systems = []
    for index in range(count):
        spec = excerpts.ExcerptSpec(2 * index, 2 * index + 1, 2 * index + 1, 2 * index + 2)
        musicxml = excerpts.to_musicxml(excerpts.piano_view(excerpts.slice_measures(score, spec)))
        systems.append(np.asarray(render_musicxml(musicxml, staff_height=36), dtype=np.uint8))
    return systems


def _tone(seconds: float, pitch: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * t) + 0.02 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def make_bpsd_fixture(root: Path, minutes: float, pieces: int, seed: int = 0) -> list[Path]:
    """BPSD v2's layout: ``pieces`` unfolded scores, four performances each (``minutes`` of audio
    in all), bars of 2 s."""
    from umt.data import excerpts
    from umt.data.procedural import generate_piano_piece

    rng = np.random.default_rng(seed)
    performers = ("AS35", "FG58", "FJ62", "WK64")
    bars = max(1, round(minutes * 60 / (pieces * len(performers)) / 2.0))
    wavs = []
    for folder in ("0_RawData/score_xml_unfolded", "1_Audio", "2_Annotations/ann_audio_measure"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(pieces):
        piece = f"Beethoven_Op{index + 2:03d}No1-01"
        score = generate_piano_piece(seed + index, n_measures=bars)
        (root / "0_RawData/score_xml_unfolded" / f"{piece}.xml").write_bytes(excerpts.to_musicxml(score))
        for performer in performers:
            wav = root / "1_Audio" / f"{piece}_{performer}.wav"
            soundfile.write(str(wav), _tone(bars * 2.0 + 1.0, 60 + index, rng), RATE, subtype="PCM_16")
            rows = "".join(f"{0.5 + 2.0 * bar:.3f};{bar + 1}\n" for bar in range(bars + 1))
            (root / "2_Annotations/ann_audio_measure" / f"{piece}_{performer}.csv").write_text(
                "start;measure\n" + rows
            )
            wavs.append(wav)
    return wavs


def _run_bpsd(work: Path, minutes: float, pieces: int, workers: list[int]) -> None:
    from umt.data.prepare.bpsd import BpsdConverter

    root = work / "bpsd"
    print(f"writing a {minutes:g}-minute BPSD fixture ({pieces} pieces, 4 performances) ...", flush=True)
    wavs = make_bpsd_fixture(root, minutes, pieces)
    hours = sum(soundfile.info(str(w)).duration for w in wavs) / 3600
    for wav in wavs:
        wav.read_bytes()
    decode = _timed(lambda: [soundfile.read(str(w), dtype="float32") for w in wavs])
    _header("audio")
    _row("plain decoding (soundfile)", decode, hours, decode)
    _time_prepare(BpsdConverter, root, work, workers, hours, decode)


def make_ytsv_fixture(root: Path, minutes: float, videos: int, seed: int = 0) -> list[Path]:
    """YTSV's layout (``metadata/ytsv_metadata.csv``, ``mp4/``): ``videos`` 1280x720 30 frames/s
    videos, ``minutes`` in all, a page every 8 s (cuts and 0.5 s crossfades in turn), a tone per
    page."""
    import imageio_ffmpeg

    rng = np.random.default_rng(seed)
    width, height, fps, page_seconds = 1280, 720, 30, 8.0
    pages = []
    for index in range(4):  # pages of 2 or 3 systems, shown in turn (no two alike in a row)
        page = np.full((height, width), 255, dtype=np.uint8)
        top = 40
        for system in _systems(seed + index, 2 + index % 2):
            h, w = min(system.shape[0], height - top), min(system.shape[1], width - 80)
            page[top : top + h, 40 : 40 + w] = system[:h, :w]
            top += h + 40
        pages.append(page)
    (root / "mp4").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    paths, rows = [], []
    per_video = max(1, round(minutes * 60 / videos / page_seconds))
    for video in range(videos):
        video_id = f"bench{video:07d}"
        path = root / "mp4" / f"{video_id}.mp4"
        sound = np.concatenate([_tone(page_seconds, 60 + k % 12, rng) for k in range(per_video)])
        wav = root / f"{video_id}.wav"
        soundfile.write(str(wav), sound, RATE, subtype="PCM_16")
        writer = imageio_ffmpeg.write_frames(
            str(path),
            (width, height),
            pix_fmt_in="gray",
            fps=fps,
            macro_block_size=1,
            audio_path=str(wav),
            audio_codec="aac",
            output_params=["-preset", "veryfast"],
        )
        writer.send(None)
        fade = fps // 2
        for k in range(per_video):
            page, after = pages[k % len(pages)], pages[(k + 1) % len(pages)]
            frames = round(page_seconds * fps)
            for f in range(frames):
                if k % 2 and f >= frames - fade and k + 1 < per_video:
                    alpha = (f - frames + fade + 1) / (fade + 1)
                    writer.send(np.rint((1 - alpha) * page + alpha * after).astype(np.uint8))
                else:
                    writer.send(page)
        writer.close()
        wav.unlink()
        paths.append(path)
        rows.append(video_id)
    lines = "".join(f"{r},Bench video,0-2\n" for r in rows)
    (root / "metadata" / "ytsv_metadata.csv").write_text("YT Id,Title of Video,Staff Count\n" + lines)
    return paths


def _run_ytsv(work: Path, minutes: float, videos: int, workers: list[int]) -> None:
    from umt.data.prepare.ytsv import YtsvConverter
    from umt.data.video import read_audio, read_frames

    root = work / "ytsv"
    print(f"writing a {minutes:g}-minute YTSV fixture ({videos} videos, 1280x720, 30 fps) ...", flush=True)
    paths = make_ytsv_fixture(root, minutes, videos)
    hours = minutes / 60

    def decode_all() -> None:
        for path in paths:
            read_audio(path, RATE)
            for _ in read_frames(path)[1]:
                pass

    decode_all()  # page cache, as the MAESTRO figures
    decode = _timed(decode_all)
    _header("video")
    _row("plain decoding (frames + sound)", decode, hours, decode)
    _time_prepare(YtsvConverter, root, work, workers, hours, decode)
