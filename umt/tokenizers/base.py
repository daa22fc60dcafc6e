"""What every neural (image / audio) tokenizer offers, so baking and inference can treat them alike.

A tokenizer is a self-describing folder (``config.json`` + ``model.safetensors`` + a fingerprint)
restored by ``from_pretrained(dir)`` without Hydra. Its content rows are unified-vocabulary ids
``[T, K]`` without SOS/EOS: the tasks add those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from umt.vocab import Vocabulary


@runtime_checkable
class NeuralTokenizer(Protocol):
    modality: str
    """``"image"`` or ``"audio"``."""

    @property
    def fingerprint(self) -> str:
        """A stable hash of the tokenizer's config and weights, recorded in every shard."""

    def load(self, path: str | Path) -> torch.Tensor:
        """Read and preprocess one input file (image: ``[1, H, W]`` in [-1, 1]; audio: ``[1, T]``
        at the codec's rate). Raises :class:`umt.errors.InputError` for unreadable input."""

    def variants(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The augmentation variants of a loaded input (variant 0 is the input itself)."""

    def tokenize(self, x: torch.Tensor, vocab: Vocabulary) -> np.ndarray:
        """One loaded input to content rows ``[T, K]`` (int64 unified-vocabulary ids)."""

    def detokenize(self, rows: np.ndarray, vocab: Vocabulary) -> torch.Tensor:
        """Content rows back to an image ``[1, H, W]`` or audio ``[1, T]``."""

    def save_pretrained(self, directory: str | Path) -> None: ...
