"""Inference: an exported model folder -> translations of score images, audio, MIDI and MusicXML.

:class:`TranslationPipeline` wraps a :class:`~umt.models.translator.Translator` restored by
:func:`umt.pretrained.from_pretrained` with the tokenizers stored in (or given for) its folder.
Sources are framed exactly as training frames them (:func:`umt.data.pipeline.collate`: the
modality's SOS row, the content rows, its EOS row; PAD to the right), translated in batches
(inputs sorted by length, batched, order restored) and decoded per target modality.

Units. The model translates *units* of the size it was trained on; inputs are cut into them and the
outputs put back together:

* score images: one unit per system (a page is split into systems by
  :func:`umt.data.systems.split_systems`, a PDF into pages first);
* audio: one unit per ``window_seconds`` window (20 s, 1723 audio token rows at 44.1 kHz / hop 512);
  transcriptions of consecutive windows are stitched by the MIDI decoder (tie sections), generated
  audio is concatenated;
* MIDI: one unit per 20 s segment of :func:`umt.tokenizers.midi.encode_notes` (each segment's rows
  end with the segment's EOS id, as the baked shards hold them);
* MusicXML / LMX: one unit per system (:func:`umt.tokenizers.lmx.linearize_systems`), a system
  longer than the model's source length cut at measure boundaries.

Sampling is deterministic for a given ``seed`` and batch size (one ``torch.Generator`` drives the
whole run); greedy decoding (``temperature == 0``) gives the same outputs for any batch size.

The file-level runner :func:`translate_files` (used by ``umt translate`` and ``infer.py``) reads
the inputs, reports a bad input as one line and goes on with the others, and writes each input's
outputs atomically once everything for it has succeeded.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from umt.errors import CheckpointError, InputError, UserError
from umt.modalities import get_spec
from umt.modalities.image import PDF_SUFFIXES
from umt.modalities.lmx import LMX_TEXT_SUFFIXES
from umt.modalities.spec import FileWriter, Units
from umt.tasks import CASCADE_TASK, get_task
from umt.tasks import TASKS as REGISTERED_TASKS
from umt.vocab import Vocabulary

if TYPE_CHECKING:
    from umt.tokenizers.audio import AudioTokenizer
    from umt.tokenizers.image import ImageTokenizer
    from umt.tokenizers.lmx import Delinearized
    from umt.tokenizers.midi import Note


def file_tasks() -> tuple[str, ...]:
    """The tasks :func:`translate_files` runs: every registered task, and the cascade."""
    return (*REGISTERED_TASKS.names(), CASCADE_TASK)


WINDOW_SECONDS = 20.0
"""Length of the audio windows and MIDI segments the paper's models are trained on."""
SYSTEM_GAP_PX = 16
"""White rows between systems when generated system images are stacked into one page."""


@dataclass
class GenerationConfig:
    """How outputs are generated (see :meth:`umt.models.translator.Translator.generate`)."""

    temperature: float = 0.0
    """0 = greedy."""
    top_k: int = 0
    top_p: float = 1.0
    max_len: int | None = None
    """Largest output length in rows, SOS and EOS included (``None``: the model's ``max_target_len``)."""
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise UserError(f"top-k must be >= 0, got {self.top_k}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {self.batch_size}")
        if self.max_len is not None and self.max_len < 2:
            raise UserError(f"max-len must be >= 2 (SOS and one more row), got {self.max_len}")


def select_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (CUDA if available, else Apple MPS, else CPU) or an explicit torch device name."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"unknown device {name!r} ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available")
    return device


