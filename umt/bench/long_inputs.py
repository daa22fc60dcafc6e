"""Long inputs through ``umt translate``: a 10-minute recording (AMT, audio-to-image) and a 20-page PDF
(OMR), batched against one unit at a time, with each run's peak memory.

``python -m umt.bench long-inputs [--dir DIR] [--preset quick] [--minutes 10] [--pages 20]
[--batch-size 8] [--max-len 128] [--dtype fp32]``

Runs the demo (``umt demo --preset PRESET``, or reuses the one in ``--dir``) for a model, its
tokenizers and a corpus, and makes the inputs from the corpus: the recording by joining its
excerpts' audio to ``--minutes`` minutes, the PDF by stacking its system images six to a page.
Each ``umt translate`` runs in a process of its own, so that its peak resident memory
(``ru_maxrss``) is its own; the table gives wall seconds, seconds per minute of audio (or per page)
and peak RSS, with ``--batch-size`` units per generation batch and with one. A recording is cut
into the model's windows (20 s), a PDF into pages and systems (one page rendered at a time);
transcriptions of consecutive windows are stitched through their tie sections.

The demo's model is trained for OMR, MIDI-to-audio and image-to-audio only; for AMT and
audio-to-image it runs from a copy of its folder that does not list its tasks, so those rows
measure speed and memory, not transcriptions. Outputs are capped at ``--max-len`` rows per unit
(an untrained task rarely ends by itself), so both batch sizes do the same work.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = """
import json, resource, sys
from umt.inference import GenerationConfig, TranslationPipeline, translate_files
model, task, source, out, batch, max_len, dtype = sys.argv[1:]
pipeline = TranslationPipeline.from_pretrained(model, device="cpu", dtype=dtype)
pipeline.tasks = ()  # the demo's model runs AMT and audio-to-image too (speed and memory only)
generation = GenerationConfig(max_len=int(max_len), batch_size=int(batch))
summary = translate_files(pipeline, task, [source], out, generation, progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"failures": summary.failures, "seconds": summary.seconds, "peak_kib": peak}))
"""
SYSTEMS_PER_PAGE = 6


def make_recording(corpus: Path, minutes: float, path: Path) -> float:
    """The corpus's excerpt recordings joined (in manifest order, repeated) to ``minutes`` minutes,
    written as a 44.1 kHz WAV; returns its length in minutes."""
    import soundfile

    from umt.data.corpus_builder import read_manifest

    clips, rate, total = [], None, 0
    records = [r for r in read_manifest(corpus) if r.get("wav")]
    if not records:
        raise SystemExit(f"{corpus}: the corpus has no audio (built with --no-audio?)")
    while total < minutes * 60 * (rate or 44100):
        for record in records:
            audio, rate = soundfile.read(str(corpus / record["wav"]), dtype="float32")
            clips.append(audio if audio.ndim == 1 else audio.mean(axis=1))
            total += len(clips[-1])
            if total >= minutes * 60 * rate:
                break
    signal = np.concatenate(clips)[: int(minutes * 60 * rate)]
    soundfile.write(str(path), signal, rate)
    return len(signal) / rate / 60


def make_pdf(corpus: Path, pages: int, path: Path) -> int:
    """A PDF of ``pages`` pages of the corpus's system images, :data:`SYSTEMS_PER_PAGE` to a page
    (white gaps between them, as on a printed score); returns the number of systems."""
    from PIL import Image

    from umt.data.corpus_builder import read_manifest

    images = [corpus / r["png"] for r in read_manifest(corpus) if r.get("png")]
    systems = [
        np.asarray(Image.open(images[i % len(images)]).convert("L")) for i in range(pages * SYSTEMS_PER_PAGE)
    ]
    width = max(s.shape[1] for s in systems) + 80
    sheets = []
    for first in range(0, len(systems), SYSTEMS_PER_PAGE):
        group = systems[first : first + SYSTEMS_PER_PAGE]
        height = sum(s.shape[0] for s in group) + 60 * (len(group) + 1)
        sheet = np.full((height, width), 255, dtype=np.uint8)
        top = 60
        for system in group:
            sheet[top : top + system.shape[0], 40 : 40 + system.shape[1]] = system
            top += system.shape[0] + 60
        sheets.append(Image.fromarray(sheet))
    sheets[0].save(str(path), save_all=True, append_images=sheets[1:], resolution=150.0)
    return len(systems)


def translate(model: Path, task: str, source: Path, out: Path, batch: int, max_len: int, dtype: str) -> dict:
    """:func:`umt.inference.translate_files` (what ``umt translate`` runs) in a process of its own
    -> its stage seconds, failures and peak RSS (``peak_mib``)."""
    argv = [str(model), task, str(source), str(out), str(batch), str(max_len), dtype]
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not last.startswith("{"):
        raise SystemExit(f"translating {source} ({task}) failed:\n{done.stderr[-2000:]}")
    report = json.loads(last)
    report["peak_mib"] = report.pop("peak_kib") / 1024
    return report


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench long-inputs", description=__doc__)
    parser.add_argument("--dir", help="a demo folder to reuse, or where to make one (default: temporary)")
    parser.add_argument("--preset", default="quick", help="the demo preset to run when --dir holds none")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--dtype", default="fp32", help="umt translate --dtype")
    args = parser.parse_args(argv)

    from umt.bench import demo_folder

    work = Path(args.dir or tempfile.mkdtemp(prefix="umt-bench-long-"))
    demo = demo_folder(work, args.preset)
    scratch = Path(tempfile.mkdtemp(prefix="umt-bench-long-", dir=work))
    model = demo / "run" / "model"
    try:
        minutes = make_recording(demo / "corpus", args.minutes, scratch / "recording.wav")
        systems = make_pdf(demo / "corpus", args.pages, scratch / "score.pdf")
        print(
            f"\nlong inputs, model {model} ({args.dtype}), outputs capped at {args.max_len} rows a unit: "
            f"{minutes:.1f} min recording, {args.pages}-page PDF ({systems} systems)"
        )
        header = (
            f"{'batch':>5} {'read s':>7} {'model s':>8} {'write s':>8} {'total s':>8} {'per input unit':>16}"
        )
        print(f"{'task':5} {header} {'peak RSS':>10} {'speed-up':>8}")
        for task, source, amount, unit in (
            ("amt", "recording.wav", minutes, "min"),
            ("a2i", "recording.wav", minutes, "min"),
            ("omr", "score.pdf", args.pages, "page"),
        ):
            totals = {}
            for batch in (1, args.batch_size):
                out = scratch / f"{task}-{batch}"
                report = translate(model, task, scratch / source, out, batch, args.max_len, args.dtype)
                seconds = report["seconds"]
                total = totals[batch] = sum(seconds.values())
                stages = " ".join(
                    f"{seconds.get(s, 0.0):{w}.1f}" for s, w in (("read", 7), ("generate", 8), ("write", 8))
                )
                rate = f"{total / amount:.2f} s/{unit}"
                note = "  (outputs unreadable: not a task the model learnt)" if report["failures"] else ""
                print(
                    f"{task:5} {batch:>5} {stages} {total:8.1f} {rate:>16} {report['peak_mib']:6.0f} MiB "
                    f"{totals[1] / total:7.2f}x{note}",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
