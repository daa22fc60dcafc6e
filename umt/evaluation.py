"""Evaluate a model folder on held-out corpus excerpts: OMR, the cascade and direct image-to-audio.

One :class:`Excerpt` is a corpus record (``umt corpus build``): a system image with its LMX,
MIDI, audio and tempo. :func:`evaluate_image_to_audio` runs, on a list of them,

* **OMR** (image -> LMX): the symbol error rate over the corpus (:mod:`umt.metrics.ser`), scored
  by ``umt eval omr`` (:mod:`umt.evaluate`), whose files it leaves in ``OUT/omr``;
* **the cascade** (image -> LMX -> MusicXML -> MIDI at the excerpt's tempo -> M2A audio): note
  onset F1 of the notes read from the predicted score against the reference MIDI
  (:mod:`umt.metrics.transcription`, 50 ms onset tolerance), and the multi-scale mel distance of
  its audio to the reference recording;
* **reading** (with OMR): the teacher-forced loss of each reference LMX given its own image and
  given another excerpt's image (:func:`source_reliance`). A model that reads the image predicts
  its score far better from its own image; one that has learnt only LMX's grammar scores alike;
* **direct image-to-audio**: the mel distance of the generated audio to the reference recording,
  next to that of the reference recording passed through the audio tokenizer (encode + decode):
  the best a model that generates the right codes could reach with this tokenizer, and that of
  silence: what an output without information scores.

Mel distance is DAC's multi-scale log-mel L1 (:class:`umt.models.dac_discriminators.MelSpectrogramLoss`
with its default scales); audio is cut or zero-padded to the reference length first. Lower is
better; read it against the silence and tokenizer figures.

``umt demo`` runs this on its held-out excerpts; ``umt eval`` (:mod:`umt.evaluate`) is the
benchmark suite on prepared test sets.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umt.data.corpus_builder import MANIFEST
from umt.errors import InputError, UserError
from umt.inference import GenerationConfig, musicxml_to_notes, to_gray
from umt.metrics.image import ink_f1
from umt.metrics.transcription import transcription_metrics
from umt.models.dac_discriminators import MelSpectrogramLoss
from umt.tokenizers.audio import load_audio
from umt.tokenizers.image import to_uint8_image
from umt.tokenizers.lmx import delinearize
from umt.tokenizers.midi import notes_from_midi


@dataclass(frozen=True)
class Excerpt:
    """One held-out corpus excerpt (paths absolute)."""

    key: str
    image: Path
    lmx: Path
    midi: Path
    audio: Path | None
    tempo_qpm: float


def corpus_excerpts(corpus_dir: str | Path, split: str = "test", limit: int | None = None) -> list[Excerpt]:
    """The excerpts of ``split`` in a built corpus (its ``manifest.jsonl``), sorted by key."""

    corpus_dir = Path(corpus_dir)
    manifest = corpus_dir / MANIFEST
    if not manifest.is_file():
        raise UserError("not a built corpus (no manifest.jsonl); run `umt corpus build` first", corpus_dir)
    excerpts = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("split") != split or not record.get("lmx"):
            continue
        excerpts.append(
            Excerpt(
                key=record["key"],
                image=corpus_dir / record["png"],
                lmx=corpus_dir / record["lmx"],
                midi=corpus_dir / record["mid"],
                audio=corpus_dir / record["wav"] if record.get("wav") else None,
                tempo_qpm=float(record.get("tempo_qpm") or 100.0),
            )
        )
    excerpts.sort(key=lambda excerpt: excerpt.key)
    if not excerpts:
        raise UserError(f"the corpus has no {split!r} excerpts with LMX", manifest)
    return excerpts[:limit] if limit is not None else excerpts


@dataclass
class ExcerptResult:
    """What the model made of one excerpt, and its scores."""

    key: str
    gold_lmx: list[str]
    predicted_lmx: list[str] = field(default_factory=list)
    musicxml: str = ""
    repairs: int = 0
    reference_notes: list = field(default_factory=list)
    cascade_notes: list = field(default_factory=list)
    cascade_error: str = ""
    onset_f1: float = 0.0
    cascade_audio: np.ndarray | None = None
    direct_audio: np.ndarray | None = None
    reference_audio: np.ndarray | None = None
    tokenizer_audio: np.ndarray | None = None
    tokenizer_image: np.ndarray | None = None
    """The input image through the image tokenizer (encode + decode): what its codes keep."""
    image_ink_f1: float = 0.0
    """:func:`umt.metrics.image.ink_f1` of the preprocessed input and :attr:`tokenizer_image`."""
    mel_distance: dict[str, float] = field(default_factory=dict)


@dataclass
class Evaluation:
    """Corpus-level figures and the per-excerpt results behind them."""

    metrics: dict[str, float]
    excerpts: list[ExcerptResult]
    seconds: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "seconds": self.seconds,
            "excerpts": [
                {
                    "key": r.key,
                    "onset_f1": r.onset_f1,
                    "image_ink_f1": r.image_ink_f1,
                    "repairs": r.repairs,
                    "cascade_error": r.cascade_error,
                    "mel_distance": r.mel_distance,
                    "predicted_lmx": " ".join(r.predicted_lmx),
                }
                for r in self.excerpts
            ],
        }


class MelDistance:
    """DAC's multi-scale log-mel L1 between two mono signals (``estimate`` cut or padded to ``reference``)."""

    def __init__(self, sample_rate: int) -> None:
        self.loss = MelSpectrogramLoss(sample_rate=sample_rate)

    def __call__(self, estimate: np.ndarray, reference: np.ndarray) -> float:
        estimate = np.asarray(estimate, dtype=np.float32)[: len(reference)]
        estimate = np.pad(estimate, (0, len(reference) - len(estimate)))
        as_batch = [
            torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).view(1, 1, -1)
            for a in (estimate, reference)
        ]
        with torch.no_grad():
            return float(self.loss(*as_batch))


