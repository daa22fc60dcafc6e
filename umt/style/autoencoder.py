"""A trained sheet-music autoencoder (:mod:`umt.models.sheet_autoencoder`) as a self-describing
folder: ``config.json`` (format, sizes, the patch size, the class names of its head, the weights'
SHA-256) and ``model.safetensors``. ``umt train experiment=sheet_autoencoder`` writes one."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from umt.errors import CheckpointError
from umt.models.sheet_autoencoder import SheetAutoencoder, SheetAutoencoderConfig
from umt.utils.weights_folder import read_weights_folder, write_weights_folder

FORMAT = "umt-sheet-autoencoder/1"


class AutoencoderFolder:
    """The model, its patch size and its head's class names."""

    def __init__(self, model: SheetAutoencoder, patch_size: int, classes: list[str]) -> None:
        self.model, self.patch_size, self.classes = model.eval(), int(patch_size), list(classes)

    def save_pretrained(self, directory: str | Path) -> None:
        settings = {
            "model": asdict(self.model.config),
            "patch_size": self.patch_size,
            "classes": self.classes,
        }
        write_weights_folder(directory, FORMAT, settings, self.model)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> AutoencoderFolder:
        raw, state = read_weights_folder(directory, FORMAT, "sheet autoencoder")
        try:
            model = SheetAutoencoder(SheetAutoencoderConfig(**raw["model"]))
            model.load_state_dict(state, strict=True)
            return cls(model, raw["patch_size"], raw["classes"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"config and weights do not fit ({error})", directory) from None

    @torch.no_grad()
    def features(self, patches: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Pooled bottleneck features ``[N, C]`` of grayscale patches ``uint8 [S, S]``."""
        out = []
        for start in range(0, len(patches), batch_size):
            batch = torch.from_numpy(np.stack(patches[start : start + batch_size])).float()[:, None] / 255.0
            out.append(self.model.features(batch).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.config.channels[-1]))
