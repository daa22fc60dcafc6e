"""The translation pipeline: a Translator with its vocabulary and tokenizers; per-modality encoding
of inputs and decoding of outputs; batched generation; the high-level API."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umt.data.systems import staff_height as fallback_staff_height
from umt.errors import CheckpointError, InputError, UserError
from umt.inference.generation import (
    Generated,
    GenerationConfig,
    generate_units,
    select_device,
)
from umt.inference.inputs import (
    musicxml_to_notes,
    notes_from_pretty_midi,
    read_lmx_systems,
    split_measures,
    stack_images,
    to_gray,
)
from umt.modalities.windows import WINDOW_SECONDS
from umt.models.quantize import for_decoding
from umt.pretrained import from_pretrained, read_config
from umt.tasks import TASKS as REGISTERED_TASKS
from umt.tasks import get_task
from umt.tokenizers.audio import MAX_AUDIO_SECONDS, AudioTokenizer, resample
from umt.tokenizers.folders import fit_problem, load_tokenizer
from umt.tokenizers.image import (
    ImageTokenizer,
    measure_staff_height,
    preprocess,
    stacked_systems,
    to_uint8_image,
    unflatten_with_repairs,
)
from umt.tokenizers.lmx import Delinearized, delinearize, parse_lmx_text
from umt.tokenizers.midi import Note, decode_segments_with_problems, encode_windows, notes_from_midi
from umt.vocab import Vocabulary, vocabulary_from_dict


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
        dtype: str = "fp32",
    ) -> None:
        self.device = select_device(device)
        try:
            self.model = for_decoding(model.to(self.device), dtype)
        except ValueError as error:
            raise UserError(str(error)) from None
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
        window_seconds: float | None = None,
        dtype: str = "fp32",
    ) -> TranslationPipeline:
        """An exported model folder (:func:`umt.pretrained.export_checkpoint`) with its tokenizers.

        ``dtype`` (:data:`umt.models.quantize.DTYPES`): the Translator's weights while translating,
        ``fp32`` as trained, or ``int8`` / ``bf16`` for faster decoding (the tokenizers stay fp32).

        Audio and MIDI are translated in windows of ``window_seconds``; default: the length the
        model was trained on (its folder's ``window_seconds``; 20 s for folders that lack it).

        Tokenizers come from the folder's ``tokenizers/<modality>/`` unless given (an object or a
        folder). A tokenizer whose fingerprint differs from the one the model was trained with, or
        whose codebooks do not fit the model's vocabulary, is refused with a CheckpointError.
        """
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
            window_seconds=window_seconds or float(config.get("window_seconds", WINDOW_SECONDS)),
            dtype=dtype,
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

    def _check_source(self, rows: np.ndarray, what: str, name: str, length: int | None = None) -> np.ndarray:
        """``rows`` unchanged, or InputError when the model cannot read that many (``length``
        when the model lays them out longer than they are)."""
        length = len(rows) if length is None else length
        if length > self.max_source_rows:
            raise InputError(
                f"{what} is {length} token rows long; the model reads at most {self.max_source_rows}",
                name,
            )
        return rows

    # ------------------------------------------------------------------ encoding
    def preprocess_image(self, gray: np.ndarray) -> torch.Tensor:
        """One system image ``uint8 [H, W]`` -> the image tokenizer's input ``float32 [1, Hc, Wc]``
        in [-1, 1] (staff height normalised, padded to its grid)."""
        config = self._image().preprocess_config
        staff_height = None
        if config.measure_staff_height:
            # The tokenizer's own measure first (what baking used), else the line-centre distance.
            staff_height = measure_staff_height(gray) or fallback_staff_height(gray)
        return preprocess(gray, config, staff_height)

    def image_rows(self, gray: np.ndarray, name: str = "<image>") -> np.ndarray:
        """One system image ``uint8 [H, W]`` -> content rows ``[T, K]`` (height token first)."""
        return self.preprocessed_image_rows(self.preprocess_image(gray), name)

    def image_file_rows(self, path: str | Path) -> np.ndarray:
        """An image file -> content rows: one system, or, for a stacked-systems PNG (a score
        video's slide, :func:`umt.tokenizers.image.write_systems_png`), its systems ``sep``-joined."""
        gray = to_gray(str(path))
        stacked = stacked_systems(path, gray)
        if stacked is None:
            return self.image_rows(gray, str(path))
        systems = [self.preprocess_image(system) for system in stacked]
        try:
            tokens = self._image().tokenize(systems, self.vocab)
        except ValueError as error:
            raise InputError(str(error), str(path)) from None
        length = len(tokens)
        if self.model.config.source_systems == "umust":
            from umt.models.source_layout import laid_out_rows  # systems padded to the tallest

            length = laid_out_rows(torch.as_tensor(tokens), self.vocab)
        return self._check_source(tokens, "the systems", str(path), length)

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
        if audio.shape[-1] == 0:
            raise InputError("audio holds no samples", name)
        device = next(tokenizer.codec.parameters()).device
        out = []
        for piece in tokenizer.windows(audio, self.window_seconds):
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
        """Notes -> content rows of each ``window_seconds`` segment, without its EOS (the batch adds
        SOS and EOS around every source, as in training)."""
        if not notes:
            raise InputError("holds no notes", name)
        end = max(note.offset for note in notes)
        if end > MAX_AUDIO_SECONDS:
            raise InputError(
                f"lasts {end / 3600:.1f} h; audio is made for at most {MAX_AUDIO_SECONDS / 3600:.0f} h "
                "of MIDI at a time (cut it into parts)",
                name,
            )
        windows = encode_windows(notes, self.vocab, self.window_seconds)
        # a window without notes holds only its (empty) tie section's end: no rows, silence
        quiet = [self.vocab["midi/tie"].start]
        empty = np.zeros((0, self.vocab.num_codebooks), dtype=np.int64)
        return [
            empty
            if ids == quiet
            else self._check_source(self.vocab.single_stream_rows(ids), f"MIDI segment {i}", name)
            for i, ids in enumerate(windows)
        ]

    def load_notes(self, source: Any, name: str = "<midi>") -> list[Note]:
        """A MIDI path or bytes, a ``pretty_midi.PrettyMIDI``, or a list of notes -> notes."""
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
        self.check_task(task)
        return generate_units(
            self.model, self.vocab, get_task(task), sources, generation, self.device, progress
        )

    # --------------------------------------------------------- high-level API
    def omr_tokens(
        self, images: Sequence[Any], generation: GenerationConfig | None = None
    ) -> list[list[str]]:
        """System images (paths, PIL images or arrays; each one system) -> LMX tokens each."""
        rows = [self.image_rows(to_gray(image), _name(image)) for image in images]
        return [self.rows_to_lmx(out.rows) for out in self.generate("omr", rows, generation)]

    def omr(self, images: Sequence[Any], generation: GenerationConfig | None = None) -> list[Delinearized]:
        """System images -> :class:`~umt.tokenizers.lmx.Delinearized` (MusicXML text + repair counts)."""
        return [delinearize(tokens) for tokens in self.omr_tokens(images, generation)]

    def transcribe(
        self, audios: Sequence[Any], generation: GenerationConfig | None = None
    ) -> list[list[Note]]:
        """Audio (paths or mono arrays at :attr:`sample_rate`) of any length -> notes (AMT)."""
        per_input = [self.audio_windows(self.load_audio(a, _name(a)), _name(a)) for a in audios]
        notes = []
        for rows in self._generate_per_input("amt", per_input, generation):
            starts = [i * self.window_seconds for i in range(len(rows))]
            notes.append(self.rows_to_notes(rows, starts).notes)
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
        return [
            stack_images([self.rows_to_image(r) for r in rows])
            for rows in self._generate_per_input("a2i", per_input, generation)
        ]

    def midi_to_audio(
        self, midis: Sequence[Any], generation: GenerationConfig | None = None
    ) -> list[np.ndarray]:
        """MIDI (paths, bytes, PrettyMIDI or note lists) -> generated audio, segments concatenated."""
        per_input = [self.midi_segments(self.load_notes(m, _name(m)), _name(m)) for m in midis]
        return [
            self.segments_audio(rows, _name(m))
            for rows, m in zip(self._generate_per_input("m2a", per_input, generation), midis)
        ]

    def lmx_to_image(
        self, scores: Sequence[Any], generation: GenerationConfig | None = None
    ) -> list[np.ndarray]:
        """MusicXML/LMX files, token lists or LMX text -> engraved score images (systems stacked)."""
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
        return [
            stack_images([self.rows_to_image(r) for r in rows])
            for rows in self._generate_per_input("l2i", per_input, generation)
        ]

    def _generate_per_input(
        self, task: str, per_input: Sequence[Sequence[np.ndarray]], generation: GenerationConfig | None
    ) -> list[list[np.ndarray]]:
        """The units of every input translated in one batched run, the outputs' rows regrouped by
        input (units in order)."""
        outputs = self.generate(task, [unit for units in per_input for unit in units], generation)
        grouped, position = [], 0
        for units in per_input:
            grouped.append([o.rows for o in outputs[position : position + len(units)]])
            position += len(units)
        return grouped

    def cascade_image_to_audio(
        self,
        images: Sequence[Any],
        generation: GenerationConfig | None = None,
        m2a: TranslationPipeline | None = None,
    ) -> list[CascadeResult]:
        """System images -> OMR -> MusicXML -> MIDI (music21, score tempo) -> audio (the M2A task of
        ``m2a``, default this model). One result per image."""
        m2a = m2a or self
        scores = [delinearize(tokens) for tokens in self.omr_tokens(images, generation)]
        notes = [musicxml_to_notes(score.musicxml, _name(image)) for score, image in zip(scores, images)]
        audios = m2a.midi_to_audio(notes, generation)
        return [CascadeResult(s, n, a) for s, n, a in zip(scores, notes, audios)]

    def segments_audio(self, outputs: Sequence[np.ndarray], name: str = "<output>") -> np.ndarray:
        """Generated audio rows of consecutive segments -> one signal (:meth:`join_segments_audio`).
        A segment without rows is silence: a MIDI window without notes is not generated at all (so
        ten hours of MIDI with two notes costs two windows, not 1800)."""
        silence = np.zeros(0, np.float32)
        pieces = [self.rows_to_audio(rows, name) if len(rows) else silence for rows in outputs]
        return self.join_segments_audio(pieces)

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


def check_image_tokenizer(tokenizer: ImageTokenizer, vocab: Vocabulary, name: str) -> None:
    """Refuse an image tokenizer whose codes do not fit the model's vocabulary."""
    _check_fit(tokenizer, vocab, name)


def check_audio_tokenizer(tokenizer: AudioTokenizer, vocab: Vocabulary, name: str) -> None:
    """Refuse an audio tokenizer whose codes do not fit the model's vocabulary."""
    _check_fit(tokenizer, vocab, name)


def _check_fit(tokenizer: Any, vocab: Vocabulary, name: str) -> None:
    problem = fit_problem(tokenizer, vocab)
    if problem is not None:
        raise CheckpointError(f"the {problem}", name)


def _load_tokenizer(modality: str, directory: Path) -> Any:
    tokenizer = load_tokenizer(directory)
    if tokenizer.modality != modality:
        raise CheckpointError(f"holds an {tokenizer.modality} tokenizer, not an {modality} one", directory)
    return tokenizer


def _name(item: Any) -> str:
    return str(item) if isinstance(item, str | Path) else f"<{type(item).__name__}>"
