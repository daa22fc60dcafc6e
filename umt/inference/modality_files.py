"""Each modality's files: how an input file becomes units (:meth:`read_units`) and generated units become
files (:meth:`output_files`). The modality specs name these classes (``ModalitySpec.files``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile
from PIL import Image

from umt.errors import InputError
from umt.inference.inputs import load_systems, read_lmx_systems, stack_images
from umt.modalities.spec import FileWriter, ModalityFiles, Units
from umt.tokenizers.lmx import delinearize, format_lmx
from umt.tokenizers.midi import midi_bytes_from_notes
from umt.utils.io import atomic_path, atomic_write, atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from umt.inference.pipeline import TranslationPipeline
    from umt.tokenizers.lmx import Delinearized


def _timed(units: list[Any], pipeline: TranslationPipeline) -> Units:
    """Consecutive windows of the model's length, each with its start in seconds."""
    return Units(units, [i * pipeline.window_seconds for i in range(len(units))])


class ImageFiles(ModalityFiles):
    """A page or PDF is cut into its systems, one unit each; generated systems are stacked into a PNG."""

    def read_units(self, path: Path, pipeline: TranslationPipeline) -> Units:
        self.spec.check_suffix(path)
        return Units([pipeline.image_rows(system, str(path)) for system in load_systems(path)])

    def output_files(
        self, outputs: list[Any], pipeline: TranslationPipeline, source: Units, name: str
    ) -> dict[str, FileWriter]:
        return {".png": png_writer(stack_images([pipeline.rows_to_image(rows, name) for rows in outputs]))}


class AudioFiles(ModalityFiles):
    """A recording is cut into windows of the model's length (20 s), each encoded on its own as the
    training clips were. Generated audio is joined in time: units that came with start times (MIDI
    segments, audio windows) are placed at them, others follow one another."""

    def read_units(self, path: Path, pipeline: TranslationPipeline) -> Units:
        self.spec.check_suffix(path)
        return _timed(pipeline.audio_windows(pipeline.load_audio(path, str(path)), str(path)), pipeline)

    def output_files(
        self, outputs: list[Any], pipeline: TranslationPipeline, source: Units, name: str
    ) -> dict[str, FileWriter]:
        if source.starts is not None:
            audio = pipeline.segments_audio(outputs, name)
        else:
            audio = np.concatenate([pipeline.rows_to_audio(rows, name) for rows in outputs])
        return {".wav": wav_writer(audio, pipeline.sample_rate)}


class LmxFiles(ModalityFiles):
    """A MusicXML score (or an LMX text file) is read as one unit per system, a system longer than the
    model reads cut at measures; generated systems become one MusicXML score (a system break
    between them) and the LMX text."""

    def read_units(self, path: Path, pipeline: TranslationPipeline) -> Units:
        self.spec.check_suffix(path)
        return Units(pipeline.lmx_units(read_lmx_systems(path), str(path)))

    def output_files(
        self, outputs: list[Any], pipeline: TranslationPipeline, source: Units, name: str
    ) -> dict[str, FileWriter]:
        return score_files([pipeline.rows_to_lmx(rows) for rows in outputs])[0]


class TextFiles(ModalityFiles):
    """A ``.txt`` file is one unit (a prompt); so is an input that is no file but the text itself
    (``umt translate --task t2i "a music score, key is A major"``). Generated text is one ``.txt``."""

    def read_units(self, path: Path, pipeline: TranslationPipeline) -> Units:
        from umt.modalities.text import MAX_TEXT_BYTES
        from umt.tokenizers.rule_based import TextFileTokenizer

        if path.exists():
            self.spec.check_suffix(path)
            text = TextFileTokenizer().load(path)
        else:
            text = str(path).strip()
            if not text or len(text.encode("utf-8")) > MAX_TEXT_BYTES:
                raise InputError(f"a prompt must hold 1 to {MAX_TEXT_BYTES} bytes", path)
        return Units([pipeline.vocab.text_rows(text)])

    def output_files(
        self, outputs: list[Any], pipeline: TranslationPipeline, source: Units, name: str
    ) -> dict[str, FileWriter]:
        text = "\n".join(pipeline.vocab.rows_text(rows) for rows in outputs) + "\n"
        return {".txt": lambda path: atomic_write_text(path, text)}


class MidiFiles(ModalityFiles):
    """A MIDI file is read as one unit per segment of the model's length (20 s); generated segments
    are decoded together (tie sections carry notes across them), each at its unit's start time."""

    def read_units(self, path: Path, pipeline: TranslationPipeline) -> Units:
        self.spec.check_suffix(path)
        return _timed(pipeline.midi_segments(pipeline.load_notes(path, str(path)), str(path)), pipeline)

    def output_files(
        self, outputs: list[Any], pipeline: TranslationPipeline, source: Units, name: str
    ) -> dict[str, FileWriter]:
        return {".mid": midi_writer(pipeline.rows_to_notes(outputs, source.starts).notes)}


def png_writer(image: np.ndarray) -> FileWriter:
    def write(path: Path) -> None:
        with atomic_write(path, "wb") as handle:
            Image.fromarray(image).save(handle, format="PNG")

    return write


def wav_writer(audio: np.ndarray, sample_rate: int) -> FileWriter:
    def write(path: Path) -> None:
        with atomic_path(path, suffix=".wav") as tmp:
            soundfile.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV")

    return write


def text_writer(text: str) -> FileWriter:
    def write(path: Path) -> None:
        atomic_write_text(path, text)

    return write


def midi_writer(notes: list) -> FileWriter:
    def write(path: Path) -> None:
        atomic_write_bytes(path, midi_bytes_from_notes(notes))

    return write


def score_files(tokens_per_unit: Sequence[Sequence[str]]) -> tuple[dict[str, FileWriter], Delinearized]:
    """LMX systems -> ``.musicxml`` (one part, a system break between the systems of a page) and
    ``.lmx`` (one line per system) writers, and the score."""
    systems = [list(tokens) for tokens in tokens_per_unit]
    score = delinearize(systems)
    return {".musicxml": text_writer(score.musicxml), ".lmx": text_writer(format_lmx(systems))}, score
