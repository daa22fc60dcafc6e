"""Quantized decoding (``umt translate --dtype``): what it costs in quality and what it gains in speed.

``python -m umt.bench quantized [--dir DIR] [--preset quick] [--excerpts N] [--dtypes int8,bf16]
[--threads T]``

Runs the demo (``umt demo --preset PRESET``; or reuses the one in ``--dir``), then translates its
held-out systems with the demo's model once per weight type, fp32 first:

* **identical greedy tokens**: every task the model has (OMR, image-to-audio, MIDI-to-audio) decoded
  greedily on the same sources; the share of the fp32 output's tokens (the codebooks the target
  uses, at each row the fp32 output has) that the quantized model chose too. One different token
  changes everything after it, so this is a strict measure;
* **quality**: the demo's own evaluation (:func:`umt.evaluation.evaluate_image_to_audio`, OMR and
  the cascade, with the demo's decoding settings): symbol error rate and the cascade's note onset F1,
  and their change against fp32 in points;
* **speed**: seconds of greedy decoding over all the tasks' sources, and the speed-up over fp32.

The quality bound for shipping a dtype (issue #19): >= 95 % identical tokens in every task and
SER / onset F1 within 1 point. ``tests/test_demo.py`` asserts it on the quick demo's model.

Measured on the 2-core development machine (one thread, quick demo, seed 0; see the README).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DECODED_TASKS = ("omr", "i2a", "m2a")


@dataclass
class DtypeFigures:
    """One weight type's figures (see the module docstring)."""

    dtype: str
    tokens: dict[str, list[np.ndarray]]
    """Task -> greedy output rows per source."""
    codebooks: dict[str, int]
    """Task -> the codebooks its target uses (the columns that count as tokens)."""
    seconds: float
    ser: float
    """Symbol error rate in percent."""
    onset_f1: float


def task_sources(pipeline, excerpts) -> dict[str, list[np.ndarray]]:
    """The sources of every task in :data:`DECODED_TASKS` the pipeline's model has."""
    from umt.tokenizers.midi import notes_from_midi

    sources: dict[str, list[np.ndarray]] = {}
    images: list[np.ndarray] | None = None
    for task in DECODED_TASKS:
        if pipeline.tasks and task not in pipeline.tasks:
            continue
        if task == "m2a":
            sources[task] = [
                unit
                for e in excerpts
                for unit in pipeline.midi_segments(notes_from_midi(e.midi), str(e.midi))
            ]
        else:  # OMR and image-to-audio read the same systems: tokenized once
            if images is None:
                images = [pipeline.image_file_rows(e.image) for e in excerpts]
            sources[task] = images
    return sources


def identical_share(reference: list[np.ndarray], candidate: list[np.ndarray], codebooks: int) -> float:
    """Share of the tokens of ``reference`` outputs (rows ``[T, K]``, first ``codebooks`` columns)
    that ``candidate`` has at the same row and codebook; rows it lacks count as different."""
    same = total = 0
    for ref, cand in zip(reference, candidate, strict=True):
        ref = ref[:, :codebooks]
        total += ref.size
        length = min(len(ref), len(cand))
        same += int((ref[:length] == cand[:length, :codebooks]).sum())
    return same / total if total else 1.0


def measure(model_dir: Path, corpus: Path, dtype: str, excerpts: int, settings) -> DtypeFigures:
    """Greedy outputs, their decoding time and the demo's OMR and cascade figures for one dtype."""
    from umt.demo import eval_generation
    from umt.evaluation import corpus_excerpts, evaluate_image_to_audio
    from umt.inference import GenerationConfig, TranslationPipeline
    from umt.tasks import get_task

    pipeline = TranslationPipeline.from_pretrained(model_dir, device="cpu", dtype=dtype)
    held_out = corpus_excerpts(corpus, "test", limit=excerpts)
    tokens: dict[str, list[np.ndarray]] = {}
    seconds = 0.0
    for task, sources in task_sources(pipeline, held_out).items():
        rows = settings.eval_lmx_rows if task == "omr" else settings.eval_audio_rows
        greedy = GenerationConfig(max_len=rows, batch_size=8)
        start = time.perf_counter()
        tokens[task] = [out.rows for out in pipeline.generate(task, sources, greedy)]
        seconds += time.perf_counter() - start
    lmx, audio = eval_generation(settings)
    with tempfile.TemporaryDirectory(prefix="umt-bench-quantized-") as out:
        metrics = evaluate_image_to_audio(
            pipeline, held_out, out, lmx, audio, tasks=("omr", "cascade")
        ).metrics
    codebooks = {task: pipeline.vocab.modality_codebooks(get_task(task).target) for task in tokens}
    return DtypeFigures(dtype, tokens, codebooks, seconds, metrics["omr_ser"], metrics["cascade_onset_f1"])


