"""SIM pre-training (:mod:`umt.models.sim`): ``umt train experiment=sim_pretrain sim.manifest=FILE
sim.image_tokenizer=DIR``.

The items of the manifest's training splits (all but ``sim.test_split`` and ``val``) are read once
(:mod:`umt.sim.items`, cached in ``RUN_DIR/sim-items.npz``). Every step sums the weighted losses of
the objectives in ``sim.objectives`` (:mod:`umt.sim.objectives`) on one batch. Negatives and masks
come from a generator seeded by (seed, epoch), and the state is written after every epoch
(:mod:`umt.training.epoch_state`), so a killed run continues where it was and ends with the same
weights. At the end the model folder is ``RUN_DIR/model`` and ``RUN_DIR/model/train.json`` holds
the test split's figures (:mod:`umt.sim.evaluate`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from umt.errors import UserError
from umt.models.sim import ScoreMidiModel, SimConfig
from umt.sim.items import SimItem, load_reported, sim_vocabulary
from umt.training.epoch_state import STATE_FILE, resume_epoch_state, save_epoch_state
from umt.utils.io import atomic_write_text

ITEMS_CACHE = "sim-items.npz"


@dataclass
class SimReport:
    train_items: int
    test_items: int
    objectives: dict[str, float]
    epochs: int
    left_out: dict[str, int] = field(default_factory=dict)
    """Items left out and why (unreadable, too large for the model)."""
    last_epoch: dict[str, float] = field(default_factory=dict)
    """Each objective's mean loss and metric over the last epoch."""
    evaluation: dict = field(default_factory=dict)


def fits(item: SimItem, config: SimConfig, vocab) -> bool:
    """Whether the model's position tables hold the item's pooled grid and MIDI rows."""
    pool = config.image_pool
    rows, columns = -(-item.grid.shape[0] // pool), -(-item.grid.shape[1] // pool)
    return (
        rows <= config.max_grid_rows
        and columns <= config.max_grid_columns
        and len(item.midi_ids(vocab)) <= config.max_midi_rows
    )


def train_sim(cfg) -> SimReport:
    """Train (or continue) from the ``sim`` node of a composed training config."""
    from omegaconf import OmegaConf

    from umt.sim.evaluate import evaluate_model
    from umt.sim.folder import SimFolder
    from umt.sim.objectives import PairSource

    node = cfg.sim
    if not node.manifest or not node.image_tokenizer:
        raise UserError("sim.manifest and sim.image_tokenizer must be given")
    weights = {k: float(v) for k, v in OmegaConf.to_container(node.objectives).items() if v > 0}
    if not weights:
        raise UserError("sim.objectives: give at least one a weight above 0")
    run_dir = Path(cfg.run_dir)
    tokenizer = _image_tokenizer(node.image_tokenizer)
    vocab = sim_vocabulary(tokenizer)
    config = SimConfig(**OmegaConf.to_container(node.model))
    items, failures, _ = load_reported(
        node.manifest, tokenizer, vocab, node.label_field, run_dir / ITEMS_CACHE
    )
    usable = [item for item in items if fits(item, config, vocab)]
    left_out = {"unreadable": len(failures), "too large for the model": len(items) - len(usable)}
    train = [item for item in usable if item.split not in (node.test_split, "val")]
    test = [item for item in usable if item.split == node.test_split]
    if len(train) < 2:
        raise UserError(f"holds {len(train)} usable training items; SIM needs at least 2", node.manifest)

    seed = int(cfg.seed)
    torch.manual_seed(seed)
    model = ScoreMidiModel(config, vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=node.lr, weight_decay=node.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    options = {"mask_share": float(node.mask_share)}
    settings = json.dumps(
        {"sim": OmegaConf.to_container(node, resolve=True), "seed": seed, "tokenizer": tokenizer.fingerprint},
        sort_keys=True,
    )
    source = PairSource(train, vocab, float(node.hard_share))
    first = resume_epoch_state(run_dir / STATE_FILE, settings, model, optimizer, generator, "run_dir")
    last: dict[str, float] = {}
    for epoch in range(first, node.epochs):
        last = _epoch(
            model,
            optimizer,
            source,
            weights,
            options,
            generator,
            np.random.default_rng([seed, epoch]),
            node.batch_size,
        )
        shown = ", ".join(f"{name} {value:.3f}" for name, value in last.items())
        print(f"sim epoch {epoch + 1}/{node.epochs}: {shown}", file=sys.stderr)
        save_epoch_state(run_dir / STATE_FILE, settings, model, optimizer, generator, epoch + 1)
    folder = SimFolder(model, tokenizer, weights)
    report = SimReport(len(train), len(test), weights, int(node.epochs), left_out, last)
    report.evaluation = evaluate_model(folder, test, usable, seed)
    folder.save_pretrained(run_dir / "model")
    atomic_write_text(run_dir / "model" / "train.json", json.dumps(asdict(report), indent=2) + "\n")
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    return report


def _epoch(model, optimizer, source, weights, options, generator, rng, batch_size: int) -> dict[str, float]:
    """One pass over the training items; each objective's mean loss and metric."""
    from umt.sim.objectives import OBJECTIVES

    model.train()
    sums: dict[str, list[float]] = {}
    for batch in bucketed_batches(source, batch_size, generator):
        if len(batch) < 2:
            continue
        total = None
        for name, weight in weights.items():
            loss, metric = OBJECTIVES.get(name).loss(model, source, batch, rng, options)
            total = weight * loss if total is None else total + weight * loss
            sums.setdefault(f"{name}_loss", []).append(float(loss.detach()))
            sums.setdefault(f"{name}_metric", []).append(metric)
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return {name: _mean(values) for name, values in sums.items()}


def bucketed_batches(source, batch_size: int, generator: torch.Generator, pool: int = 8) -> list[list[int]]:
    """The epoch's batches: a random order cut into pools of ``pool`` batches, each pool sorted by
    the items' lengths (pooled image cells plus MIDI rows) and cut into batches, the batches then
    shuffled, so a batch pads little and every item is seen once."""
    order = torch.randperm(len(source.items), generator=generator).tolist()
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = sorted(order[start : start + batch_size * pool], key=source.length)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _mean(values: list[float]) -> float:
    """Mean of the values that are numbers (a batch without bars has no masked-bar metric)."""
    numbers = [value for value in values if value == value]
    return float(np.mean(numbers)) if numbers else float("nan")


def _image_tokenizer(directory: str):
    from umt.tokenizers.folders import load_tokenizer

    tokenizer = load_tokenizer(directory)
    if tokenizer.modality != "image":
        raise UserError(f"is a {tokenizer.modality} tokenizer; SIM reads score images", directory)
    return tokenizer
