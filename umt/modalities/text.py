"""Text: UTF-8 bytes, one id a row (256 byte values). MusicScore's metadata prompts are its first use.

A prompt ("a music score, composer is ..., key is A major") reads as one unit, from a ``.txt`` file
or, on ``umt translate``'s command line, given as the text itself; generated text is written as a
``.txt`` file. Byte-level: any language and any metadata value has ids, and nothing is unknown.
Not in the paper's vocabulary: an experiment that uses it lists it in ``vocab.modalities`` (its
block is appended, so no other id moves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from umt.modalities.spec import ModalitySpec

if TYPE_CHECKING:
    from umt.vocab import VocabConfig

MAX_TEXT_BYTES = 1024
"""Longest text read (a prompt is a few hundred bytes)."""


@dataclass(frozen=True)
class TextSpec(ModalitySpec):
    def content(self, config: VocabConfig) -> tuple[tuple[str, int], ...]:
        return (("byte", 256),)


TEXT = TextSpec(
    name="text",
    description="UTF-8 text (prompts), a byte a row",
    tokenizer="umt.tokenizers.rule_based:TextFileTokenizer",
    files="umt.inference.modality_files:TextFiles",
    suffixes=(".txt",),
    file_kind="a text file",
    input_help="text prompt (.txt, or the text itself)",
    output_help="text (.txt)",
)
