"""Per-item scores of each task (``umt eval TASK``); :mod:`umt.evaluate.run` batches and caches them.

Each scorer takes a batch of :class:`~umt.evaluate.items.EvalItem` and returns one JSON-ready dict
per item (its key and test set, its figures, and what :mod:`umt.evaluate.report` needs to
aggregate them):

* ``omr`` image -> LMX: edit distances and gold lengths for the corpus SER (OLiMPiC/Zeus).
* ``amt`` audio -> MIDI on **whole pieces** (the windows stitched through their tie sections by
  :meth:`~umt.inference.TranslationPipeline.transcribe`): mir_eval's note scores, flat and
  multi-instrument, and onset F1 per instrument family.
* ``i2a`` image -> audio: the generated and the reference audio both transcribed by the
  transcriber, aligned by DTW, note onset F1 at 50/100/200 ms; the same against the reference
  MIDI where the item has one.
* ``m2a`` MIDI -> audio: the generated audio transcribed, onset F1 against the MIDI (aligned).
* ``a2i`` audio -> image: the generated systems read by an OMR model, pitch and duration token
  EMD against the gold LMX; the tokenizer baseline (the gold image through the image tokenizer,
  read by the same OMR model).
* ``l2i`` LMX -> image: the engraving read back by an OMR model, SER against the input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umt.errors import InputError, UserError
from umt.evaluate.items import EvalItem
from umt.metrics.alignment import dtw_onset_f1, onset_f1
from umt.metrics.emd import lmx_emd
from umt.metrics.ser import symbol_error_rate
from umt.metrics.transcription import family_onset_f1, transcription_metrics
from umt.tokenizers.midi import Note, notes_from_midi

Transcriber = Callable[[Sequence[np.ndarray]], list[list[Note]]]
"""Mono audio arrays at the model's sample rate -> their notes (AMT)."""
Reader = Callable[[Sequence[np.ndarray]], list[list[str]]]
"""System images ``uint8 [H, W]`` -> their LMX tokens (OMR)."""

NEEDS = {
    "omr": ("image", "lmx"),
    "amt": ("audio", "midi"),
    "i2a": ("image", "audio"),
    "m2a": ("midi",),
    "a2i": ("audio", "lmx"),
    "l2i": ("lmx",),
}
"""The files each task reads from an item."""


@dataclass
class EvalContext:
    """What the scorers share: the model, how to generate, and the helper models."""

    pipeline: Any
    generation: Any
    audio_generation: Any
    transcriber: Transcriber | None = None
    reader: Reader | None = None
    cache_dir: Path | None = None
    """Where generated audio's embedding sums are kept for the FAD (:func:`keep_fad_sums`)."""

    def need_transcriber(self, task: str) -> Transcriber:
        if self.transcriber is None:
            raise UserError(f"{task} is scored by transcribing audio: give --transcriber AMT_MODEL")
        return self.transcriber

    def need_reader(self, task: str) -> Reader:
        if self.reader is None:
            raise UserError(f"{task} is scored by reading images back: give --omr OMR_MODEL")
        return self.reader


def read_lmx_tokens(item: EvalItem) -> list[str]:
    assert item.lmx is not None
    try:
        return item.lmx.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read LMX ({error})", item.lmx) from None


def _base(item: EvalItem) -> dict[str, Any]:
    return {"key": item.key, "test_set": item.test_set}


def _ser_counts(gold: list[str], predicted: list[str]) -> dict[str, Any]:
    ser = symbol_error_rate([gold], [predicted]) if gold else None
    return {
        "errors": ser.errors if ser else len(predicted),
        "gold_tokens": ser.gold_tokens if ser else 0,
        "errors_no_tuplets": ser.errors_no_tuplets if ser else len(predicted),
        "gold_tokens_no_tuplets": ser.gold_tokens_no_tuplets if ser else 0,
        "predicted": " ".join(predicted),
    }


def score_omr(ctx: EvalContext, items: Sequence[EvalItem]) -> list[dict[str, Any]]:
    p = ctx.pipeline
    sources = [p.image_file_rows(item.image) for item in items]
    outputs = p.generate("omr", sources, ctx.generation)
    return [
        {**_base(item), **_ser_counts(read_lmx_tokens(item), p.rows_to_lmx(out.rows))}
        for item, out in zip(items, outputs)
    ]


def score_amt(ctx: EvalContext, items: Sequence[EvalItem]) -> list[dict[str, Any]]:
    estimates = ctx.pipeline.transcribe([str(item.audio) for item in items], ctx.generation)
    results = []
    for item, notes in zip(items, estimates):
        reference = notes_from_midi(item.midi)
        scores = transcription_metrics(reference, notes)
        families = {f"family_{name}_onset_f1": f1 for name, f1 in family_onset_f1(reference, notes).items()}
        results.append(
            {**_base(item), **scores, **families, "notes": len(notes), "reference_notes": len(reference)}
        )
    return results


def _decoded(
    convert: Callable[[np.ndarray, str], np.ndarray], rows: np.ndarray, name: str
) -> np.ndarray | None:
    """Generated rows as audio or an image; None when the model made nothing decodable (EOS at
    once, no complete image column): the item then scores as empty, not as a failure."""
    try:
        return convert(rows, name)
    except InputError:
        return None


