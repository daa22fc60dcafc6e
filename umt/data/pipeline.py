"""The training data pipeline: paired token shards -> a curriculum mixture -> padded batches.

Layout on disk (or under a URL): ``{root}/{dataset}/{modality}/*.safetensors``, one
:class:`~umt.data.shards.ShardSet` per (dataset, modality), items keyed by the same key in every
modality of a dataset. :class:`PairedDataset` joins a source and a target shard set by key.

**Sampling.** :class:`MixtureSampler` is a small deterministic state machine that decides every
batch: which stream (task, dataset) each example comes from (the mixture's rates at the current
curriculum step), which item (the next one in the stream's shuffled epoch), which augmentation
variant and where a too-long sequence is sliced. Each stream walks through its own epochs: the
permutation of epoch ``e`` is drawn from ``(seed, stream, e)`` and split by DDP rank
(``perm[rank::world]``), so across ranks every item is seen exactly once per epoch. Examples are
drawn in pools of ``bucket_pool`` batches, sorted by target then source length and cut into
batches (length bucketing), and the batches of a pool are shuffled.

**Workers.** :class:`MixtureStream` (a torch ``IterableDataset``) runs the same sampler in every
dataloader worker, but a worker only *loads* the batches whose number ``n`` (counted from the
start of the iterator) has ``n % num_workers == worker_id``; the DataLoader takes batches from its
workers round-robin, so the batches arrive in the sampler's order, none twice, none skipped. The
sampler does no I/O (item lengths come from the shards' offsets, read once when they are opened),
so running it in every worker costs little; a worker reads only the items of its own batches.

**Exact resume.** Because the sampler's decisions are all the randomness there is, the data
position is the sampler's state (batch number, per-stream epoch and cursor, RNG state, pending
bucketed batches). The main process keeps a *shadow* sampler that advances once per batch the
trainer consumes (each batch carries its ``batch_index``); its state is what goes into a checkpoint
(:class:`umt.training.data.TranslationDataModule` does this, one state per DDP rank, and each rank
restores its own), not the state of workers that have prefetched ahead.

**No cutting.** Examples are never cut while training. Audio and MIDI are baked in time-exact
windows of ``data.window_seconds`` (:mod:`umt.modalities.windows`), so an audio window and the MIDI
window of the same seconds pair by key; pairs without a shared time axis (image <-> LMX, image
<-> audio) are whole items, and a time-axis file longer than one window does not pair with a whole
image. Items longer than the limits (``max_len`` per modality, content rows without SOS/EOS, and
the model's positions) are skipped when the data set is opened and counted
(:attr:`PairedDataset.skipped`). Every target ends with its EOS row, and no target holds another.

**Augmentation.** Every source variant of a key is an item; the target's variant is drawn for each
example on its own (seeded, from the sampler's RNG), so shift ``k`` of an image is not always
paired with shift ``k`` of its audio.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from umt.data.shards import ShardSet
from umt.errors import InputError
from umt.modalities.windows import has_time_axis, split_window_key, window_key
from umt.tasks import Mixture, get_task
from umt.vocab import PAD_ID, Vocabulary


class PairedDataset:
    """The examples of one task: source and target items joined by key (see the module docstring).

    ``items[i]`` is ``(source key, source variant, target key)``; ``target_variants[target key]``
    lists the target's variants, one of which the sampler draws per example. ``lengths[i]`` holds
    the source's rows and the longest target variant's rows. Items with more content rows than
    ``source_limit`` / ``target_limit`` (``None``: no limit) are left out; :attr:`skipped` counts
    what was left out and why.
    """

    def __init__(
        self,
        source: ShardSet,
        target: ShardSet,
        name: str = "",
        source_limit: int | None = None,
        target_limit: int | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.name = name
        self.skipped: dict[str, int] = {}
        self.target_variants: dict[str, tuple[int, ...]] = {}
        for key, variant in target.items():
            self.target_variants.setdefault(key, ())
            self.target_variants[key] += (variant,)
        target_key = _key_joiner(source, target, self.target_variants, self.skipped)
        source_limit = float("inf") if source_limit is None else source_limit
        target_limit = float("inf") if target_limit is None else target_limit
        self.items: list[tuple[str, int, str]] = []
        lengths = []
        for key, variant in source.items():
            joined = target_key(key)
            if joined is None:
                continue
            # Lengths come from the shards' offsets: reading rows here would decode the whole data
            # set on every rank.
            target_length = max(target.length(joined, v) for v in self.target_variants[joined])
            length = (source.length(key, variant), target_length)
            if length[0] > source_limit or length[1] > target_limit:
                self.skipped["longer than the limits"] = self.skipped.get("longer than the limits", 0) + 1
                continue
            self.items.append((key, variant, joined))
            lengths.append(length)
        if not self.items:
            counts = ", ".join(f"{n} {why}" for why, n in self.skipped.items()) or "no key in both"
            raise InputError(
                f"no example pairs {source.directory} with {target.directory} ({counts})", name or None
            )
        self.lengths = np.array(lengths, dtype=np.int64).reshape(-1, 2)
        self.target_variant_counts = np.array(
            [len(self.target_variants[joined]) for _, _, joined in self.items], dtype=np.int64
        )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_keys(self) -> int:
        """Distinct keys (inputs), however many augmentation variants each has."""
        return len({key for key, _, _ in self.items})

    def get(self, index: int, target_choice: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Source rows ``[S, K]`` and target rows ``[T, K]`` (no SOS/EOS) of item ``index``, with the
        target's ``target_choice``-th variant."""
        key, variant, joined = self.items[index]
        target_variant = self.target_variants[joined][target_choice]
        return self.source.get(key, variant), self.target.get(joined, target_variant)


