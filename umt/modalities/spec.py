"""What a modality is, in one object: :class:`ModalitySpec`.

A spec owns the modality's block of the unified vocabulary (:mod:`umt.vocab`): its own SOS and
EOS, any other special ids it needs (an image's system separator and height tokens), and its
content ranges (codebooks x codes for a multi-stream modality, a token list or typed event ranges
for a single-stream one). The vocabulary is ``PAD`` followed by the blocks of the modalities it
holds, in order, so appending a modality appends a block and moves no existing id.

A spec also says how the modality's rows are laid out in time and space (``positions``,
``frames_per_second``), which tokenizer serves it (``tokenizer``, ``"module:Class"``, imported only
when asked for; ``trained_tokenizer``: restored from a folder rather than built from rules), which
files hold it (``suffixes``), and how a file becomes the units a model translates
(:meth:`ModalitySpec.read_units`) and generated units become files
(:meth:`ModalitySpec.output_files`). Those two run with a
:class:`~umt.inference.TranslationPipeline` at hand (its vocabulary, tokenizers and limits) and
import what they need when called, so importing a spec stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the vocabulary imports the specs, not the other way round
    from umt.inference import TranslationPipeline
    from umt.vocab import VocabConfig

FileWriter = Callable[[Path], None]
"""Writes one output file, atomically, at the path it is given."""


@dataclass
class Units:
    """What a model translates of one input file: content rows ``[T, K]`` per unit (a system, a
    window, a segment), and for a modality with a time axis each unit's start in seconds."""

    rows: list[Any]
    starts: list[float] | None = None


POSITION_SCHEMES = ("sequence", "planar")
"""``sequence``: one learned position per row; ``planar``: row-in-column plus column (images)."""


@dataclass(frozen=True)
class ModalitySpec:
    """One modality of the unified vocabulary. Subclasses say what its block holds."""

    name: str
    description: str
    tokenizer: str
    """``"module:Class"`` of its tokenizer (imported only when asked for)."""
    trained_tokenizer: bool = False
    """Whether the tokenizer is a trained model restored from a folder (``--tokenizer DIR``)."""
    multi_stream: bool = False
    """Whether a row holds one code per codebook (image, audio) or one id in codebook 0."""
    positions: str = "sequence"
    frames_per_second: float | None = None
    """Rows (or, for event tokens, time ticks) per second; ``None``: no time axis."""
    suffixes: tuple[str, ...] = ()
    """File suffixes of its inputs and outputs, preferred first."""
    target_specials: tuple[str, ...] = ()
    """Special ranges (besides EOS) a target of this modality may produce in codebook 0."""
    file_kind: str = ""
    """Its files in a sentence, for messages (e.g. "an image or PDF")."""
    files: str | type | None = None
    """``"module:Class"`` (or the class) of its :class:`ModalityFiles`: file -> units -> files."""
    input_help: str = ""
    """What an input file of this modality is, for ``--help`` (e.g. "score image/PDF")."""
    output_help: str = ""
    """What its output files are (e.g. "score image (PNG)")."""

    def __post_init__(self) -> None:
        if "/" in self.name or not self.name:
            raise ValueError(f"modality name {self.name!r} must be non-empty and hold no '/'")
        if self.positions not in POSITION_SCHEMES:
            raise ValueError(
                f"{self.name}: positions must be one of {POSITION_SCHEMES}, not {self.positions!r}"
            )

    # ------------------------------------------------------------- the block
    def specials(self, config: VocabConfig) -> tuple[tuple[str, int], ...]:
        """Special ranges after SOS and EOS, as ``(name, size)``."""
        return ()

    def content(self, config: VocabConfig) -> tuple[tuple[str, int], ...]:
        """Content ranges, as ``(name, size)``; a multi-stream modality names them ``cb0``, ``cb1``..."""
        raise NotImplementedError

    def block(self, config: VocabConfig) -> tuple[tuple[str, int], ...]:
        """The whole block in id order: ``sos``, ``eos``, the other specials, the content."""
        return (("sos", 1), ("eos", 1), *self.specials(config), *self.content(config))

    def special_names(self, config: VocabConfig) -> tuple[str, ...]:
        return ("sos", "eos", *(name for name, _ in self.specials(config)))

    def codebooks(self, config: VocabConfig) -> int:
        """How many of the ``K`` codebooks its rows use (1 for a single-stream modality)."""
        return 1

    def words(self) -> tuple[str, ...] | None:
        """The token strings of a word-list modality (its ``token`` range, in order), else ``None``."""
        return None

    # ---------------------------------------------------------------- files
    def file_io(self) -> ModalityFiles:
        """Its :class:`ModalityFiles` (``files``, imported when first asked for)."""
        from umt.errors import UserError
        from umt.utils.registry import import_class

        if self.files is None:
            raise UserError(f"{self.name} has no file reader or writer")
        return import_class(self.files, "file class")(self)

    def read_units(self, path: Path, pipeline: TranslationPipeline) -> Units:
        """An input file -> the units to translate (:class:`~umt.errors.InputError` for a bad one)."""
        return self.file_io().read_units(path, pipeline)

    def output_files(
        self, outputs: list[Any], pipeline: TranslationPipeline, source: Units, name: str
    ) -> dict[str, FileWriter]:
        """Generated rows of one input's units -> its output files, by suffix (nothing written yet)."""
        return self.file_io().output_files(outputs, pipeline, source, name)

    def check_suffix(self, path: Path) -> None:
        """Refuse a path that is not a file of this modality (one line each: suffix, folder, missing)."""
        from umt.errors import InputError

        if path.suffix.lower() not in self.suffixes:
            kind = self.file_kind or f"a {self.name} file"
            raise InputError(f"not {kind} (expected {', '.join(sorted(self.suffixes))})", path)
        if path.is_dir():
            raise InputError("is a directory", path)
        if not path.exists():
            raise InputError("no such file", path)