def read_lmx(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read LMX ({error})", path) from None


def _audio_or_none(pipeline: Any, rows: np.ndarray, name: str) -> np.ndarray | None:
    """Generated audio rows as a signal; None when the model generated no audio (EOS at once)."""
    try:
        return pipeline.rows_to_audio(rows, name)
    except InputError:
        return None


def evaluate_image_to_audio(
    pipeline: Any,
    excerpts: Sequence[Excerpt],
    out: str | Path,
    generation: Any = None,
    audio_generation: Any = None,
    tasks: Sequence[str] = ("omr", "cascade", "i2a"),
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Run OMR, the cascade and direct image-to-audio of ``pipeline`` (a
    :class:`umt.inference.TranslationPipeline`) on ``excerpts``; see the module docstring.

    ``generation`` (a :class:`umt.inference.GenerationConfig`, default greedy) is used for LMX and
    ``audio_generation`` (default: the same) for audio: codec tokens are usually sampled
    (``temperature`` 1, a ``top_p`` below 1), since greedy decoding of audio codes tends to repeat
    one frame. OMR is scored by ``umt eval omr``'s code, whose files (``metrics.json``,
    ``per_item.jsonl``, ``table.md``) go to ``out/omr``.
    """

    generation = generation or GenerationConfig()
    run = _Run(
        pipeline,
        list(excerpts),
        [ExcerptResult(key=e.key, gold_lmx=read_lmx(e.lmx)) for e in excerpts],
        progress or (lambda message: None),
        Path(out) / "omr",
    )
    run.metrics["excerpts"] = float(len(excerpts))
    sources = _image_round_trips(run)
    if "omr" in tasks or "cascade" in tasks:
        _omr(run, generation)
        run.metrics.update(source_reliance(pipeline, sources, [r.gold_lmx for r in run.results]))
    if "cascade" in tasks or "i2a" in tasks:
        run.mel = MelDistance(pipeline.sample_rate)
        _reference_audio(run)
    if "cascade" in tasks:
        _cascade(run, audio_generation or generation)
    if "i2a" in tasks:
        _direct_image_to_audio(run, sources, audio_generation or generation)
    for name in ("silence", "tokenizer", "cascade", "direct"):
        values = [r.mel_distance[name] for r in run.results if name in r.mel_distance]
        if values:
            run.metrics[f"mel_distance_{name}"] = float(np.mean(values))
    return Evaluation(metrics=run.metrics, excerpts=run.results, seconds=run.seconds)


@dataclass
class _Run:
    """What the stages of :func:`evaluate_image_to_audio` share."""

    pipeline: Any
    excerpts: list[Excerpt]
    results: list[ExcerptResult]
    say: Callable[[str], None]
    omr_out: Path
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    mel: Any = None


def _image_round_trips(run: _Run) -> list[np.ndarray]:
    """Each held-out system's tokens (the sources of OMR and I2A) and its tokenizer round trip."""

    sources = []
    for result, excerpt in zip(run.results, run.excerpts):
        x = run.pipeline.preprocess_image(to_gray(str(excerpt.image)))
        sources.append(run.pipeline.preprocessed_image_rows(x, str(excerpt.image)))
        result.tokenizer_image = run.pipeline.rows_to_image(sources[-1])
        result.image_ink_f1 = ink_f1(to_uint8_image(x[0]), result.tokenizer_image)
    run.metrics["image_round_trip_ink_f1"] = float(np.mean([r.image_ink_f1 for r in run.results]))
    return sources


def source_reliance(
    pipeline: Any, sources: Sequence[np.ndarray], gold_lmx: Sequence[Sequence[str]]
) -> dict[str, float]:
    """How much OMR leans on the image: the teacher-forced loss of each reference LMX given its
    own image rows (``omr_loss_own_image``) and given the next excerpt's (``omr_loss_other_image``),
    in nats a token. Empty below two excerpts, or when a reference is longer than the model's
    targets or holds a token outside its vocabulary (the SER still scores those)."""

    limit = int(pipeline.model.config.max_target_len) - 2
    try:
        targets = [pipeline.lmx_rows(tokens, "<reference LMX>") for tokens in gold_lmx]
    except InputError:
        return {}
    if len(sources) < 2 or any(len(t) > limit for t in targets):
        return {}
    others = [*sources[1:], sources[0]]
    return {
        "omr_loss_own_image": teacher_forced_loss(pipeline, "omr", sources, targets),
        "omr_loss_other_image": teacher_forced_loss(pipeline, "omr", others, targets),
    }


@torch.no_grad()
def teacher_forced_loss(
    pipeline: Any,
    task: str,
    sources: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    batch_size: int = 8,
) -> float:
    """Cross-entropy (nats a counted target token) of content rows ``targets[i] [T, K]`` given
    ``sources[i] [S, K]`` under ``task``, teacher-forced: the mean over every target token."""
    from umt.data.pipeline import collate
    from umt.tasks import get_task

    spec, model = get_task(task), pipeline.model
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for start in range(0, len(sources), batch_size):
        examples = [
            (s, t, spec.source, spec.target, 0)
            for s, t in zip(sources[start : start + batch_size], targets[start : start + batch_size])
        ]
        batch = {k: v.to(device) for k, v in collate(examples, pipeline.vocab).items()}
        loss, _ = model.loss(batch)
        counted = int(model.counted_targets(batch["tgt_mask"], batch["tgt_modality"]).sum())
        total += float(loss) * counted
        tokens += counted
    return total / max(tokens, 1)


def _omr(run: _Run, generation: Any) -> None:
    """OMR scored by ``umt eval omr`` (:mod:`umt.evaluate`) into ``run.omr_out``: the same scorer,
    files and SER; the predicted scores go on to the cascade."""
    from umt.evaluate.items import EvalItem
    from umt.evaluate.run import PER_ITEM, read_rows, run_eval
    from umt.evaluate.tasks import EvalContext

    run.say(f"OMR on {len(run.excerpts)} images (umt eval omr)")
    start = time.perf_counter()
    items = [EvalItem(e.key, "corpus", image=e.image, lmx=e.lmx) for e in run.excerpts]
    settings = {
        "task": "omr",
        "checkpoint": str(run.pipeline.name),
        "split": "test",
        "generation": {
            "max_len": generation.max_len,
            "seed": generation.seed,
            "repetition_penalty": generation.repetition_penalty,
        },
    }
    shutil.rmtree(run.omr_out, ignore_errors=True)  # always this model's score, never a cached one
    context = EvalContext(run.pipeline, generation, generation)
    figures = run_eval("omr", context, items, run.omr_out, settings, generation.batch_size, progress=False)
    rows = read_rows(run.omr_out / PER_ITEM)
    for result in run.results:
        row = rows[("corpus", result.key)]
        if "error" in row:
            raise UserError(f"OMR could not score {result.key}: {row['error']}")
        result.predicted_lmx = row["predicted"].split()
        score = delinearize(result.predicted_lmx)
        result.musicxml = score.musicxml
        result.repairs = score.dropped + score.repaired
    run.seconds["omr"] = time.perf_counter() - start
    corpus = figures["test_sets"]["corpus"]
    run.metrics["omr_ser"] = corpus["ser"]
    run.metrics["omr_ser_no_tuplets"] = corpus["ser_no_tuplets"]
    run.metrics["omr_repairs_per_excerpt"] = float(np.mean([r.repairs for r in run.results]))


def _reference_audio(run: _Run) -> None:
    """The reference recordings, silence's distance to them (the scale the other distances are read
    on) and the audio tokenizer's round trip of them."""

    pipeline, mel = run.pipeline, run.mel
    for result, excerpt in zip(run.results, run.excerpts):
        if excerpt.audio is not None:
            result.reference_audio = load_audio(excerpt.audio, pipeline.sample_rate)[0].numpy()
            result.mel_distance["silence"] = mel(np.zeros(1, np.float32), result.reference_audio)
    start = time.perf_counter()
    tokenizer = pipeline.audio_tokenizer
    device = next(tokenizer.codec.parameters()).device
    for result in run.results:
        if result.reference_audio is not None:
            with torch.no_grad():
                audio = torch.from_numpy(result.reference_audio)[None].to(device)
                rows = tokenizer.tokenize(audio, pipeline.vocab)
            result.tokenizer_audio = pipeline.rows_to_audio(rows)
            result.mel_distance["tokenizer"] = mel(result.tokenizer_audio, result.reference_audio)
    run.seconds["tokenizer_round_trip"] = time.perf_counter() - start


def _cascade(run: _Run, audio_generation: Any) -> None:
    """Predicted scores -> notes (onset F1 against the reference MIDI) -> M2A audio."""

    run.say("cascade: predicted scores -> MIDI -> audio")
    pipeline, start = run.pipeline, time.perf_counter()
    f1s = []
    for result, excerpt in zip(run.results, run.excerpts):
        result.reference_notes = notes_from_midi(excerpt.midi)
        try:
            result.cascade_notes = musicxml_to_notes(result.musicxml, excerpt.key, qpm=excerpt.tempo_qpm)
        except InputError as error:  # an unreadable or empty prediction scores 0
            result.cascade_error = str(error)
        result.onset_f1 = transcription_metrics(result.reference_notes, result.cascade_notes)["onset_f1"]
        f1s.append(result.onset_f1)
    playable = [r for r in run.results if r.cascade_notes]
    segments = [pipeline.midi_segments(r.cascade_notes, r.key) for r in playable]
    outputs = iter(pipeline.generate("m2a", [s for per in segments for s in per], audio_generation))
    for result, per in zip(playable, segments):
        pieces = [_audio_or_none(pipeline, next(outputs).rows, result.key) for _ in per]
        if all(piece is not None for piece in pieces):
            result.cascade_audio = pipeline.join_segments_audio(pieces)
            if result.reference_audio is not None:
                result.mel_distance["cascade"] = run.mel(result.cascade_audio, result.reference_audio)
    run.seconds["cascade"] = time.perf_counter() - start
    run.metrics["cascade_onset_f1"] = float(np.mean(f1s)) if f1s else 0.0
    run.metrics["cascade_readable_scores"] = float(len(playable))
    run.metrics["cascade_audio_made"] = float(sum(r.cascade_audio is not None for r in run.results))


def _direct_image_to_audio(run: _Run, sources: list[np.ndarray], audio_generation: Any) -> None:
    run.say(f"direct image-to-audio on {len(sources)} images")
    start = time.perf_counter()
    for result, output in zip(run.results, run.pipeline.generate("i2a", sources, audio_generation)):
        result.direct_audio = _audio_or_none(run.pipeline, output.rows, result.key)
        if result.direct_audio is not None and result.reference_audio is not None:
            result.mel_distance["direct"] = run.mel(result.direct_audio, result.reference_audio)
    run.seconds["i2a"] = time.perf_counter() - start
    run.metrics["direct_audio_made"] = float(sum(r.direct_audio is not None for r in run.results))