# ============================================================================ inputs
def to_gray(image: Any, name: str = "<image>") -> np.ndarray:
    """A path, PIL image or array (``[H, W]``, ``[H, W, 3|4]``) -> grayscale ``uint8 [H, W]``."""
    from umt.tokenizers.image import read_image

    if isinstance(image, str | Path):
        return read_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.asarray(image.convert("L"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        from PIL import Image

        array = np.asarray(Image.fromarray(array.astype(np.uint8)).convert("L"))
    if array.ndim != 2 or array.size == 0:
        raise InputError(f"expected a grayscale [H, W] or colour [H, W, 3] image, got {array.shape}", name)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return array


def load_systems(source: Any, split_pages: bool = True) -> list[np.ndarray]:
    """The system images of an input: a PNG/JPG file or array (a page is split into its systems, a
    single system passes through), or a PDF (every page, split). ``uint8 [H, W]`` each, in reading
    order."""
    from umt.data.systems import read_pdf_pages, split_systems

    if isinstance(source, str | Path) and Path(source).suffix.lower() in PDF_SUFFIXES:
        pages = read_pdf_pages(source)
    else:
        pages = [to_gray(source)]
    if not split_pages:
        return pages
    return [system for page in pages for system in split_systems(page)]


def read_lmx_systems(path: str | Path) -> list[list[str]]:
    """The LMX systems of a MusicXML/MXL file or an LMX text file (unknown tokens refused)."""
    from umt.tokenizers.lmx import linearize_systems, parse_lmx_text
    from umt.tokenizers.lmx_vocabulary import LMX_TOKENS

    path = Path(path)
    if path.suffix.lower() in LMX_TEXT_SUFFIXES:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError("no such file", path) from None
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"cannot read LMX text ({error})", path) from None
        systems = parse_lmx_text(text)
        known = set(LMX_TOKENS)
        for system in systems:
            unknown = [token for token in system if token not in known]
            if unknown:
                raise InputError(f"unknown LMX token {unknown[0]!r}", path)
    else:
        systems = linearize_systems(path)
    systems = [system for system in systems if system]
    if not systems:
        raise InputError("holds no music (no LMX tokens)", path)
    return systems


def split_measures(tokens: Sequence[str], limit: int) -> list[list[str]]:
    """Cut an LMX token list at ``measure`` tokens into pieces of at most ``limit`` tokens (a single
    measure longer than ``limit`` is cut where it must)."""
    measures: list[list[str]] = []
    for token in tokens:
        if token == "measure" or not measures:
            measures.append([])
        measures[-1].append(token)
    pieces: list[list[str]] = [[]]
    for measure in measures:
        if pieces[-1] and len(pieces[-1]) + len(measure) > limit:
            pieces.append([])
        pieces[-1].extend(measure)
    out = []
    for piece in pieces:
        out.extend(piece[i : i + limit] for i in range(0, len(piece), limit))
    return [piece for piece in out if piece]


def notes_from_pretty_midi(midi: Any) -> list[Note]:
    """The notes of a ``pretty_midi.PrettyMIDI`` as :class:`umt.tokenizers.midi.Note` s."""
    from umt.tokenizers.midi import Note, sort_notes

    notes = [
        Note(n.pitch, instrument.program, instrument.is_drum, float(n.start), float(n.end), n.velocity)
        for instrument in midi.instruments
        for n in instrument.notes
    ]
    return sort_notes(notes)


def musicxml_to_notes(musicxml: str, name: str = "<musicxml>", qpm: float | None = None) -> list[Note]:
    """MusicXML text -> notes at ``qpm`` quarter notes per minute (default: the score's own tempo;
    music21 + :func:`umt.data.synth.score_to_midi`)."""
    from music21 import converter, stream

    from umt.data.excerpts import tempo_at
    from umt.data.synth import score_to_midi

    try:
        score = converter.parseData(musicxml, format="musicxml")
    except Exception as error:  # music21 raises many types for odd documents
        raise InputError(
            f"music21 cannot read the MusicXML ({type(error).__name__}: {error})", name
        ) from None
    if isinstance(score, stream.Opus):
        score = score.scores[0] if score.scores else None
    if not isinstance(score, stream.Score) or not score.parts:
        raise InputError("the MusicXML has no parts", name)
    notes = notes_from_pretty_midi(score_to_midi(score, tempo_at(score, 0.0) if qpm is None else qpm))
    if not notes:
        raise InputError("the MusicXML holds no notes", name)
    return notes


# ========================================================================== pipeline
@dataclass
class Generated:
    """One unit's output: content rows ``[T, K]`` (no SOS / EOS) and whether EOS ended it."""

    rows: np.ndarray
    finished: bool


@dataclass
class CascadeResult:
    """What :meth:`TranslationPipeline.cascade_image_to_audio` makes of one input."""

    score: Delinearized
    notes: list[Note]
    audio: np.ndarray
    """float32 mono at the audio tokenizer's sample rate."""


class TranslationPipeline:
    """A Translator with its vocabulary and tokenizers, ready to translate files or arrays."""

    def __init__(
        self,
        model: torch.nn.Module,
        vocab: Vocabulary,
        tasks: Sequence[str] = (),
        image_tokenizer: ImageTokenizer | None = None,
        audio_tokenizer: AudioTokenizer | None = None,
        device: str | torch.device = "cpu",
        name: str = "model",
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self.device = select_device(device)
        self.model = model.to(self.device).eval()
        self.vocab = vocab
        self.tasks = tuple(tasks)
        self.image_tokenizer = image_tokenizer
        self.audio_tokenizer = audio_tokenizer
        self.name = name
        self.window_seconds = float(window_seconds)
        if image_tokenizer is not None:
            check_image_tokenizer(image_tokenizer, vocab, name)
            image_tokenizer.model.to(self.device)
        if audio_tokenizer is not None:
            check_audio_tokenizer(audio_tokenizer, vocab, name)
            audio_tokenizer.codec.to(self.device)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: str | torch.device = "auto",
        image_tokenizer: str | Path | ImageTokenizer | None = None,
        audio_tokenizer: str | Path | AudioTokenizer | None = None,
        window_seconds: float = WINDOW_SECONDS,
    ) -> TranslationPipeline:
        """An exported model folder (:func:`umt.pretrained.export_checkpoint`) with its tokenizers.

        Tokenizers come from the folder's ``tokenizers/<modality>/`` unless given (an object or a
        folder). A tokenizer whose fingerprint differs from the one the model was trained with, or
        whose codebooks do not fit the model's vocabulary, is refused with a CheckpointError.
        """
        from umt.pretrained import from_pretrained, read_config
        from umt.vocab import vocabulary_from_dict

        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError("no such model folder", directory)
        config = read_config(directory)
        vocab = vocabulary_from_dict(config["vocab"])
        stored = config.get("tokenizers") or {}
        tokenizers: dict[str, Any] = {}
        for modality, given in (("image", image_tokenizer), ("audio", audio_tokenizer)):
            if given is None and stored.get(modality, {}).get("path"):
                given = directory / stored[modality]["path"]
            if isinstance(given, str | Path):
                given = _load_tokenizer(modality, Path(given))
            if given is not None:
                tokenizers[modality] = given
        fingerprints = {modality: tok.fingerprint for modality, tok in tokenizers.items()}
        model = from_pretrained(directory, tokenizer_fingerprints=fingerprints)
        return cls(
            model,
            vocab,
            tasks=config.get("tasks") or (),
            image_tokenizer=tokenizers.get("image"),
            audio_tokenizer=tokenizers.get("audio"),
            device=device,
            name=str(directory),
            window_seconds=window_seconds,
        )

    # -------------------------------------------------------------- properties
    @property
    def sample_rate(self) -> int:
        return self._audio().sample_rate

    def check_task(self, task: str) -> None:
        """Refuse a task the model was not trained for (when the folder lists its tasks)."""
        if task not in REGISTERED_TASKS:
            raise UserError(f"unknown task {task!r} (tasks: {', '.join(REGISTERED_TASKS)})")
        if self.tasks and task not in self.tasks:
            raise CheckpointError(f"the model was trained for {', '.join(self.tasks)}, not {task}", self.name)
        spec = get_task(task)
        for modality in (spec.source, spec.target):
            self.vocab.spec(modality)  # the model's vocabulary holds it
            if modality == "image":
                self._image()
            elif modality == "audio":
                self._audio()

    def _image(self) -> ImageTokenizer:
        if self.image_tokenizer is None:
            raise CheckpointError(
                "the model folder has no image tokenizer (tokenizers/image); give one", self.name
            )
        return self.image_tokenizer

    def _audio(self) -> AudioTokenizer:
        if self.audio_tokenizer is None:
            raise CheckpointError(
                "the model folder has no audio tokenizer (tokenizers/audio); give one", self.name
            )
        return self.audio_tokenizer

    @property
    def max_source_rows(self) -> int:
        """Most content rows a source may have (the model's ``max_source_len`` less SOS and EOS)."""
        return int(self.model.config.max_source_len) - 2

    def _check_source(self, rows: np.ndarray, what: str, name: str) -> np.ndarray:
        if len(rows) > self.max_source_rows:
            raise InputError(
                f"{what} is {len(rows)} token rows long; the model reads at most {self.max_source_rows}",
                name,
            )
        return rows

    # ------------------------------------------------------------------ encoding
    def preprocess_image(self, gray: np.ndarray) -> torch.Tensor:
        """One system image ``uint8 [H, W]`` -> the image tokenizer's input ``float32 [1, Hc, Wc]``
        in [-1, 1] (staff height normalised, padded to its grid)."""
        from umt.data.systems import staff_height as fallback_staff_height
        from umt.tokenizers.image import measure_staff_height, preprocess

        config = self._image().preprocess_config
        staff_height = None
        if config.measure_staff_height:
            # The tokenizer's own measure first (what baking used), else the line-centre distance.
            staff_height = measure_staff_height(gray) or fallback_staff_height(gray)
        return preprocess(gray, config, staff_height)

    def image_rows(self, gray: np.ndarray, name: str = "<image>") -> np.ndarray:
        """One system image ``uint8 [H, W]`` -> content rows ``[T, K]`` (height token first)."""
        return self.preprocessed_image_rows(self.preprocess_image(gray), name)

    def preprocessed_image_rows(self, x: torch.Tensor, name: str = "<image>") -> np.ndarray:
        """:meth:`preprocess_image`'s output -> content rows ``[T, K]`` (height token first)."""
        try:
            rows = self._image().tokenize(x, self.vocab)
        except ValueError as error:
            raise InputError(str(error), name) from None
        return self._check_source(rows, "the system image", name)

    def load_audio(self, source: Any, name: str = "<audio>") -> torch.Tensor:
        """A path, or a mono float array at :attr:`sample_rate` (``[T]`` or ``[1, T]``), or a pair
        ``(array, rate)`` -> mono ``float32 [1, T]`` at :attr:`sample_rate`."""
        from umt.tokenizers.audio import resample

        tokenizer = self._audio()
        if isinstance(source, str | Path):
            return tokenizer.load(source)
        rate = tokenizer.sample_rate
        if isinstance(source, tuple) and len(source) == 2:
            source, rate = source
        array = np.asarray(source, dtype=np.float32)
        if array.ndim == 2 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 1 or array.size == 0:
            raise InputError(f"expected mono audio [T], got shape {array.shape}", name)
        if not np.isfinite(array).all():
            raise InputError("audio holds NaN or infinite samples", name)
        if int(rate) != tokenizer.sample_rate:
            array = resample(array, int(rate), tokenizer.sample_rate)
        return torch.from_numpy(np.ascontiguousarray(array)).reshape(1, -1)

    def audio_windows(self, audio: torch.Tensor, name: str = "<audio>") -> list[np.ndarray]:
        """Mono audio ``[1, T]`` -> content rows ``[F, K]`` of each ``window_seconds`` window.

        Each window is encoded on its own (as the training clips were); a last window shorter than
        one codec frame is left out unless it is the only one.
        """
        tokenizer = self._audio()
        window = round(self.window_seconds * tokenizer.sample_rate)
        length = audio.shape[-1]
        if length == 0:
            raise InputError("audio holds no samples", name)
        device = next(tokenizer.codec.parameters()).device
        out = []
        for start in range(0, length, window):
            piece = audio[..., start : start + window]
            if out and piece.shape[-1] < tokenizer.hop_length:
                break
            rows = tokenizer.tokenize(piece.to(device), self.vocab)
            out.append(self._check_source(rows, f"audio window {len(out)}", name))
        return out

    def lmx_rows(self, tokens: Sequence[str], name: str = "<lmx>") -> np.ndarray:
        """LMX tokens -> content rows ``[T, K]``."""
        try:
            ids = [self.vocab.lmx_id(token) for token in tokens]
        except ValueError as error:
            raise InputError(str(error), name) from None
        return self._check_source(self.vocab.single_stream_rows(ids), "the LMX system", name)

    def lmx_units(self, systems: Sequence[Sequence[str]], name: str = "<lmx>") -> list[np.ndarray]:
        """LMX systems -> content rows per unit (a system too long for the model cut at measures)."""
        units = []
        for system in systems:
            for piece in split_measures(system, self.max_source_rows):
                units.append(self.lmx_rows(piece, name))
        if not units:
            raise InputError("holds no music (no LMX tokens)", name)
        return units

    def midi_segments(self, notes: Sequence[Note], name: str = "<midi>") -> list[np.ndarray]:
        """Notes -> content rows of each ``window_seconds`` segment (each ending with its EOS id)."""
        from umt.tokenizers.midi import encode_notes

        if not notes:
            raise InputError("holds no notes", name)
        segments = encode_notes(notes, self.vocab, self.window_seconds)
        return [
            self._check_source(self.vocab.single_stream_rows(ids), f"MIDI segment {i}", name)
            for i, ids in enumerate(segments)
        ]

    def load_notes(self, source: Any, name: str = "<midi>") -> list[Note]:
        """A MIDI path or bytes, a ``pretty_midi.PrettyMIDI``, or a list of notes -> notes."""
        from umt.tokenizers.midi import notes_from_midi

        if isinstance(source, str | Path | bytes):
            return notes_from_midi(source)
        if hasattr(source, "instruments"):
            return notes_from_pretty_midi(source)
        return list(source)

    # ------------------------------------------------------------------ decoding
    def rows_to_lmx(self, rows: np.ndarray) -> list[str]:
        """Generated content rows -> LMX tokens (ids of other kinds are left out)."""
        lmx = self.vocab["lmx/token"]
        return [self.vocab.lmx_token(int(i)) for i in np.asarray(rows)[:, 0] if lmx.contains(int(i))]

    def rows_to_notes(self, windows: Sequence[np.ndarray], start_times: Sequence[float] | None = None):
        """Generated MIDI rows of consecutive windows -> ``DecodeResult`` (notes and problems)."""
        from umt.tokenizers.midi import decode_segments_with_problems

        eos = self.vocab.eos("midi")
        segments = [[*map(int, np.asarray(rows)[:, 0]), eos] for rows in windows]
        return decode_segments_with_problems(
            segments, self.vocab, self.window_seconds, start_times=start_times
        )

    @torch.no_grad()
    def rows_to_audio(self, rows: np.ndarray, name: str = "<output>") -> np.ndarray:
        """Generated audio rows ``[F, K]`` -> float32 mono ``[F * hop]`` in [-1, 1]."""
        tokenizer = self._audio()
        rows = np.asarray(rows)
        if len(rows) == 0:
            raise InputError("the model generated no audio (EOS at once)", name)
        try:
            codes = self.vocab.ids_to_codes("audio", rows[:, : self.vocab.modality_codebooks("audio")])
        except ValueError as error:
            raise InputError(f"the generated audio rows are malformed ({error})", name) from None
        device = next(tokenizer.codec.parameters()).device
        codes = torch.from_numpy(codes).T[None].to(device)  # [1, C, F]
        audio = tokenizer.codec.decode(codes)[0, 0].float().cpu().numpy()
        return np.clip(audio, -1.0, 1.0).astype(np.float32)

    @torch.no_grad()
    def rows_to_image(self, rows: np.ndarray, name: str = "<output>") -> np.ndarray:
        """Generated image rows -> grayscale ``uint8 [H, W]`` (several systems stacked)."""
        from umt.tokenizers.image import to_uint8_image, unflatten_with_repairs

        tokenizer = self._image()
        rows = np.asarray(rows)
        if len(rows) and self.vocab.codebook_range("image", 0).contains(int(rows[0, 0])):
            # Codes before any height token: the model's positions lay them out as one system of
            # max_image_rows rows (umt.models.positions), so read them that way too.
            max_rows = self.model.config.max_image_rows or self.vocab.config.max_image_height
            height = min(int(max_rows), self.vocab.config.max_image_height)
            rows = np.concatenate([self.vocab.special_row(self.vocab.height(height))[None], rows])
        grids, _repairs = unflatten_with_repairs(rows, self.vocab)
        if not grids:
            raise InputError(f"the model generated no complete image column ({len(rows)} rows)", name)
        images = []
        for grid in grids:
            images.append(to_uint8_image(tokenizer.decode(torch.from_numpy(grid)[None])[0, 0]))
        return stack_images(images, gap=0)

    # ---------------------------------------------------------------- generation
    def generate(
        self,
        task: str,
        sources: Sequence[np.ndarray],
        generation: GenerationConfig | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Generated]:
        """Translate content rows (each ``[S, K]``, no SOS/EOS) for ``task``, in batches.

        Units are sorted by length (longest first), batched, generated and returned in the input
        order. ``progress(n)`` is called after each batch with the number of units done in it.
        """
        from umt.data.pipeline import collate

        self.check_task(task)
        spec = get_task(task)
        generation = generation or GenerationConfig()
        limit = int(self.model.config.max_target_len)
        max_len = min(generation.max_len or limit, limit)
        order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))
        results: list[Generated | None] = [None] * len(sources)
        generator = torch.Generator(device=self.device).manual_seed(int(generation.seed))
        empty = np.zeros((0, self.vocab.num_codebooks), dtype=np.int64)
        eos = self.vocab.eos(spec.target)
        for start in range(0, len(order), generation.batch_size):
            chosen = order[start : start + generation.batch_size]
            # The training collate frames the sources (SOS, rows, EOS, PAD), so inference matches it.
            batch = collate([(sources[i], empty, spec.source, spec.target, 0) for i in chosen], self.vocab)
            out = self.model.generate(
                batch["src"].to(self.device),
                batch["src_mask"].to(self.device),
                batch["src_modality"].to(self.device),
                batch["tgt_modality"].to(self.device),
                max_len=max_len,
                temperature=generation.temperature,
                top_k=generation.top_k,
                top_p=generation.top_p,
                generator=generator,
            ).cpu()
            for index, rows in zip(chosen, out.numpy()):
                ends = np.flatnonzero(rows[1:, 0] == eos)
                stop = int(ends[0]) + 1 if ends.size else len(rows)
                results[index] = Generated(rows[1:stop].copy(), bool(ends.size))
            if progress is not None:
                progress(len(chosen))
        return results  # type: ignore[return-value]

    # --------------------------------------------------------- high-level API
    def omr_tokens(
        self, images: Sequence[Any], generation: GenerationConfig | None = None
    ) -> list[list[str]]:
        """System images (paths, PIL images or arrays; each one system) -> LMX tokens each."""
        rows = [self.image_rows(to_gray(image), _name(image)) for image in images]
        return [self.rows_to_lmx(out.rows) for out in self.generate("omr", rows, generation)]

    def omr(self, images: Sequence[Any], generation: GenerationConfig | None = None) -> list[Delinearized]:
        """System images -> :class:`~umt.tokenizers.lmx.Delinearized` (MusicXML text + repair counts)."""
        from umt.tokenizers.lmx import delinearize

        return [delinearize(tokens) for tokens in self.omr_tokens(images, generation)]

    def transcribe(
        self, audios: Sequence[Any], generation: GenerationConfig | None = None
    ) -> list[list[Note]]:
        """Audio (paths or mono arrays at :attr:`sample_rate`) of any length -> notes (AMT)."""
        per_input = [self.audio_windows(self.load_audio(a, _name(a)), _name(a)) for a in audios]
        outputs = self.generate("amt", [w for windows in per_input for w in windows], generation)
        notes, position = [], 0
        for windows in per_input:
            chunk = outputs[position : position + len(windows)]
            position += len(windows)
            starts = [i * self.window_seconds for i in range(len(windows))]
            notes.append(self.rows_to_notes([o.rows for o in chunk], starts).notes)
        return notes

    def image_to_audio(
        self, images: Sequence[Any], generation: GenerationConfig | None = None
    ) -> list[np.ndarray]:
        """System images -> generated audio (float32 mono at :attr:`sample_rate`), one per image."""
        rows = [self.image_rows(to_gray(image), _name(image)) for image in images]
        return [self.rows_to_audio(out.rows) for out in self.generate("i2a", rows, generation)]

    def audio_to_image(
        self, audios: Sequence[Any], generation: GenerationConfig | None = None
    ) -> list[np.ndarray]:
        """Audio of any length -> a score image ``uint8 [H, W]`` (one system image per window, stacked)."""
        per_input = [self.audio_windows(self.load_audio(a, _name(a)), _name(a)) for a in audios]
        outputs = self.generate("a2i", [w for windows in per_input for w in windows], generation)
        images, position = [], 0
        for windows in per_input:
            chunk = outputs[position : position + len(windows)]
            position += len(windows)
            images.append(stack_images([self.rows_to_image(o.rows) for o in chunk]))
        return images

    def midi_to_audio(
        self, midis: Sequence[Any], generation: GenerationConfig | None = None
    ) -> list[np.ndarray]:
        """MIDI (paths, bytes, PrettyMIDI or note lists) -> generated audio, segments concatenated."""
        per_input = [self.midi_segments(self.load_notes(m, _name(m)), _name(m)) for m in midis]
        outputs = self.generate("m2a", [s for segments in per_input for s in segments], generation)
        audios, position = [], 0
        for segments in per_input:
            chunk = outputs[position : position + len(segments)]
            position += len(segments)
            audios.append(self.join_segments_audio([self.rows_to_audio(o.rows) for o in chunk]))
        return audios

    def lmx_to_image(
        self, scores: Sequence[Any], generation: GenerationConfig | None = None
    ) -> list[np.ndarray]:
        """MusicXML/LMX files, token lists or LMX text -> engraved score images (systems stacked)."""
        from umt.tokenizers.lmx import parse_lmx_text

        per_input = []
        for score in scores:
            if isinstance(score, Path) or (
                isinstance(score, str) and Path(score).suffix and Path(score).exists()
            ):
                systems = read_lmx_systems(score)
            elif isinstance(score, str):
                systems = parse_lmx_text(score)
            else:
                systems = [list(score)]
            per_input.append(self.lmx_units(systems, _name(score)))
        outputs = self.generate("l2i", [u for units in per_input for u in units], generation)
        images, position = [], 0
        for units in per_input:
            chunk = outputs[position : position + len(units)]
            position += len(units)
            images.append(stack_images([self.rows_to_image(o.rows) for o in chunk]))
        return images

    def cascade_image_to_audio(
        self,
        images: Sequence[Any],
        generation: GenerationConfig | None = None,
        m2a: TranslationPipeline | None = None,
    ) -> list[CascadeResult]:
        """System images -> OMR -> MusicXML -> MIDI (music21, score tempo) -> audio (the M2A task of
        ``m2a``, default this model). One result per image."""
        from umt.tokenizers.lmx import delinearize

        m2a = m2a or self
        scores = [delinearize(tokens) for tokens in self.omr_tokens(images, generation)]
        notes = [musicxml_to_notes(score.musicxml, _name(image)) for score, image in zip(scores, images)]
        audios = m2a.midi_to_audio(notes, generation)
        return [CascadeResult(s, n, a) for s, n, a in zip(scores, notes, audios)]

    def join_segments_audio(self, pieces: Sequence[np.ndarray]) -> np.ndarray:
        """Audio of consecutive ``window_seconds`` segments -> one signal: every segment but the last
        is cut or zero-padded to exactly the window, so segment ``i`` starts at ``i * window``."""
        window = round(self.window_seconds * self.sample_rate)
        parts = []
        for index, piece in enumerate(pieces):
            if index < len(pieces) - 1:
                piece = np.pad(piece[:window], (0, max(0, window - len(piece))))
            parts.append(piece)
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def stack_images(images: Sequence[np.ndarray], gap: int = SYSTEM_GAP_PX) -> np.ndarray:
    """Grayscale images stacked top to bottom on white, left-aligned, ``gap`` white rows between."""
    if not images:
        raise ValueError("no image to stack")
    width = max(image.shape[1] for image in images)
    height = sum(image.shape[0] for image in images) + gap * (len(images) - 1)
    page = np.full((height, width), 255, dtype=np.uint8)
    top = 0
    for image in images:
        page[top : top + image.shape[0], : image.shape[1]] = image
        top += image.shape[0] + gap
    return page


