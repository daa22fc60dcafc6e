"""What each tab of ``umt serve`` runs, on a file already stored in the job's folder.

Every tab runs the tasks the loaded model has, each into its own sub-folder of ``out/``, through
:func:`umt.inference.translate_files` (so the page gives what ``umt translate`` gives), and
returns what the page shows: for each run a label, the files (audio, images, downloads) and,
where there is one, a rendered score, a piano roll or the score-following alignment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umt.errors import UserError
from umt.inference.generation import GenerationConfig
from umt.serve.jobs import Job

TABS: dict[str, dict[str, Any]] = {
    "score": {"title": "Score -> audio", "kinds": ("image", "pdf")},
    "follow": {"title": "Score following", "kinds": ("image",)},
    "audio": {"title": "Audio -> score / MIDI", "kinds": ("audio",)},
    "midi": {"title": "MIDI -> audio", "kinds": ("midi",)},
    "engrave": {"title": "MusicXML -> image", "kinds": ("musicxml",)},
}
"""The page's tabs and the upload kinds each takes (:mod:`umt.serve.uploads`)."""


@dataclass
class Models:
    """The loaded model and, when given, a second one for MIDI -> audio (the cascade's end)."""

    main: Any
    m2a: Any = None
    max_len: int | None = None
    """Longest output in rows (``None``: each model's own limit)."""

    def has(self, task: str) -> bool:
        tasks = self.main.tasks
        return not tasks or task in tasks

    @property
    def synthesiser(self) -> Any:
        """The pipeline that turns MIDI into audio, or None."""
        if self.m2a is not None:
            return self.m2a
        return self.main if self.has("m2a") else None

    def tab_tasks(self, tab: str) -> list[str]:
        """The runs a tab makes with these models, in the page's order (empty: the tab is hidden)."""
        wanted = {
            "score": ["cascade-i2a" if self.has("omr") and self.synthesiser else None, "i2a", "omr"],
            "follow": ["i2a"],
            "audio": ["amt", "a2i"],
            "midi": ["m2a"],
            "engrave": ["l2i"],
        }[tab]
        runs = [t for t in wanted if t and (t == "cascade-i2a" or self.has(t))]
        if tab == "score" and "cascade-i2a" in runs:
            runs.remove("omr")  # the cascade's score is the OMR output
        if tab == "midi" and not runs and self.synthesiser is not None:
            runs = ["m2a"]
        return runs


LABELS = {
    "cascade-i2a": "cascade: OMR -> MusicXML -> MIDI -> audio",
    "i2a": "direct: image -> audio",
    "omr": "OMR: image -> MusicXML",
    "amt": "transcription (AMT): audio -> MIDI",
    "a2i": "audio -> score image",
    "m2a": "MIDI -> audio",
    "l2i": "engraving: MusicXML -> image",
}


def run_tab(models: Models, tab: str, source: Path, job: Job) -> dict[str, Any]:
    """Every run of ``tab`` on ``source``; a run whose input the model cannot read fails the job
    with that one line (nothing of it is kept)."""
    from umt.inference.files import translate_files

    runs = models.tab_tasks(tab)
    if not runs:
        raise UserError(f"the loaded model has no task for the {TABS[tab]['title']} tab")
    # one unit a batch: progress (and cancelling) system by system, window by window
    generation = GenerationConfig(batch_size=1, max_len=models.max_len)
    results = []
    units_done = 0

    def on_units(count: int) -> None:
        nonlocal units_done
        units_done += count
        job.progress(done=units_done)

    job.progress(done=0, total=len(runs))
    if tab == "score":
        results.append(_systems_found(source, job))
    for task in runs:
        out = job.folder / "out" / task
        if tab == "follow":
            results.append(_follow(models, source, out, generation, job))
            continue
        pipeline = models.main if task != "m2a" else models.synthesiser
        summary = translate_files(
            pipeline, task, [source], out, generation, models.synthesiser, progress=False, on_units=on_units
        )
        if summary.failures:
            raise UserError(next(iter(summary.failures.values())))
        results.append(_describe(task, out, job))
    return {"runs": results}


