"""The tests' tiny vocabulary: the one of ``conf/experiment/tiny.yaml`` (its single source), read
once. Tests that need other sizes (tokenizers with more codes, shorter MIDI segments) derive them
from it with ``dataclasses.replace``."""

from __future__ import annotations

from umt.training.config import experiment_vocab
from umt.vocab import VocabConfig, Vocabulary

TINY_VOCAB: dict = experiment_vocab("tiny")
"""K=2, 2 x 8 image and audio codes, 4 image rows, 21 MIDI shifts, the paper's four modalities."""
TINY_CONFIG = VocabConfig(**TINY_VOCAB)


def tiny_vocab() -> Vocabulary:
    return Vocabulary(TINY_CONFIG)
