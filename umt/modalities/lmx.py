"""Linearized MusicXML (LMX): the 224 tokens of Mayer et al. (ICDAR 2024), one id a row.

A MusicXML score (or an LMX text file, a line a system) is read as one unit per system
(:class:`umt.inference.modality_files.LmxFiles`); generated systems become one MusicXML score and
the LMX text.
"""

from __future__ import annotations

from umt.modalities.spec import WordListSpec
from umt.tokenizers.lmx_vocabulary import LMX_TOKENS

MUSICXML_SUFFIXES = (".musicxml", ".xml", ".mxl")
LMX_TEXT_SUFFIXES = (".lmx", ".txt")

LMX = WordListSpec(
    name="lmx",
    description="Linearized MusicXML tokens",
    tokenizer="umt.tokenizers.rule_based:LmxFileTokenizer",
    files="umt.inference.modality_files:LmxFiles",
    suffixes=MUSICXML_SUFFIXES + LMX_TEXT_SUFFIXES,
    file_kind="a MusicXML or LMX file",
    input_help="MusicXML/MXL/LMX",
    output_help="MusicXML (+ .lmx)",
    tokens=LMX_TOKENS,
)