@dataclass(frozen=True)
class CodebookSpec(ModalitySpec):
    """A multi-stream modality of a neural tokenizer's codes: ``{name}_codebooks`` codebooks of
    ``{name}_codebook_size`` codes each (fields of :class:`~umt.vocab.VocabConfig`), ``cb0``..."""

    multi_stream: bool = True
    trained_tokenizer: bool = True

    def content(self, config: VocabConfig) -> tuple[tuple[str, int], ...]:
        size = getattr(config, f"{self.name}_codebook_size")
        return tuple((f"cb{k}", size) for k in range(self.codebooks(config)))

    def codebooks(self, config: VocabConfig) -> int:
        return getattr(config, f"{self.name}_codebooks")


@dataclass(frozen=True)
class WordListSpec(ModalitySpec):
    """A single-stream modality whose content is a fixed list of token strings (LMX, toy text)."""

    tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.tokens or len(set(self.tokens)) != len(self.tokens):
            raise ValueError(f"{self.name}: tokens must be a non-empty list without duplicates")

    def content(self, config: VocabConfig) -> tuple[tuple[str, int], ...]:
        return (("token", len(self.tokens)),)

    def words(self) -> tuple[str, ...]:
        return self.tokens


class ModalityFiles:
    """How a modality's files become units to translate, and generated units become files.

    A :class:`ModalitySpec` names its subclass in ``files``; the built-in ones are in
    :mod:`umt.inference.modality_files`. Both methods run with a
    :class:`~umt.inference.TranslationPipeline` at hand (its vocabulary, tokenizers and limits).
    """

    def __init__(self, spec: ModalitySpec) -> None:
        self.spec = spec

    def read_units(self, path: Path, pipeline: TranslationPipeline) -> Units:
        """An input file -> the units to translate (:class:`~umt.errors.InputError` for a bad one)."""
        from umt.errors import UserError

        raise UserError(f"{self.spec.name} files cannot be read as a translation source")

    def output_files(
        self, outputs: list[Any], pipeline: TranslationPipeline, source: Units, name: str
    ) -> dict[str, FileWriter]:
        """Generated rows of one input's units -> its output files, by suffix (nothing written yet).

        ``source``: the input's units (their start times place time-axis outputs); ``name``: the
        input, for messages.
        """
        from umt.errors import UserError

        raise UserError(f"{self.spec.name} outputs cannot be written to files")
