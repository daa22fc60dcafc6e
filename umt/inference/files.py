"""``umt translate``'s file runner: read every input with its modality's reader, translate all units in
batches, write each input's outputs with the target modality's writers, atomically, only once all of
it succeeded; a bad input is one line and the others go on."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from umt.errors import InputError, UserError
from umt.inference.generation import Generated, GenerationConfig
from umt.inference.inputs import musicxml_to_notes
from umt.inference.modality_files import midi_writer, score_files, wav_writer
from umt.inference.pipeline import TranslationPipeline
from umt.modalities import get_spec
from umt.modalities.spec import FileWriter, Units
from umt.tasks import CASCADE_TASK, get_task
from umt.tasks import TASKS as REGISTERED_TASKS


def file_tasks() -> tuple[str, ...]:
    """The tasks :func:`translate_files` runs: every registered task, and the cascade."""
    return (*REGISTERED_TASKS.names(), CASCADE_TASK)


@dataclass
class _Job:
    """One input file on its way through the stages."""

    path: Path
    stem: str
    source: Units = field(default_factory=lambda: Units([]))
    units: list[np.ndarray] = field(default_factory=list)
    """What the stage at hand translates (the source's units, then the cascade's MIDI segments)."""
    outputs: list[Generated] = field(default_factory=list)
    files: dict[str, FileWriter] = field(default_factory=dict)
    """Output suffix -> writer of that file (called with the final path, writes atomically)."""
    notes: list = field(default_factory=list)
    truncated: int = 0


@dataclass
class TranslateSummary:
    """What :func:`translate_files` did."""

    written: list[Path] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    """Input -> problem (one line)."""
    truncated: int = 0
    """Units whose output hit ``max_len`` before the model's EOS."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall seconds of each stage: ``read`` (reading and tokenizing the inputs), ``generate``
    (the model, both stages of the cascade) and ``write`` (detokenizing and writing)."""


def _problem(error: BaseException, path: Path) -> str:
    """One line for a failed input, without repeating the file name the message already has."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    prefix = f"{path}: "
    if isinstance(error, UserError):
        return message.removeprefix(prefix)
    return f"{type(error).__name__}: {message}".removeprefix(prefix)


def _slug(text: str, longest: int = 60) -> str:
    """A file name made of a prompt's words: ``a-music-score-key-is-A-major``."""
    return re.sub(r"[^\w]+", "-", text, flags=re.UNICODE).strip("-")[:longest].strip("-") or "prompt"