def _systems_found(source: Path, job: Job) -> dict[str, Any]:
    """The systems found on the page (or the PDF's pages), stacked: what the models will read."""
    from umt.inference.inputs import load_systems, stack_images
    from umt.inference.modality_files import png_writer

    try:
        systems = load_systems(source)
    except UserError as error:
        raise UserError(error.problem) from None  # the stored upload's name means nothing to the user
    out = job.folder / "out" / "systems"
    out.mkdir(parents=True, exist_ok=True)
    png_writer(stack_images(systems))(out / "systems.png")
    run = {"task": "systems", "label": f"{len(systems)} system(s) found", "files": []}
    run["files"] = [_file(out / "systems.png", job)]
    return run


def _describe(task: str, out: Path, job: Job) -> dict[str, Any]:
    """A run's files as the page shows them."""
    files = sorted(p for p in out.iterdir() if p.is_file())
    run: dict[str, Any] = {"task": task, "label": LABELS[task], "files": [_file(p, job) for p in files]}
    for path in files:
        if path.suffix == ".musicxml":
            run["score_svg"] = musicxml_svg(path.read_text(encoding="utf-8"))
        if path.suffix == ".mid":
            run["roll_svg"] = _piano_roll(path)
    return run


def _file(path: Path, job: Job) -> dict[str, str]:
    kind = {".wav": "audio", ".png": "image"}.get(path.suffix, "download")
    return {"name": path.name, "kind": kind, "url": f"api/jobs/{job.id}/files/{path.relative_to(job.folder)}"}


def musicxml_svg(musicxml: str) -> str | None:
    """The score rendered by Verovio as SVG (None when it cannot be: a malformed prediction)."""
    from umt.data.render import page_svg

    try:
        return page_svg(musicxml)
    except Exception:  # any engraving failure only means no picture
        return None


def _piano_roll(path: Path) -> str:
    from umt.report import piano_roll_svg
    from umt.tokenizers.midi import notes_from_midi

    notes = notes_from_midi(path)
    return piano_roll_svg(notes, max((n.offset for n in notes), default=1.0), "piano roll", width=640)


def _follow(
    models: Models, source: Path, out: Path, generation: GenerationConfig, job: Job
) -> dict[str, Any]:
    """Direct image -> audio with where the model looks at every audio frame (score following)."""
    from umt.evaluate.attention import attention_alignment
    from umt.inference.modality_files import png_writer, wav_writer
    from umt.utils.io import atomic_write_text

    pipeline = models.main
    rows = pipeline.image_file_rows(source)
    generated = pipeline.generate("i2a", [rows], generation)[0].rows
    job.progress(done=1)
    if len(generated) == 0:
        raise UserError("the model generated no audio for this image")
    alignment, _, systems = attention_alignment(pipeline, source, rows, generated)
    out.mkdir(parents=True, exist_ok=True)
    wav_writer(pipeline.rows_to_audio(generated), pipeline.sample_rate)(out / "direct.wav")
    width = max(s.shape[1] for s in systems)
    offsets = np.cumsum([0] + [s.shape[0] for s in systems])
    page = np.full((int(offsets[-1]), width), 255, dtype=np.uint8)
    for system, top in zip(systems, offsets):
        page[top : top + system.shape[0], : system.shape[1]] = system
    png_writer(page)(out / "systems.png")
    alignment["systems"] = [{"top": int(t), "height": int(s.shape[0])} for t, s in zip(offsets, systems)]
    alignment["width"], alignment["height"] = width, int(offsets[-1])
    atomic_write_text(out / "alignment.json", json.dumps(alignment))
    run = _describe("i2a", out, job)
    run["alignment"] = alignment
    return run
