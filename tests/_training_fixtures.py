"""Tiny token shards for the training tests (made on the fly; nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests._vocab import TINY_VOCAB, tiny_vocab  # noqa: F401  (re-exported for the training tests)
from umt.data.shards import ShardInfo, ShardWriter
from umt.modalities.windows import WINDOW_SECONDS, has_time_axis, window_key
from umt.vocab import Vocabulary


def random_rows(vocab: Vocabulary, modality: str, length: int, rng: np.random.Generator) -> np.ndarray:
    if modality in ("image", "audio"):
        codes = rng.integers(
            0, vocab[f"{modality}/cb0"].size, size=(length, vocab.modality_codebooks(modality))
        )
        return vocab.codes_to_ids(modality, codes)
    token_range = vocab["lmx/token"] if modality == "lmx" else vocab["midi/pitch"]
    return vocab.single_stream_rows(rng.integers(token_range.start, token_range.stop, size=length))


def make_shards(
    root: Path,
    vocab: Vocabulary,
    datasets: dict[str, tuple[str, str, int]] | None = None,
    seed: int = 0,
    variants: int = 1,
    hashes: dict[str, str] | None = None,
) -> Path:
    """``{root}/{dataset}/{modality}`` shard sets: ``{dataset: (source, target, items)}``, stamped
    with the tokenizer fingerprints ``hashes`` by modality (none by default).

    Audio and MIDI items are one 20 s window each (keys ``{dataset}-{i:03d}@0``, as baking writes
    them) of 3..16 rows, within the tiny config's limits; the others 3..29 rows."""
    datasets = datasets or {"grandstaff": ("image", "lmx", 10), "maestro": ("audio", "midi", 9)}
    rng = np.random.default_rng(seed)
    for dataset, (source, target, items) in datasets.items():
        for modality in (source, target):
            windowed = has_time_axis(modality)
            window = WINDOW_SECONDS if windowed else None
            info = ShardInfo(modality, vocab.layout_hash, (hashes or {}).get(modality, ""), window)
            with ShardWriter(root / dataset / modality, info, items_per_shard=4) as writer:
                for i in range(items):
                    key = window_key(f"{dataset}-{i:03d}", 0) if windowed else f"{dataset}-{i:03d}"
                    for variant in range(variants if modality == source else 1):
                        length = int(rng.integers(3, 17 if windowed else 30))
                        writer.add(key, random_rows(vocab, modality, length, rng), variant)
    return root


# A training script run in a subprocess (and by every rank Lightning launches): fits of the same
# config in ``phases`` (name, run_dir, stop step or None), each rank writing what it saw to
# ``result-rank<N>.json``. Format with ``repo``, ``phases`` and ``common`` (Hydra overrides).
PHASES_SCRIPT = """
import json, sys
sys.path.insert(0, {repo!r})
import lightning.pytorch as pl
import torch
from umt.training.config import compose
from umt.training.train import train

torch.set_num_threads(1)


class StopAt(pl.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class Record(pl.Callback):
    def on_train_start(self, trainer, module):
        self.restored = trainer.datamodule.shadow.state_dict()


results = {{}}
for phase, run_dir, stop in {phases!r}:
    record = Record()
    callbacks = [record] + ([StopAt(stop)] if stop else [])
    trainer = train(compose({common!r} + [f"run_dir={{run_dir}}"]), callbacks=callbacks)
    results[phase] = {{
        "rank": trainer.global_rank,
        "strategy": type(trainer.strategy).__name__,
        "global_step": trainer.global_step,
        "restored": record.restored,
        "final": trainer.datamodule.shadow.state_dict(),
    }}
with open(f"result-rank{{trainer.global_rank}}.json", "w") as handle:
    json.dump(results, handle)
"""


def assert_a_kill_changes_nothing(monkeypatch, module, train_into, epoch: int = 2) -> None:
    """Train into ``straight``; train into ``killed`` but die once epoch ``epoch``'s state is written
    (``module.save_epoch_state``: the epoch-based trainers), then run the same command again: both
    model folders must hold the same weights. ``train_into(folder_name)`` runs the command."""
    import pytest
    import torch
    from safetensors.torch import load_file

    straight = train_into("straight")
    real_save = module.save_epoch_state

    def save_then_die(*args):
        real_save(*args)
        if args[-1] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_epoch_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_into("killed")
    monkeypatch.setattr(module, "save_epoch_state", real_save)
    killed = train_into("killed")
    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(killed / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
