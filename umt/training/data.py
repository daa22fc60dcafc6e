"""The Lightning data module: shard sets -> :class:`~umt.data.pipeline.MixtureStream`, with its
data position saved in every checkpoint (see :mod:`umt.data.pipeline` for how that is exact).

Under DDP every rank has its own sampler (its share of every epoch); a checkpoint holds the states
of all ranks (gathered when it is written), and each rank restores its own on resume. The
tokenizer fingerprints the shards were baked with go into the checkpoint too, and a resume on
shards of other tokenizers is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from umt.data.pipeline import MixtureSampler, MixtureStream, PairedDataset, build_stream_specs
from umt.data.shards import ShardSet
from umt.data.storage import is_remote, local_shard_dir
from umt.errors import CheckpointError, UserError
from umt.modalities.windows import WINDOW_SECONDS, has_time_axis
from umt.tasks import Mixture, get_task
from umt.training.distributed import gather_from_ranks
from umt.vocab import Vocabulary


def open_stream_datasets(
    mixture: Mixture,
    root: str,
    vocab: Vocabulary,
    cache_dir: str | None = None,
    tokenizer_hashes: Mapping[str, str] | None = None,
    max_len: Mapping[str, int | None] | None = None,
    model_limits: tuple[int, int] | None = None,
    window_seconds: float | None = WINDOW_SECONDS,
) -> dict[str, PairedDataset]:
    """One :class:`PairedDataset` per mixture stream from ``{root}/{dataset}/{modality}``.

    Shards must carry ``vocab``'s layout hash (and the given tokenizer hashes, by modality), and
    audio and MIDI shards the window ``window_seconds`` (``None``: any). Examples longer than
    ``max_len`` (content rows per modality) or than the model's ``(source, target)`` positions
    less SOS and EOS are skipped and counted; a ``max_len`` above the model's limit is refused.
    """
    shard_sets: dict[tuple[str, str], ShardSet] = {}
    root = root.removeprefix("file://")

    def shard_set(dataset: str, modality: str) -> ShardSet:
        if (dataset, modality) not in shard_sets:
            url = (
                f"{root.rstrip('/')}/{dataset}/{modality}"
                if is_remote(root)
                else str(Path(root) / dataset / modality)
            )
            directory = local_shard_dir(url, cache_dir)
            shards = ShardSet(
                directory,
                modality=modality,
                vocab_hash=vocab.layout_hash,
                tokenizer_hash=(tokenizer_hashes or {}).get(modality),
            )
            check_window(shards, modality, window_seconds)
            shard_sets[(dataset, modality)] = shards
        return shard_sets[(dataset, modality)]

    datasets = {}
    for (task_name, dataset, _), name in zip(mixture.streams, mixture.stream_names):
        task = get_task(task_name)
        source_limit = side_limit(max_len or {}, task.source, model_limits, 0)
        target_limit = side_limit(max_len or {}, task.target, model_limits, 1)
        datasets[name] = PairedDataset(
            shard_set(dataset, task.source), shard_set(dataset, task.target), name, source_limit, target_limit
        )
    return datasets


def side_limit(
    max_len: Mapping[str, int | None], modality: str, model_limits: tuple[int, int] | None, side: int
) -> int | None:
    """Content rows one side of an example may hold: ``max_len[modality]``, within the model's
    positions on that side (0: source, 1: target) less SOS and EOS."""
    wanted = max_len.get(modality)
    if model_limits is None:
        return wanted
    room = model_limits[side] - 2
    if wanted is not None and wanted > room:
        name = ("max_source_len", "max_target_len")[side]
        raise UserError(
            f"data.max_len.{modality}={wanted} rows does not fit the model's {name}={model_limits[side]} "
            f"(at most {room} content rows besides SOS and EOS): lower it or raise model.{name}"
        )
    return room if wanted is None else wanted


def check_window(shards: ShardSet, modality: str, window_seconds: float | None) -> None:
    """Refuse audio or MIDI shards baked with another window than training's (one line)."""
    if window_seconds is None or not has_time_axis(modality) or shards.info is None:
        return
    have = shards.info.window_seconds
    if have is None:
        raise UserError(
            f"{modality} shards baked as whole files, before time-exact windows: bake them again "
            f"(umt bake {modality} ... --window-seconds {window_seconds:g})",
            shards.directory,
        )
    if abs(have - window_seconds) > 1e-9:
        raise UserError(
            f"{modality} shards hold {have:g} s windows, data.window_seconds is {window_seconds:g}",
            shards.directory,
        )