def check_image_tokenizer(tokenizer: ImageTokenizer, vocab: Vocabulary, name: str) -> None:
    """Refuse an image tokenizer whose codes do not fit the model's vocabulary."""
    _check_fit(tokenizer, vocab, name)


def check_audio_tokenizer(tokenizer: AudioTokenizer, vocab: Vocabulary, name: str) -> None:
    """Refuse an audio tokenizer whose codes do not fit the model's vocabulary."""
    _check_fit(tokenizer, vocab, name)


def _check_fit(tokenizer: Any, vocab: Vocabulary, name: str) -> None:
    from umt.tokenizers.folders import fit_problem

    problem = fit_problem(tokenizer, vocab)
    if problem is not None:
        raise CheckpointError(f"the {problem}", name)


def _load_tokenizer(modality: str, directory: Path) -> Any:
    from umt.tokenizers.folders import load_tokenizer

    tokenizer = load_tokenizer(directory)
    if tokenizer.modality != modality:
        raise CheckpointError(f"holds an {tokenizer.modality} tokenizer, not an {modality} one", directory)
    return tokenizer


def _name(item: Any) -> str:
    return str(item) if isinstance(item, str | Path) else f"<{type(item).__name__}>"


# ======================================================================= file runner
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


def _problem(error: BaseException, path: Path) -> str:
    """One line for a failed input, without repeating the file name the message already has."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    prefix = f"{path}: "
    if isinstance(error, UserError):
        return message.removeprefix(prefix)
    return f"{type(error).__name__}: {message}".removeprefix(prefix)


def output_stems(paths: Sequence[Path]) -> list[str]:
    """Output base names: each input's stem, with ``_2``, ``_3`` ... when stems repeat."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = path.stem or "output"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def png_writer(image: np.ndarray) -> FileWriter:
    def write(path: Path) -> None:
        from PIL import Image

        from umt.utils.io import atomic_write

        with atomic_write(path, "wb") as handle:
            Image.fromarray(image).save(handle, format="PNG")

    return write


