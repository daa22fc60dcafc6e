"""Baking on several devices / nodes through Lightning's distributed prediction.

``Trainer.predict`` runs :class:`TokenizerModule` (the tokenizer's model on each device) over a
DataLoader of manifest entries that Lightning splits between ranks (for prediction it injects an
*unrepeated* distributed sampler: every entry goes to exactly one rank, none is padded in twice).
DataLoader workers read and decode files (:class:`umt.data.bake.BakeDataset`); the
:class:`ShardPredictionWriter` callback writes each rank's results to that rank's own shard files
and gathers the failures at the end. The planning (what is already baked) happens before the
Trainer starts, identically on every rank, so all ranks see the same list of entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from umt.data.bake import (
    BakeDataset,
    BakeSummary,
    Failure,
    LoadedEntry,
    ShardSink,
    TokenizedEntry,
    VariantChoice,
    collate_entries,
    prepare_job,
    tokenize_entry,
    write_failures_report,
)
from umt.data.shards import ShardInfo
from umt.errors import UserError
from umt.modalities.windows import WINDOW_SECONDS
from umt.vocab import Vocabulary


class TokenizerModule(L.LightningModule):
    """Wraps a tokenizer for ``Trainer.predict``: a batch of loaded entries -> tokenized entries.

    The tokenizer's models (itself if it is an ``nn.Module``, else its ``nn.Module`` attributes,
    e.g. ``ImageTokenizer.model`` / ``AudioTokenizer.codec``) become submodules, so Lightning puts
    them on this rank's device; the tokenizer object keeps using the same (moved) modules.
    """

    def __init__(
        self, tokenizer: Any, vocab: Vocabulary, choice: VariantChoice, window_seconds: float = WINDOW_SECONDS
    ) -> None:
        super().__init__()
        self.vocab = vocab
        self.choice = choice
        self.window_seconds = window_seconds
        if isinstance(tokenizer, torch.nn.Module):
            modules = {"tokenizer": tokenizer}
        else:
            modules = {
                name: value
                for name, value in getattr(tokenizer, "__dict__", {}).items()
                if isinstance(value, torch.nn.Module)
            }
        self.tokenizer_modules = torch.nn.ModuleDict(modules)
        object.__setattr__(self, "tokenizer", tokenizer)  # a plain reference (already registered above)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Inputs of one batch differ in size; tokenize_entry moves each one when it is used.
        return batch

    def predict_step(self, batch: list[LoadedEntry], batch_idx: int) -> list[TokenizedEntry]:
        return [
            tokenize_entry(
                loaded,
                self.tokenizer,
                self.vocab,
                self.choice,
                self.device,
                window_seconds=self.window_seconds,
            )
            for loaded in batch
        ]


class ShardPredictionWriter(BasePredictionWriter):
    """Writes each rank's predictions to ``OUT/shard-rankRRRR-*.safetensors``; on the way out
    (end or crash) flushes what is complete; at the end gathers every rank's failures."""

    def __init__(self, out_dir: str | Path, info: ShardInfo, items_per_shard: int = 1024) -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self.info = info
        self.items_per_shard = items_per_shard
        self.sink: ShardSink | None = None
        self.all_failures: list[Failure] = []
        self.items_written = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.sink = ShardSink(
            self.out_dir, self.info, rank=trainer.global_rank, items_per_shard=self.items_per_shard
        )

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: list[TokenizedEntry],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        assert self.sink is not None
        for tokenized in prediction:
            self.sink.add(tokenized)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self.sink is not None
        self.sink.close()

    def finish(self, trainer: L.Trainer) -> None:
        """Close this rank's writer and gather every rank's failures and counts.

        Called after ``trainer.predict`` returns, on every rank: a rank that got no batch skips
        the predict hooks, so a collective there would hang the others.
        """
        local = ([], 0)
        if self.sink is not None:
            self.sink.close()
            local = (self.sink.failures, self.sink.items_written)
        gathered = [local]
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, local)
        self.all_failures = [failure for failures, _ in gathered for failure in failures]
        self.items_written = sum(written for _, written in gathered)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if self.sink is not None:
            self.sink.close()


def bake_with_lightning(
    manifest: str | Path,
    out_dir: str | Path,
    tokenizer: Any,
    vocab: Vocabulary,
    variants: VariantChoice | str | int = "all",
    split: str | None = None,
    items_per_shard: int = 1024,
    accelerator: str = "auto",
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    batch_size: int = 8,
    num_workers: int = 0,
    progress: bool = True,
    window_seconds: float = WINDOW_SECONDS,
) -> BakeSummary:
    """Bake a manifest on ``devices`` x ``num_nodes`` ranks. Every rank returns the same summary
    (``is_global_zero`` tells which one should print); rank 0 writes ``OUT/failures.json``."""
    if "spawn" in str(strategy):
        raise UserError(f"strategy {strategy!r} is not supported for baking: use 'ddp' (or 'auto')")
    choice = variants if isinstance(variants, VariantChoice) else VariantChoice.parse(variants)
    job = prepare_job(manifest, out_dir, tokenizer, vocab, choice, split=split, window_seconds=window_seconds)
    writer = ShardPredictionWriter(out_dir, job.info, items_per_shard=items_per_shard)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        callbacks=[writer],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        default_root_dir=str(out_dir),
    )
    # Lightning's prediction sampler wants >= 1 item per rank: pad short lists with no-op items.
    dataset = BakeDataset(job.todo, tokenizer, job.done, min_length=trainer.world_size)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_entries
    )
    module = TokenizerModule(tokenizer, vocab, choice, window_seconds)
    if job.todo:  # the same on every rank (planned before any rank writes)
        trainer.predict(module, dataloaders=loader, return_predictions=False)
        writer.finish(trainer)
    if trainer.is_global_zero:
        write_failures_report(out_dir, manifest, writer.all_failures)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        trainer.strategy.barrier("umt-bake-done")  # no rank moves on while rank 0 still writes
    return BakeSummary(
        entries=len(job.entries),
        skipped=len(job.entries) - len(job.todo),
        items_written=writer.items_written,
        failures=writer.all_failures,
        out_dir=Path(out_dir),
        is_global_zero=trainer.is_global_zero,
    )
