"""Training the sheet-music autoencoder (:mod:`umt.models.sheet_autoencoder`) on the patches of
``umt data patches``: MSE reconstruction with Adam, plus cross-entropy of the style/composer head
on the patches that carry a ``label``; a seeded ``validation`` share of the *pages* is held out (a
page's patches stay together). ``umt train experiment=sheet_autoencoder autoencoder.patches=FILE``
runs it; after every epoch the state is written to ``RUN_DIR/train-state.pt``, so a killed run
continues where it was, and at the end the model folder is ``RUN_DIR/model`` with ``train.json``
(validation MSE, head accuracy)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from umt.errors import UserError
from umt.models.sheet_autoencoder import SheetAutoencoder, SheetAutoencoderConfig
from umt.style.autoencoder import AutoencoderFolder
from umt.style.probe import held_out_groups
from umt.training.epoch_state import STATE_FILE, resume_epoch_state, save_epoch_state
from umt.training.pages import recalibrate_batch_norm
from umt.utils.io import atomic_write_text


@dataclass
class AutoencoderReport:
    train_patches: int
    validation_patches: int
    validation_mse: float
    head_accuracy: float | None
    classes: list[str]
    epochs: int


def read_patches(manifest: Path) -> tuple[np.ndarray, list[str], list[str | None]]:
    """Patches ``uint8 [N, S, S]``, their groups (the unit held out together: a piece, else the
    page) and labels, from a ``umt data patches`` manifest."""
    from umt.tokenizers.image import read_image

    if not manifest.is_file():
        raise UserError("no such patches manifest", manifest)
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not records:
        raise UserError("holds no patches", manifest)
    patches = [read_image(manifest.parent / record["image"]) for record in records]
    if (
        len({patch.shape for patch in patches}) != 1
        or patches[0].shape[0] % 8
        or patches[0].shape[0] != patches[0].shape[1]
    ):
        raise UserError("patches must all be square and of one size divisible by 8", manifest)
    # held-out splits keep a group together (a piece); patches of older manifests: their page
    return (
        np.stack(patches),
        [r.get("group") or r["page"] for r in records],
        [r.get("label") for r in records],
    )


def train_autoencoder(cfg) -> AutoencoderReport:
    """Train (or continue) from the ``autoencoder`` node of a composed training config."""
    node = cfg.autoencoder
    if not node.patches:
        raise UserError("autoencoder.patches must name a `umt data patches` manifest")
    run_dir = Path(cfg.run_dir)
    patches, pages, labels = read_patches(Path(node.patches))
    classes = sorted({label for label in labels if label})
    targets = torch.tensor([classes.index(label) if label else -1 for label in labels])
    held = held_out_groups(pages, node.validation, int(cfg.seed))
    validation = np.array([page in held for page in pages])
    x = torch.from_numpy(patches)[:, None]
    train_x, train_y = x[~validation], targets[~validation]
    torch.manual_seed(int(cfg.seed))
    config = SheetAutoencoderConfig(channels=tuple(node.channels), dropout=node.dropout, classes=len(classes))
    model = SheetAutoencoder(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=node.lr)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    settings = json.dumps(
        {"patches": str(node.patches), "seed": int(cfg.seed), **_plain(node)}, sort_keys=True
    )
    first = resume_epoch_state(run_dir / STATE_FILE, settings, model, optimizer, generator, "run_dir")
    for epoch in range(first, node.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), node.batch_size):
            batch = order[start : start + node.batch_size]
            if len(batch) < 2:
                continue
            inputs = train_x[batch].float() / 255.0
            reconstruction, logits = model(inputs)
            loss = torch.nn.functional.mse_loss(reconstruction, inputs)
            known = train_y[batch] >= 0
            if logits is not None and bool(known.any()):
                loss = loss + node.head_weight * torch.nn.functional.cross_entropy(
                    logits[known], train_y[batch][known]
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        save_epoch_state(run_dir / STATE_FILE, settings, model, optimizer, generator, epoch + 1)
    recalibrate_batch_norm(model, train_x, node.batch_size)
    report = _report(model, x[validation], targets[validation], len(train_x), classes, node.epochs)
    AutoencoderFolder(model, patches.shape[1], classes).save_pretrained(run_dir / "model")
    atomic_write_text(run_dir / "model" / "train.json", json.dumps(asdict(report), indent=2) + "\n")
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    return report


@torch.no_grad()
def _report(model, x, y, train_count: int, classes: list[str], epochs: int) -> AutoencoderReport:
    model.eval()
    errors, right, counted = [], 0, 0
    for start in range(0, len(x), 32):
        inputs = x[start : start + 32].float() / 255.0
        reconstruction, logits = model(inputs)
        errors.append(float(((reconstruction - inputs) ** 2).mean()) * len(inputs))
        known = y[start : start + 32] >= 0
        if logits is not None and bool(known.any()):
            right += int((logits[known].argmax(-1) == y[start : start + 32][known]).sum())
            counted += int(known.sum())
    mse = sum(errors) / max(1, len(x))
    return AutoencoderReport(train_count, len(x), mse, right / counted if counted else None, classes, epochs)


def _plain(node) -> dict:
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(node, resolve=True) if not isinstance(node, dict) else dict(node)
    return {k: v for k, v in values.items() if k != "patches"}