def _key_joiner(source: ShardSet, target: ShardSet, target_keys: Mapping[str, Any], skipped: dict[str, int]):
    """A function from a source key to its target key (``None``: no partner), by the rules of the
    module docstring: time-axis windows pair with a whole item only when they are its only window."""
    source_windowed = _windowed(source)
    target_windowed = _windowed(target)
    if source_windowed == target_windowed:
        return lambda key: key if key in target_keys else None
    if target_windowed:

        def to_window(key: str) -> str | None:
            if window_key(key, 1) in target_keys:
                skipped["spans several windows"] = skipped.get("spans several windows", 0) + 1
                return None
            joined = window_key(key, 0)
            return joined if joined in target_keys else None

        return to_window
    source_windows: dict[str, int] = {}
    for key in {key for key, _ in source.items()}:
        base, _ = split_window_key(key)
        source_windows[base] = source_windows.get(base, 0) + 1

    def from_window(key: str) -> str | None:
        base, index = split_window_key(key)
        if index != 0:
            return None  # a later window of a recording: never the whole of it
        if source_windows.get(base, 0) > 1:
            skipped["spans several windows"] = skipped.get("spans several windows", 0) + 1
            return None
        return base if base in target_keys else None

    return from_window


def _windowed(shards: ShardSet) -> bool:
    info = shards.info
    return info is not None and info.window_seconds is not None and has_time_axis(info.modality)