def compare(model_dir: Path, corpus: Path, dtypes: list[str], excerpts: int, settings) -> list[dict]:
    """fp32 and each of ``dtypes``: one row of figures each (what :func:`run` prints)."""
    figures = [measure(model_dir, corpus, dtype, excerpts, settings) for dtype in ["fp32", *dtypes]]
    base = figures[0]
    used = base.codebooks
    counts = {task: sum(r[:, : used[task]].size for r in base.tokens[task]) for task in used}
    total = sum(counts.values())
    rows = []
    for fig in figures:
        shares = {task: identical_share(base.tokens[task], fig.tokens[task], used[task]) for task in used}
        weighted = sum(shares[t] * counts[t] for t in shares)
        rows.append(
            {
                "dtype": fig.dtype,
                "identical": weighted / total if total else 1.0,
                "per_task": shares,
                "ser": fig.ser,
                "onset_f1": fig.onset_f1,
                "seconds": fig.seconds,
                "speedup": base.seconds / fig.seconds,
                "ser_change": fig.ser - base.ser,  # SER is in percent already
                "f1_change": 100 * (fig.onset_f1 - base.onset_f1),
            }
        )
    return rows


def within_bound(row: dict) -> bool:
    """The quality bound of the module docstring."""
    identical = min(row["per_task"].values(), default=1.0)
    return identical >= 0.95 and abs(row["ser_change"]) <= 1.0 and abs(row["f1_change"]) <= 1.0


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m umt.bench quantized", description=__doc__)
    parser.add_argument(
        "--dir", help="a demo folder to reuse, or where to make one (default: a temporary one)"
    )
    parser.add_argument("--preset", default="quick", help="the demo preset to run when --dir holds none")
    parser.add_argument("--excerpts", type=int, default=16, help="held-out systems to translate")
    parser.add_argument("--dtypes", default="int8,bf16", help="weight types to compare with fp32")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)

    import torch

    from umt.bench import demo_folder
    from umt.demo import settings_for

    torch.set_num_threads(args.threads)
    demo = demo_folder(Path(args.dir or tempfile.mkdtemp(prefix="umt-bench-quantized-")), args.preset)
    settings = settings_for(args.preset)
    rows = compare(demo / "run" / "model", demo / "corpus", args.dtypes.split(","), args.excerpts, settings)
    print(
        f"\nquantized decoding, {args.preset} demo's model, {args.excerpts} held-out systems at most, "
        f"{torch.get_num_threads()} thread(s)"
    )
    header = (
        f"{'identical':>9} {'SER':>7} {'ΔSER':>6} {'onset F1':>8} {'ΔF1':>6} {'decode s':>9} {'speed':>6}"
    )
    print(f"{'dtype':6} {header}  bound")
    for row in rows:
        print(
            f"{row['dtype']:6} {row['identical']:9.1%} {row['ser']:6.1f}% {row['ser_change']:+6.1f} "
            f"{row['onset_f1']:8.3f} {row['f1_change']:+6.1f} {row['seconds']:9.2f} {row['speedup']:5.2f}x  "
            f"{'met' if within_bound(row) else 'NOT met'}"
        )
        print(f"{'':6} per task: " + ", ".join(f"{t} {s:.1%}" for t, s in row["per_task"].items()))