def wav_writer(audio: np.ndarray, sample_rate: int) -> FileWriter:
    def write(path: Path) -> None:
        import soundfile

        from umt.utils.io import atomic_path

        with atomic_path(path, suffix=".wav") as tmp:
            soundfile.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV")

    return write


def text_writer(text: str) -> FileWriter:
    def write(path: Path) -> None:
        from umt.utils.io import atomic_write_text

        atomic_write_text(path, text)

    return write


def midi_writer(notes: list) -> FileWriter:
    def write(path: Path) -> None:
        from umt.tokenizers.midi import midi_bytes_from_notes
        from umt.utils.io import atomic_write_bytes

        atomic_write_bytes(path, midi_bytes_from_notes(notes))

    return write


def score_files(tokens_per_unit: Sequence[Sequence[str]]) -> tuple[dict[str, FileWriter], Delinearized]:
    """LMX systems -> ``.musicxml`` (one part, a system break between the systems of a page) and
    ``.lmx`` (one line per system) writers, and the score."""
    from umt.tokenizers.lmx import delinearize, format_lmx

    systems = [list(tokens) for tokens in tokens_per_unit]
    score = delinearize(systems)
    return {".musicxml": text_writer(score.musicxml), ".lmx": text_writer(format_lmx(systems))}, score