def epoch_share(size: int, seed: int, stream: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """Item indices of ``stream`` that ``rank`` visits in ``epoch`` (a disjoint cover over ranks)."""
    permutation = np.random.default_rng([seed, stream, epoch]).permutation(size)
    return permutation[rank::world_size]


@dataclass(frozen=True)
class StreamSpec:
    """What the sampler needs to know about one stream."""

    name: str
    task: str
    source: str
    target: str
    lengths: np.ndarray
    """``[n, 2]`` source and target content rows of every item."""
    size: int | None = None
    """Examples for the mixture's rates: distinct keys, not their augmentation variants (32 pixel
    shifts must not make an image dataset weigh 32 times more); ``None``: every item counts."""
    target_variants: np.ndarray | None = None
    """``[n]`` target variants of every item (one is drawn per example); ``None``: one each."""


@dataclass(frozen=True)
class ExampleSpec:
    """One example as the sampler decided it."""

    stream: int
    item: int
    target_choice: int = 0
    """Which of the item's target variants (an index into its list, drawn on its own)."""


class MixtureSampler:
    """Decides every batch of a mixture; deterministic given its state (see the module docstring)."""

    def __init__(
        self,
        mixture: Mixture,
        streams: Sequence[StreamSpec],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        accumulate_grad_batches: int = 1,
        bucket_pool: int = 8,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if [s.name for s in streams] != mixture.stream_names:
            raise ValueError("streams must follow the mixture's stream order")
        self.mixture = mixture
        self.streams = list(streams)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.accumulate = max(1, accumulate_grad_batches)
        self.bucket_pool = max(1, bucket_pool)
        self.sizes = {s.name: len(s.lengths) if s.size is None else s.size for s in self.streams}
        # Streams with no item on this rank (fewer items than ranks) are never drawn here.
        self.available = np.array([len(s.lengths) > rank for s in self.streams])
        self._shares: dict[int, tuple[int, np.ndarray]] = {}
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        self.batch_index = 0
        self.epochs = [0] * len(self.streams)
        self.cursors = [0] * len(self.streams)
        self.rng = np.random.default_rng([self.seed, 1_000_003, self.rank])
        self.pending: list[list[ExampleSpec]] = []

    def state_dict(self) -> dict:
        """Plain Python values only (safe for ``torch.load(weights_only=True)``)."""
        return {
            "batch_index": self.batch_index,
            "epochs": list(self.epochs),
            "cursors": list(self.cursors),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "pending": [[[e.stream, e.item, e.target_choice] for e in batch] for batch in self.pending],
            "streams": [s.name for s in self.streams],
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: Mapping) -> None:
        if list(state["streams"]) != [s.name for s in self.streams]:
            raise ValueError(
                f"data state is for streams {list(state['streams'])}, "
                f"this run has {[s.name for s in self.streams]}"
            )
        if (state["rank"], state["world_size"]) != (self.rank, self.world_size):
            raise ValueError(
                f"data state was saved by rank {state['rank']} of {state['world_size']}, "
                f"this is rank {self.rank} of {self.world_size}"
            )
        self.batch_index = int(state["batch_index"])
        self.epochs = [int(e) for e in state["epochs"]]
        self.cursors = [int(c) for c in state["cursors"]]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = copy.deepcopy(dict(state["rng"]))
        # Checkpoints of before time-exact windows hold (stream, item, 4 window bounds): variant 0.
        self.pending = [
            [ExampleSpec(int(e[0]), int(e[1]), int(e[2]) if len(e) == 3 else 0) for e in batch]
            for batch in state["pending"]
        ]

    # -------------------------------------------------------------- sampling
    @property
    def step(self) -> int:
        """The curriculum (optimizer) step of the next batch."""
        return self.batch_index // self.accumulate

    def rates(self, step: int) -> np.ndarray:
        rates = self.mixture.rates(step, self.sizes)
        probabilities = np.array([rates[s.name] for s in self.streams]) * self.available
        total = probabilities.sum()
        if total <= 0:
            raise ValueError(
                f"no stream of mixture {self.mixture.name} has data on rank {self.rank} at step {step}"
            )
        return probabilities / total

    def _share(self, stream: int) -> np.ndarray:
        epoch = self.epochs[stream]
        cached = self._shares.get(stream)
        if cached is None or cached[0] != epoch:
            share = epoch_share(
                len(self.streams[stream].lengths), self.seed, stream, epoch, self.rank, self.world_size
            )
            self._shares[stream] = (epoch, share)
        return self._shares[stream][1]

    def _next_item(self, stream: int) -> int:
        share = self._share(stream)
        if self.cursors[stream] >= len(share):
            self.epochs[stream] += 1
            self.cursors[stream] = 0
            share = self._share(stream)
        item = int(share[self.cursors[stream]])
        self.cursors[stream] += 1
        return item

    def _draw_example(self, probabilities: np.ndarray) -> ExampleSpec:
        stream = int(self.rng.choice(len(self.streams), p=probabilities))
        item = self._next_item(stream)
        counts = self.streams[stream].target_variants
        choice = int(self.rng.integers(counts[item])) if counts is not None and counts[item] > 1 else 0
        return ExampleSpec(stream, item, choice)

    def _fill_pool(self) -> None:
        probabilities = self.rates(self.step)
        pool = [self._draw_example(probabilities) for _ in range(self.batch_size * self.bucket_pool)]
        # Bucketing: similar lengths share a batch, so padding stays small. Target length first: a
        # target row costs more than a source row (decoder layers, then the sub-decoder once per
        # codebook), and targets of one mixture differ most (LMX ~100 rows, audio up to 1723),
        # while the sources of OMR and image-to-audio are the same images. Sorting by source
        # first put short LMX targets next to long audio ones: on such a mixture (tests/test_data.py)
        # 45 % of the target rows and 35 % of all rows were padding, now 10 % and 21 %.
        pool.sort(key=lambda e: tuple(self.streams[e.stream].lengths[e.item, ::-1]))
        batches = [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        order = self.rng.permutation(len(batches))
        self.pending = [batches[i] for i in order]

    def next_batch(self) -> tuple[int, list[ExampleSpec]]:
        """``(batch_index, examples)`` of the next batch."""
        if not self.pending:
            self._fill_pool()
        batch = self.pending.pop(0)
        index = self.batch_index
        self.batch_index += 1
        return index, batch


def collate(
    examples: Sequence[tuple[np.ndarray, np.ndarray, str, str, int]],
    vocab: Vocabulary,
    batch_index: int = -1,
) -> dict[str, torch.Tensor]:
    """Pad examples into the batch the Translator trains on.

    Each example is ``(source rows [S, K], target rows [T, K], source modality, target modality,
    task index)`` without SOS/EOS; both sides get their modality's SOS and EOS rows. Returns
    ``src`` Long[B, S+2, K], ``src_mask`` Bool[B, S+2] (True = real), ``tgt`` Long[B, T+2, K],
    ``tgt_mask`` Bool[B, T+2], ``src_modality`` / ``tgt_modality`` Long[B] (indices into
    :attr:`umt.vocab.Vocabulary.modalities`), ``task`` Long[B] (the mixture's task index) and ``batch_index``
    Long[] (the sampler's batch number).
    """
    K = vocab.num_codebooks

    def framed(rows: np.ndarray, modality: str) -> np.ndarray:
        return np.concatenate(
            [
                vocab.special_row(vocab.sos(modality))[None],
                np.asarray(rows, dtype=np.int64).reshape(-1, K),
                vocab.special_row(vocab.eos(modality))[None],
            ]
        )

    sources = [framed(e[0], e[2]) for e in examples]
    targets = [framed(e[1], e[3]) for e in examples]

    def pad(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(s) for s in seqs)
        out = torch.full((len(seqs), longest, K), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.bool)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.from_numpy(s)
            mask[i, : len(s)] = True
        return out, mask

    src, src_mask = pad(sources)
    tgt, tgt_mask = pad(targets)
    return {
        "src": src,
        "src_mask": src_mask,
        "tgt": tgt,
        "tgt_mask": tgt_mask,
        "src_modality": torch.tensor([vocab.modality_index(e[2]) for e in examples], dtype=torch.long),
        "tgt_modality": torch.tensor([vocab.modality_index(e[3]) for e in examples], dtype=torch.long),
        "task": torch.tensor([e[4] for e in examples], dtype=torch.long),
        "batch_index": torch.tensor(batch_index, dtype=torch.long),
    }


class MixtureStream(torch.utils.data.IterableDataset):
    """An endless stream of collated batches for one DDP rank, split over dataloader workers.

    Use with ``DataLoader(stream, batch_size=None, ...)``. :attr:`sampler` is the starting state
    (restored from a checkpoint before the iterator is created).
    """

    def __init__(
        self,
        sampler: MixtureSampler,
        datasets: Sequence[PairedDataset],
        vocab: Vocabulary,
        condition_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.sampler = sampler
        self.datasets = list(datasets)
        self.vocab = vocab
        self.condition_dropout = condition_dropout
        """How often a text source (a prompt) is replaced by an empty one: the unconditional
        examples classifier-free guidance needs. Drawn from (seed, batch, position), so a resumed
        run drops the same ones."""
        tasks = sampler.mixture.tasks
        self.task_index = [tasks.index(s.task) for s in sampler.streams]

    def load(self, examples: Sequence[ExampleSpec], batch_index: int) -> dict[str, torch.Tensor]:
        loaded = []
        for position, example in enumerate(examples):
            spec = self.sampler.streams[example.stream]
            source, target = self.datasets[example.stream].get(example.item, example.target_choice)
            if spec.source == "text" and self.condition_dropout > 0:
                draw = np.random.default_rng([self.sampler.seed, 7_919, batch_index, position]).random()
                if draw < self.condition_dropout:
                    source = source[:0]
            loaded.append((source, target, spec.source, spec.target, self.task_index[example.stream]))
        return collate(loaded, self.vocab, batch_index)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker_id, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        sampler = copy.deepcopy(self.sampler)
        produced = 0
        while True:
            batch_index, examples = sampler.next_batch()
            mine = produced % num_workers == worker_id
            produced += 1
            if mine:
                yield self.load(examples, batch_index)


def build_stream_specs(mixture: Mixture, datasets: Mapping[str, PairedDataset]) -> list[StreamSpec]:
    """Stream specs in the mixture's order from paired datasets keyed by stream name."""
    specs = []
    for task_name, _dataset, _ in mixture.streams:
        name = mixture.stream_names[len(specs)]
        task = get_task(task_name)
        dataset = datasets[name]
        specs.append(
            StreamSpec(
                name,
                task.name,
                task.source,
                task.target,
                dataset.lengths,
                dataset.num_keys,
                dataset.target_variant_counts,
            )
        )
    return specs