def output_stems(paths: Sequence[Path]) -> list[str]:
    """Output base names: each input's stem, with ``_2``, ``_3`` ... when stems repeat."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = path.stem or "output"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def translate_files(
    pipeline: TranslationPipeline,
    task: str,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    generation: GenerationConfig | None = None,
    m2a_pipeline: TranslationPipeline | None = None,
    progress: bool = True,
    on_units: Callable[[int], None] | None = None,
) -> TranslateSummary:
    """Translate files for ``task`` into ``out_dir`` (see the module docstring for the units).

    The task's source modality reads each input (:meth:`~umt.modalities.ModalitySpec.read_units`)
    and its target modality writes the outputs (``output_files``): omr -> ``NAME.musicxml`` +
    ``NAME.lmx``; amt -> ``NAME.mid``; i2a / m2a -> ``NAME.wav`` (44.1 kHz); a2i / l2i ->
    ``NAME.png``; cascade-i2a -> ``NAME.musicxml``, ``NAME.mid`` and ``NAME.wav``. Task or
    checkpoint problems raise; a bad input is recorded in ``failures`` and the others go on;
    nothing is written for a failed input.
    """
    if task not in file_tasks():
        raise UserError(f"unknown task {task!r} (tasks: {', '.join(file_tasks())})")
    generation = generation or GenerationConfig()
    m2a_pipeline = m2a_pipeline or pipeline
    model_task = "omr" if task == CASCADE_TASK else task
    pipeline.check_task(model_task)
    if task == CASCADE_TASK:
        m2a_pipeline.check_task("m2a")
    out = Path(out_dir)
    paths = [Path(p) for p in inputs]
    summary = TranslateSummary()
    source = "image" if task == CASCADE_TASK else get_task(task).source
    # a prompt given as text (not a file) is named by its words
    names = [Path(_slug(str(p))) if source == "text" and not p.exists() else p for p in paths]
    jobs = [_Job(path, stem) for path, stem in zip(paths, output_stems(names))]

    def fail(job: _Job, error: BaseException) -> None:
        summary.failures[str(job.path)] = _problem(error, job.path)

    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        summary.seconds[stage] = summary.seconds.get(stage, 0.0) + now - clock
        clock = now

    # Stage 1: read and encode every input.
    live: list[_Job] = []
    for job in jobs:
        try:
            _encode_job(pipeline, task, job)
        except Exception as error:  # any reader's error for a bad file is that file's problem only
            fail(job, error)
            continue
        live.append(job)

    lap("read")
    # Stage 2: generate.
    live = _run_stage(pipeline, model_task, live, generation, progress, summary, on_units)
    lap("generate")

    # Stage 3: decode (and, for the cascade, the second model stage).
    decoded: list[_Job] = []
    for job in live:
        try:
            _decode_job(pipeline, task, job)
        except Exception as error:  # a malformed model output must not stop the other inputs
            fail(job, error)
            continue
        decoded.append(job)
    if task == CASCADE_TASK:
        for job in decoded:
            job.units = []
        ready = []
        for job in decoded:
            try:
                job.units = m2a_pipeline.midi_segments(job.notes, str(job.path))
            except (UserError, ValueError) as error:
                fail(job, error)
                continue
            ready.append(job)
        lap("write")
        ready = _run_stage(m2a_pipeline, "m2a", ready, generation, progress, summary, on_units)
        lap("generate")
        decoded = []
        for job in ready:
            try:
                audio = m2a_pipeline.segments_audio([o.rows for o in job.outputs], str(job.path))
                job.files[".wav"] = wav_writer(audio, m2a_pipeline.sample_rate)
            except Exception as error:
                fail(job, error)
                continue
            decoded.append(job)

    # Stage 4: write (each file atomically; a job's files only once all of it succeeded).
    for job in decoded:
        written = []
        try:
            for suffix, writer in job.files.items():
                target = out / f"{job.stem}{suffix}"
                writer(target)
                written.append(target)
        except OSError as error:
            for target in written:
                with contextlib.suppress(OSError):
                    target.unlink()
            fail(job, UserError(f"cannot write output ({error})"))
            continue
        summary.written.extend(written)
    lap("write")
    return summary


def _encode_job(pipeline: TranslationPipeline, task: str, job: _Job) -> None:
    source = "image" if task == CASCADE_TASK else get_task(task).source
    job.source = get_spec(source).read_units(job.path, pipeline)
    job.units = list(job.source.rows)
    if not job.units:
        raise InputError("nothing to translate", job.path)


def _run_stage(
    pipeline: TranslationPipeline,
    task: str,
    jobs: list[_Job],
    generation: GenerationConfig,
    progress: bool,
    summary: TranslateSummary,
    on_units: Callable[[int], None] | None = None,
) -> list[_Job]:
    units = [unit for job in jobs for unit in job.units]
    if not units:
        return jobs
    bar = _progress_bar(len(units), task, progress)
    try:
        outputs = pipeline.generate(task, units, generation, progress=bar.update if bar else on_units)
    finally:
        if bar is not None:
            bar.close()
    position = 0
    for job in jobs:
        job.outputs = outputs[position : position + len(job.units)]
        position += len(job.units)
        job.truncated += sum(not o.finished for o in job.outputs)
        summary.truncated += sum(not o.finished for o in job.outputs)
    return jobs


def _progress_bar(total: int, task: str, enabled: bool):
    if not enabled:
        return None

    return tqdm(total=total, desc=f"translate {task}", unit="unit", file=sys.stderr, dynamic_ncols=True)


def _decode_job(pipeline: TranslationPipeline, task: str, job: _Job) -> None:
    name = str(job.path)
    rows = [o.rows for o in job.outputs]
    if task == CASCADE_TASK:
        job.files, score = score_files([pipeline.rows_to_lmx(r) for r in rows])
        job.notes = musicxml_to_notes(score.musicxml, name)
        job.files[".mid"] = midi_writer(job.notes)
        # The WAV comes from the second stage; the score files stay first in the output order.
        return
    job.files.update(get_spec(get_task(task).target).output_files(rows, pipeline, job.source, name))


def describe(pipeline: TranslationPipeline) -> str:
    """A one-line JSON description (for logs)."""
    return json.dumps(
        {
            "model": pipeline.name,
            "tasks": list(pipeline.tasks),
            "device": str(pipeline.device),
            "image_tokenizer": getattr(pipeline.image_tokenizer, "fingerprint", None),
            "audio_tokenizer": getattr(pipeline.audio_tokenizer, "fingerprint", None),
        }
    )