class TranslationDataModule(pl.LightningDataModule):
    """Training batches of a task mixture for this DDP rank; stateful for exact resume."""

    def __init__(
        self,
        data: Mapping[str, Any],
        mixture: Mixture,
        vocab: Vocabulary,
        seed: int = 0,
        accumulate_grad_batches: int = 1,
        model_limits: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.data_config = dict(data)
        self.model_limits = model_limits
        """The model's ``(max_source_len, max_target_len)``: longer examples are skipped."""
        self.mixture = mixture
        self.vocab = vocab
        self.seed = seed
        self.accumulate_grad_batches = accumulate_grad_batches
        self.stream: MixtureStream | None = None
        self.shadow: MixtureSampler | None = None
        self._pending_state: dict | None = None
        self.tokenizer_hashes: dict[str, str] = {}
        """Fingerprints of the tokenizers the shards were baked with, by modality (set up in
        :meth:`setup`; rule-based modalities have none)."""

    def setup(self, stage: str | None = None) -> None:
        if self.stream is not None:
            return
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        cfg = self.data_config
        datasets = open_stream_datasets(
            self.mixture,
            str(cfg["root"]),
            self.vocab,
            cfg.get("cache_dir"),
            cfg.get("tokenizer_hashes"),
            max_len=dict(cfg.get("max_len") or {}),
            model_limits=self.model_limits,
            window_seconds=float(cfg.get("window_seconds", WINDOW_SECONDS)),
        )
        if rank == 0:
            report_skipped(datasets)
        specs = build_stream_specs(self.mixture, datasets)
        sampler = MixtureSampler(
            self.mixture,
            specs,
            batch_size=int(cfg["batch_size"]),
            seed=self.seed,
            rank=rank,
            world_size=world,
            accumulate_grad_batches=self.accumulate_grad_batches,
            bucket_pool=int(cfg.get("bucket_pool", 8)),
        )
        dropout = float(cfg.get("condition_dropout", 0.0))
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"data.condition_dropout must be in [0, 1), got {dropout}")
        self.stream = MixtureStream(
            sampler, [datasets[name] for name in self.mixture.stream_names], self.vocab, dropout
        )
        self.shadow = sampler
        self.tokenizer_hashes = shard_tokenizer_hashes(datasets.values())
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        assert self.stream is not None and self.shadow is not None
        # Workers start from the consumed position (a fresh copy of the shadow's state).
        self.stream.sampler = self.shadow
        num_workers = int(self.data_config.get("num_workers", 0))
        return torch.utils.data.DataLoader(
            self.stream,
            batch_size=None,
            num_workers=num_workers,
            # Its own generator: creating the iterator must not draw from the global torch RNG,
            # or a resumed run's dropout would differ from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=False,
            pin_memory=bool(self.data_config.get("pin_memory", False)),
            prefetch_factor=int(self.data_config.get("prefetch_factor", 2)) if num_workers > 0 else None,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Advance the shadow sampler past the batch the trainer is about to consume."""
        if self.shadow is not None and isinstance(batch, dict) and "batch_index" in batch:
            expected = self.shadow.batch_index
            index = int(batch["batch_index"])
            if index != expected:
                raise RuntimeError(f"data stream out of order: got batch {index}, expected {expected}")
            self.shadow.next_batch()
        return batch

    def state_dict(self) -> dict[str, Any]:
        """``{"samplers": [state of rank 0, rank 1, ...]}``: gathered from every rank (a collective)."""

        if self.shadow is None:
            return {}
        return {"samplers": gather_from_ranks(self.shadow.state_dict())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore this rank's sampler from a :meth:`state_dict` of a run with as many ranks."""
        if not state_dict:
            return
        if self.shadow is None:  # restored before setup: apply it there
            self._pending_state = state_dict
            return
        # Checkpoints written before every rank's state was kept hold one "sampler".
        samplers = state_dict["samplers"] if "samplers" in state_dict else [state_dict["sampler"]]
        if len(samplers) != self.shadow.world_size:
            raise CheckpointError(
                f"the checkpoint holds the data positions of {len(samplers)} DDP rank(s), this run has "
                f"{self.shadow.world_size}: resume with the same number of processes"
            )
        self.shadow.load_state_dict(samplers[self.shadow.rank])
        self._pending_state = None


def shard_tokenizer_hashes(datasets: Iterable[PairedDataset]) -> dict[str, str]:
    """The tokenizer fingerprint of the shards of each modality (rule-based modalities have none).

    Raises :class:`UserError` when shard sets of one modality were baked by different tokenizers.
    """
    hashes: dict[str, str] = {}
    where: dict[str, str] = {}
    for dataset in datasets:
        for shard_set in (dataset.source, dataset.target):
            info = shard_set.info
            if info is None or not info.tokenizer_hash:
                continue
            known = hashes.setdefault(info.modality, info.tokenizer_hash)
            where.setdefault(info.modality, str(shard_set.directory))
            if known != info.tokenizer_hash:
                raise UserError(
                    f"{info.modality} shards of two tokenizers: {known} in {where[info.modality]}, "
                    f"{info.tokenizer_hash} here",
                    shard_set.directory,
                )
    return hashes


def report_skipped(datasets: Mapping[str, PairedDataset]) -> None:
    """One line on stderr per stream that left examples out, with the counts and reasons."""
    for name, dataset in datasets.items():
        if dataset.skipped:
            reasons = ", ".join(f"{count} {why}" for why, count in dataset.skipped.items())
            print(f"umt train: {name}: {len(dataset)} examples, left out {reasons}", file=sys.stderr)
