"""A trained sheet-music autoencoder (:mod:`umt.models.sheet_autoencoder`) as a self-describing
folder: ``config.json`` (format, sizes, the patch size, the class names of its head, the weights'
SHA-256) and ``model.safetensors``. ``umt train experiment=sheet_autoencoder`` writes one."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from umt.errors import CheckpointError
from umt.models.sheet_autoencoder import SheetAutoencoder, SheetAutoencoderConfig
from umt.utils.io import atomic_write_bytes, atomic_write_text

FORMAT = "umt-sheet-autoencoder/1"


class AutoencoderFolder:
    """The model, its patch size and its head's class names."""

    def __init__(self, model: SheetAutoencoder, patch_size: int, classes: list[str]) -> None:
        self.model, self.patch_size, self.classes = model.eval(), int(patch_size), list(classes)

    def save_pretrained(self, directory: str | Path) -> None:
        from safetensors.torch import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = save({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()})
        atomic_write_bytes(directory / "model.safetensors", payload)
        config = {
            "format": FORMAT,
            "model": asdict(self.model.config),
            "patch_size": self.patch_size,
            "classes": self.classes,
            "weights_sha256": hashlib.sha256(payload).hexdigest(),
        }
        atomic_write_text(directory / "config.json", json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> AutoencoderFolder:
        from safetensors.torch import load

        directory = Path(directory)
        config_path, weights_path = directory / "config.json", directory / "model.safetensors"
        if not config_path.is_file() or not weights_path.is_file():
            raise CheckpointError(
                "not a sheet autoencoder folder (config.json + model.safetensors)", directory
            )
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"corrupt config.json ({error})", config_path) from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise CheckpointError(f"not a {FORMAT} folder", config_path)
        payload = weights_path.read_bytes()
        if hashlib.sha256(payload).hexdigest() != raw.get("weights_sha256"):
            raise CheckpointError("weights do not match the hash recorded in config.json", weights_path)
        try:
            model = SheetAutoencoder(SheetAutoencoderConfig(**raw["model"]))
            model.load_state_dict(load(payload), strict=True)
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
