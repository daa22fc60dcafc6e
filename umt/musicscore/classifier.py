"""The score / non-score page classifier of the MusicScore pipeline, as a self-describing folder.

MusicScore's authors dropped covers, title and text pages with a ResNet-18 on 2048 x 2048 pages
(98 % test accuracy on 50 hand-labelled pages). Here the same network (:mod:`umt.models.resnet`)
reads grayscale pages resized to ``image_size`` squared (512 by default: CPU-sized; give 2048 for
theirs), ink dark on white scaled to [0, 1]. A folder holds ``config.json`` (format, classes,
sizes, the weights' SHA-256) and ``model.safetensors``; ``umt classify-pages train`` makes one,
``predict`` and ``umt data prepare musicscore --classifier`` use it, and ``umt eval fid
--features page-classifier`` embeds pages with its penultimate layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from umt.errors import CheckpointError
from umt.models.resnet import ResNet
from umt.utils.weights_folder import read_weights_folder, write_weights_folder

FORMAT = "umt-page-classifier/1"
CLASSES = ("non-score", "score")
SCORE = CLASSES.index("score")


@dataclass
class PageClassifierConfig:
    image_size: int = 512
    """Pages are resized to this many pixels square (the paper's classifier: 2048)."""
    widths: tuple[int, ...] = (64, 128, 256, 512)
    """Channels of the four ResNet stages (these are ResNet-18's)."""
    classes: tuple[str, ...] = field(default=CLASSES)

    def __post_init__(self) -> None:
        self.widths, self.classes = tuple(int(w) for w in self.widths), tuple(self.classes)
        if self.image_size < 32 or len(self.widths) != 4 or min(self.widths) < 1:
            raise ValueError("a page classifier needs image_size >= 32 and four positive stage widths")


def page_tensor(gray: np.ndarray, size: int) -> torch.Tensor:
    """A grayscale page ``uint8 [H, W]`` -> ``float32 [1, size, size]`` in [0, 1] (bilinear resize,
    aspect not kept, as the paper's ``Resize((2048, 2048))``)."""
    image = Image.fromarray(np.asarray(gray, dtype=np.uint8)).resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]


class PageClassifier:
    """A :class:`ResNet` over pages and what it needs to read them."""

    def __init__(self, config: PageClassifierConfig, model: ResNet | None = None) -> None:
        self.config = config
        self.model = model or ResNet(len(config.classes), in_channels=1, widths=config.widths)
        self.model.eval()

    def batch(self, pages: Sequence[np.ndarray]) -> torch.Tensor:
        """Grayscale pages -> the network's input ``[N, 1, S, S]``."""
        return torch.stack([page_tensor(page, self.config.image_size) for page in pages])

    @torch.no_grad()
    def score_probability(self, pages: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
        """P(score) of each page ``[N]``."""
        out = []
        for start in range(0, len(pages), batch_size):
            logits = self.model(self.batch(pages[start : start + batch_size]))
            out.append(torch.softmax(logits, dim=-1)[:, SCORE].numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    @torch.no_grad()
    def features(self, pages: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
        """The penultimate features of each page ``[N, widths[-1]]`` (float64)."""
        out = [
            self.model.features(self.batch(pages[start : start + batch_size])).double().numpy()
            for start in range(0, len(pages), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.config.widths[-1]))

    # ------------------------------------------------------------------ folders
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``model.safetensors`` then ``config.json`` (with the weights' hash), each atomically."""
        write_weights_folder(directory, FORMAT, asdict(self.config), self.model)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> PageClassifier:
        """Load a folder, verifying its format and weights; :class:`CheckpointError` otherwise."""
        raw, state = read_weights_folder(directory, FORMAT, "page classifier")
        try:
            config = PageClassifierConfig(
                image_size=int(raw["image_size"]), widths=tuple(raw["widths"]), classes=tuple(raw["classes"])
            )
            classifier = cls(config)
            classifier.model.load_state_dict(state, strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"config and weights do not fit ({error})", directory) from None
        classifier.model.eval()
        return classifier