def fad_sums_path(cache_dir: Path, item: EvalItem) -> Path:
    import hashlib

    name = hashlib.sha1(f"{item.test_set}\0{item.key}".encode()).hexdigest()[:20]
    return cache_dir / "fad" / f"{name}.npz"


def keep_fad_sums(ctx: EvalContext, item: EvalItem, audio: np.ndarray | None) -> None:
    """Store the generated audio's embedding sums (:func:`umt.metrics.fad.frame_sums`) for the
    test set's FAD, computed when the figures are aggregated."""
    if ctx.cache_dir is None or audio is None or len(audio) == 0:
        return
    from umt.metrics.fad import frame_sums, log_mel_frames
    from umt.utils.io import atomic_path

    count, total, outer = frame_sums(log_mel_frames(audio, ctx.pipeline.sample_rate))
    path = fad_sums_path(ctx.cache_dir, item)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, count=count, total=total, outer=outer)


def score_i2a(ctx: EvalContext, items: Sequence[EvalItem]) -> list[dict[str, Any]]:
    p, transcribe = ctx.pipeline, ctx.need_transcriber("i2a")
    sources = [p.image_file_rows(item.image) for item in items]
    generated = [
        _decoded(p.rows_to_audio, out.rows, item.key)
        for item, out in zip(items, p.generate("i2a", sources, ctx.audio_generation))
    ]
    references = [p.load_audio(str(item.audio), item.key)[0].numpy() for item in items]
    made = [audio for audio in generated if audio is not None]
    notes = iter(transcribe([*made, *references]))
    made_notes = {id(audio): next(notes) for audio in made}
    reference_notes = [next(notes) for _ in references]
    results = []
    for item, audio, reference in zip(items, generated, reference_notes):
        keep_fad_sums(ctx, item, audio)
        estimate = made_notes.get(id(audio), []) if audio is not None else []
        row = {**_base(item), "audio_made": audio is not None, **dtw_onset_f1(reference, estimate)}
        if item.midi is not None:
            row.update(
                {f"midi_{k}": v for k, v in dtw_onset_f1(notes_from_midi(item.midi), estimate).items()}
            )
        results.append(row)
    return results


def score_m2a(ctx: EvalContext, items: Sequence[EvalItem]) -> list[dict[str, Any]]:
    p, transcribe = ctx.pipeline, ctx.need_transcriber("m2a")
    references = [notes_from_midi(item.midi) for item in items]
    audios = p.midi_to_audio(references, ctx.audio_generation)
    estimates = transcribe(audios)
    for item, audio in zip(items, audios):
        keep_fad_sums(ctx, item, audio)
    return [
        {**_base(item), **onset_f1(reference, estimate)}
        for item, reference, estimate in zip(items, references, estimates)
    ]


def score_a2i(ctx: EvalContext, items: Sequence[EvalItem]) -> list[dict[str, Any]]:
    p, read = ctx.pipeline, ctx.need_reader("a2i")
    per_item = [p.audio_windows(p.load_audio(str(item.audio), item.key), item.key) for item in items]
    outputs = iter(p.generate("a2i", [w for windows in per_item for w in windows], ctx.generation))
    results = []
    for item, windows in zip(items, per_item):
        images = [_decoded(p.rows_to_image, next(outputs).rows, item.key) for _ in windows]
        systems = [image for image in images if image is not None]
        predicted = [token for tokens in read_each(read, systems) for token in tokens]
        gold = read_lmx_tokens(item)
        row = {**_base(item), "systems_made": len(systems), **lmx_emd(predicted, gold)}
        if item.image is not None:
            row.update({f"tokenizer_{k}": v for k, v in lmx_emd(_tokenizer_reading(ctx, item), gold).items()})
        results.append(row)
    return results


def read_each(read: Reader, images: Sequence[np.ndarray]) -> list[list[str]]:
    """The reader's tokens for each image, in one batch; an image it cannot read (a generated one
    too tall for its tokenizer, say) reads as nothing rather than failing its neighbours."""
    if not images:
        return []
    try:
        return read(images)
    except InputError:
        readings = []
        for image in images:
            try:
                readings += read([image])
            except InputError:
                readings.append([])
        return readings


def _tokenizer_reading(ctx: EvalContext, item: EvalItem) -> list[str]:
    """The OMR model's reading of the gold image through the A2I model's image tokenizer: the best
    an A2I model whose codes were right could score (the paper's reconstruction baseline)."""
    p = ctx.pipeline
    round_trip = p.rows_to_image(p.image_file_rows(item.image), item.key)
    return read_each(ctx.need_reader("a2i"), [round_trip])[0]


def score_l2i(ctx: EvalContext, items: Sequence[EvalItem]) -> list[dict[str, Any]]:
    p, read = ctx.pipeline, ctx.need_reader("l2i")
    golds = [read_lmx_tokens(item) for item in items]
    images = p.lmx_to_image(golds, ctx.generation)
    return [
        {**_base(item), **_ser_counts(gold, predicted)}
        for item, gold, predicted in zip(items, golds, read_each(read, images))
    ]


SCORERS: dict[str, Callable[[EvalContext, Sequence[EvalItem]], list[dict[str, Any]]]] = {
    "omr": score_omr,
    "amt": score_amt,
    "i2a": score_i2a,
    "m2a": score_m2a,
    "a2i": score_a2i,
    "l2i": score_l2i,
}
