"""A small model's self-describing folder: ``config.json`` (its format name, its settings and the
weights' SHA-256) beside ``model.safetensors``, each written atomically, read back verified. The
page classifier and the sheet-music autoencoder keep their models this way."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from umt.errors import CheckpointError
from umt.utils.io import atomic_write_bytes, atomic_write_text

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def write_weights_folder(
    directory: str | Path, format_name: str, settings: dict[str, Any], module: torch.nn.Module
) -> None:
    """Write the module's weights, then the config that names their hash (so a reader never sees a
    config without its weights)."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    atomic_write_bytes(directory / WEIGHTS_FILE, payload)
    config = {"format": format_name, **settings, "weights_sha256": hashlib.sha256(payload).hexdigest()}
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")


def read_weights_folder(
    directory: str | Path, format_name: str, what: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config and the weights of a folder of ``format_name``; :class:`CheckpointError` naming the
    file for a missing, corrupt, foreign or tampered one (``what``: the folder's kind, for messages)."""
    from safetensors.torch import load

    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"not a {what} folder ({CONFIG_FILE} + {WEIGHTS_FILE})", directory)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"corrupt {CONFIG_FILE} ({error})", config_path) from None
    if not isinstance(config, dict) or config.get("format") != format_name:
        raise CheckpointError(f"not a {format_name} folder", config_path)
    payload = weights_path.read_bytes()
    if hashlib.sha256(payload).hexdigest() != config.get("weights_sha256"):
        raise CheckpointError(f"weights do not match the hash recorded in {CONFIG_FILE}", weights_path)
    try:
        return config, load(payload)
    except Exception as error:  # SafetensorError: a file that only looks complete
        raise CheckpointError(f"unreadable weights ({error})", weights_path) from None
