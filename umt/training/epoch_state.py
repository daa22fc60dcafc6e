"""Resuming the small epoch-based trainers (the page classifier, the sheet-music autoencoder).

After every epoch the run's state (model, optimizer, data-order generator, torch's global generator
for dropout, the epoch, and the settings that made it) is written atomically to one file; the same
command run again continues from it, and a run with other settings into the same place is refused
rather than mixed."""

from __future__ import annotations

from pathlib import Path

import torch

from umt.errors import UserError
from umt.utils.io import atomic_write

STATE_FILE = "train-state.pt"
"""The state's file name in the run's folder."""


def save_epoch_state(
    path: Path, settings: str, model: torch.nn.Module, optimizer, generator: torch.Generator, epoch: int
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "settings": settings,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }  # fmt: skip  (dropout draws from the global generator)
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)


def resume_epoch_state(
    path: Path, settings: str, model: torch.nn.Module, optimizer, generator: torch.Generator, change: str
) -> int:
    """The epoch to start from (0 without a state); the state loaded into the model, optimizer and
    generator. ``change``: what to give instead when the settings differ (for the message)."""
    if not path.is_file():
        return 0
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # an unreadable state is only lost progress: start again
        return 0
    if state.get("settings") != settings:
        raise UserError(f"holds a run with other settings ({path.name}); give another {change}", path.parent)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    if "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"])
