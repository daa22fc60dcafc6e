"""Linearized MusicXML (LMX): the 224 tokens of Mayer et al. (ICDAR 2024), one id a row.

A MusicXML score (or an LMX text file, a line a system) is read as one unit per system, a system
longer than the model reads cut at measures; generated systems become one MusicXML score (a
system break between them) and the LMX text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umt.modalities.spec import FileWriter, Units, WordListSpec
from umt.tokenizers.lmx_vocabulary import LMX_TOKENS

if TYPE_CHECKING:
    from umt.inference import TranslationPipeline

MUSICXML_SUFFIXES = (".musicxml", ".xml", ".mxl")
LMX_TEXT_SUFFIXES = (".lmx", ".txt")


@dataclass(frozen=True)
class LmxSpec(WordListSpec):
    def read_units(self, path: Path, pipeline: TranslationPipeline) -> Units:
        from umt.inference import read_lmx_systems

        self.check_suffix(path)
        return Units(pipeline.lmx_units(read_lmx_systems(path), str(path)))

    def output_files(
        self, outputs: list[Any], pipeline: TranslationPipeline, source: Units, name: str
    ) -> dict[str, FileWriter]:
        from umt.inference import score_files

        return score_files([pipeline.rows_to_lmx(rows) for rows in outputs])[0]


LMX = LmxSpec(
    name="lmx",
    description="Linearized MusicXML tokens",
    tokenizer="umt.tokenizers.rule_based:LmxFileTokenizer",
    suffixes=MUSICXML_SUFFIXES + LMX_TEXT_SUFFIXES,
    file_kind="a MusicXML or LMX file",
    input_help="MusicXML/MXL/LMX",
    output_help="MusicXML (+ .lmx)",
    tokens=LMX_TOKENS,
)
