"""A trained SIM model as a self-describing folder: ``config.json`` (format, sizes, vocabulary, the
objectives it was trained with, its image tokenizer's fingerprint, the weights' SHA-256),
``model.safetensors``, and the image tokenizer itself under ``tokenizers/image/``, so the folder
alone reads score images. ``umt train experiment=sim_pretrain`` writes one."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from umt.errors import CheckpointError
from umt.models.sim import ScoreMidiModel, SimConfig
from umt.utils.weights_folder import read_weights_folder, write_weights_folder
from umt.vocab import vocabulary_from_dict

FORMAT = "umt-sim/1"
TOKENIZER_FOLDER = Path("tokenizers") / "image"


class SimFolder:
    """The model, its image tokenizer and the objectives it was trained with (name -> weight)."""

    def __init__(self, model: ScoreMidiModel, tokenizer: Any, objectives: dict[str, float]) -> None:
        self.model, self.tokenizer, self.objectives = model.eval(), tokenizer, dict(objectives)

    @property
    def scorers(self) -> tuple[str, ...]:
        """The retrieval scorers it was trained for (``match``, ``contrastive``)."""
        return tuple(name for name in ("match", "contrastive") if self.objectives.get(name, 0) > 0)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory / TOKENIZER_FOLDER)
        settings = {
            "model": self.model.config.to_dict(),
            "vocab": asdict(self.model.vocab.config),
            "objectives": self.objectives,
            "image_tokenizer": self.tokenizer.fingerprint,
        }
        write_weights_folder(directory, FORMAT, settings, self.model)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> SimFolder:
        from umt.tokenizers.image import ImageTokenizer

        raw, state = read_weights_folder(directory, FORMAT, "SIM model")
        tokenizer = ImageTokenizer.from_pretrained(Path(directory) / TOKENIZER_FOLDER)
        if tokenizer.fingerprint != raw.get("image_tokenizer"):
            raise CheckpointError("its image tokenizer is not the one it was trained with", directory)
        try:
            model = ScoreMidiModel(SimConfig(**raw["model"]), vocabulary_from_dict(raw["vocab"]))
            model.load_state_dict(state, strict=True)
            return cls(model, tokenizer, raw["objectives"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"config and weights do not fit ({error})", directory) from None