def translate_files(
    pipeline: TranslationPipeline,
    task: str,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    generation: GenerationConfig | None = None,
    m2a_pipeline: TranslationPipeline | None = None,
    progress: bool = True,
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
    jobs = [_Job(path, stem) for path, stem in zip(paths, output_stems(paths))]

    def fail(job: _Job, error: BaseException) -> None:
        summary.failures[str(job.path)] = _problem(error, job.path)

    # Stage 1: read and encode every input.
    live: list[_Job] = []
    for job in jobs:
        try:
            _encode_job(pipeline, task, job)
        except Exception as error:  # any reader's error for a bad file is that file's problem only
            fail(job, error)
            continue
        live.append(job)

    # Stage 2: generate.
    live = _run_stage(pipeline, model_task, live, generation, progress, summary)

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
        ready = _run_stage(m2a_pipeline, "m2a", ready, generation, progress, summary)
        decoded = []
        for job in ready:
            try:
                pieces = [m2a_pipeline.rows_to_audio(o.rows, str(job.path)) for o in job.outputs]
                audio = m2a_pipeline.join_segments_audio(pieces)
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
) -> list[_Job]:
    units = [unit for job in jobs for unit in job.units]
    if not units:
        return jobs
    bar = _progress_bar(len(units), task, progress)
    try:
        outputs = pipeline.generate(task, units, generation, progress=bar.update if bar else None)
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
    from tqdm import tqdm

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
