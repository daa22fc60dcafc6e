"""File tokenizers for the rule-based modalities, shaped like the neural ones for baking.

They offer the same ``modality`` / ``fingerprint`` / ``load`` / ``variants`` / ``tokenize`` surface
as :class:`umt.tokenizers.base.NeuralTokenizer`, so :mod:`umt.data.bake` treats every modality
alike. Their fingerprint is ``""`` (nothing trained) and they have one variant (no augmentation
shifts). The converters themselves (:mod:`umt.tokenizers.lmx`, :mod:`umt.tokenizers.midi`) are
imported when a file is first read.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from umt.errors import InputError, UserError
from umt.tokenizers.lmx import linearize
from umt.tokenizers.midi import encode_windows, notes_from_midi
from umt.vocab import Vocabulary


def _require(module_name: str, *names: str) -> None:
    """Fail at construction (one clear line), not once per file, when a converter is missing."""

    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"{module_name} is not available ({error})") from None
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        raise UserError(f"{module_name} lacks {', '.join(missing)}")


class LmxFileTokenizer:
    """MusicXML (``.musicxml`` / ``.xml`` / ``.mxl``) or an LMX token file (``.lmx``, the paper data
    sets' format) -> LMX rows ``[T, K]`` (id in codebook 0)."""

    modality = "lmx"
    fingerprint = ""
    num_variants = 1

    def __init__(self) -> None:
        _require("umt.tokenizers.lmx", "linearize")

    def load(self, path: str | Path) -> list[str]:
        """The LMX tokens of the score's default part (as :func:`umt.tokenizers.lmx.linearize` picks:
        the piano, else the first), or of an ``.lmx`` file; raises InputError for unreadable input."""
        if Path(path).suffix.lower() == ".lmx":
            try:
                return Path(path).read_text(encoding="utf-8").split()
            except UnicodeDecodeError as error:
                raise InputError(f"not an LMX text file ({error.reason})", path) from None
        tokens = linearize(path)
        return tokens.split() if isinstance(tokens, str) else list(tokens)

    def variants(self, tokens: list[str]) -> list[list[str]]:
        return [tokens]

    def tokenize(self, tokens: list[str], vocab: Vocabulary) -> np.ndarray:
        return vocab.single_stream_rows([vocab.lmx_id(token) for token in tokens])


class MidiFileTokenizer:
    """A MIDI file -> MIDI event rows ``[T, K]`` (id in codebook 0), one item per time window.

    :meth:`windows` cuts a piece into ``seconds`` windows with
    :func:`umt.tokenizers.midi.encode_windows` (segment ``i`` covers seconds ``[W i, W (i + 1))``,
    notes sounding at its start in its tie section, shifts counted from its start). A window's rows
    are its segment without the EOS id: the training batch adds SOS and EOS around it, so no
    example holds an EOS in the middle.
    """

    modality = "midi"
    fingerprint = ""
    num_variants = 1

    def load(self, path: str | Path) -> Any:
        """The file's notes (raises InputError for unreadable input)."""

        return notes_from_midi(path)

    def windows(self, notes: Any, seconds: float, vocab: Vocabulary) -> list[list[int]]:
        """The id list of each ``seconds`` window's segment, without its EOS."""
        return encode_windows(notes, vocab, seconds)

    def variants(self, window: Any) -> list[Any]:
        return [window]

    def tokenize(self, window: list[int], vocab: Vocabulary) -> np.ndarray:
        """One window's ids (from :meth:`windows`) -> rows ``[T, K]``."""
        return vocab.single_stream_rows([int(i) for i in window])


class TextFileTokenizer:
    """A UTF-8 text file (a prompt) -> byte rows ``[T, K]`` (id in codebook 0); one item a file."""

    modality = "text"
    fingerprint = ""
    num_variants = 1

    def load(self, path: str | Path) -> str:
        """The file's text, stripped (raises InputError for unreadable, empty or oversized files)."""
        from umt.modalities.text import MAX_TEXT_BYTES

        path = Path(path)
        if not path.is_file():
            raise InputError("no such text file", path)
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise InputError(f"longer than {MAX_TEXT_BYTES} bytes: not a prompt", path)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as error:
            raise InputError(f"not UTF-8 text ({error.reason})", path) from None
        if not text:
            raise InputError("holds no text", path)
        return text

    def variants(self, text: str) -> list[str]:
        return [text]

    def tokenize(self, text: str, vocab: Vocabulary) -> np.ndarray:
        return vocab.text_rows(text)
