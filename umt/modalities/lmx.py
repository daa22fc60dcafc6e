"""Linearized MusicXML (LMX): the 224 tokens of Mayer et al. (ICDAR 2024), one id a row."""

from __future__ import annotations

from umt.modalities.spec import WordListSpec
from umt.tokenizers.lmx_vocabulary import LMX_TOKENS

LMX = WordListSpec(
    name="lmx",
    description="Linearized MusicXML tokens",
    tokenizer="umt.tokenizers.rule_based:LmxFileTokenizer",
    suffixes=(".lmx", ".musicxml", ".xml", ".mxl"),
    tokens=LMX_TOKENS,
)
