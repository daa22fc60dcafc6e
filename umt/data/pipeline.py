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

**Truncation** (``max_len`` per modality, content rows without SOS/EOS): a sequence longer than its
limit is cut to a random window. When source and target are time-aligned (audio <-> MIDI) both
sides are cut at the same relative position of their length, which keeps them roughly aligned
(exact alignment needs shards baked as aligned segments, as the paper's 20 s segments are);
otherwise (e.g. image -> audio) each long side is cut independently. A target window that stops
before the end of its sequence gets no EOS row (:func:`collate`): the model must not learn to stop
where a window was cut.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from umt.data.shards import ShardSet
from umt.errors import InputError
from umt.tasks import Mixture, get_task
from umt.vocab import PAD_ID, Vocabulary

TIME_ALIGNED = frozenset({frozenset({"audio", "midi"})})
"""Modality pairs whose sequences run along the same time axis (sliced consistently)."""


class PairedDataset:
    """Items present in both a source and a target shard set, joined by key.

    Every source variant of a key is an item (augmentation variants, e.g. pixel shifts); the
    target uses the same variant when it has one, else variant 0.
    """

    def __init__(self, source: ShardSet, target: ShardSet, name: str = "") -> None:
        self.source = source
        self.target = target
        self.name = name
        target_keys = set(target.keys())
        self.items: list[tuple[str, int, int]] = []
        for key, variant in source.items():
            if key not in target_keys:
                continue
            target_variant = variant if (key, variant) in target else 0
            if (key, target_variant) not in target:
                continue
            self.items.append((key, variant, target_variant))
        if not self.items:
            raise InputError(
                f"no key is present in both {source.directory} and {target.directory}", name or None
            )
        # Lengths for bucketing and truncation, computed once (no I/O while sampling). They come from
        # the shards' offsets: reading rows here would decode the whole data set on every rank.
        self.lengths = np.array(
            [[source.length(k, v), target.length(k, tv)] for k, v, tv in self.items], dtype=np.int64
        )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_keys(self) -> int:
        """Distinct keys (inputs), however many augmentation variants each has."""
        return len({key for key, _, _ in self.items})

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Source rows ``[S, K]`` and target rows ``[T, K]`` of item ``index`` (no SOS/EOS)."""
        key, variant, target_variant = self.items[index]
        return self.source.get(key, variant), self.target.get(key, target_variant)


def slice_window(length: int, limit: int | None, fraction: float) -> tuple[int, int]:
    """The ``[start, stop)`` window of at most ``limit`` rows starting at ``fraction`` of the slack."""
    if limit is None or length <= limit:
        return 0, length
    start = min(int(fraction * (length - limit + 1)), length - limit)
    return start, start + limit


def truncation_windows(
    source_length: int,
    target_length: int,
    source_modality: str,
    target_modality: str,
    max_len: Mapping[str, int | None],
    fractions: tuple[float, float],
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Windows for the source and target of one example (see the module docstring)."""
    source_limit = max_len.get(source_modality)
    target_limit = max_len.get(target_modality)
    if frozenset({source_modality, target_modality}) in TIME_ALIGNED:
        # One relative start for both sides: the longer-than-limit side picks it, the other follows.
        if source_limit is not None and source_length > source_limit:
            source_window = slice_window(source_length, source_limit, fractions[0])
            relative = source_window[0] / source_length
            return source_window, _window_at(target_length, target_limit, relative)
        if target_limit is not None and target_length > target_limit:
            target_window = slice_window(target_length, target_limit, fractions[0])
            return (0, source_length), target_window
    return (
        slice_window(source_length, source_limit, fractions[0]),
        slice_window(target_length, target_limit, fractions[1]),
    )


def _window_at(length: int, limit: int | None, relative: float) -> tuple[int, int]:
    if limit is None or length <= limit:
        return 0, length
    start = min(round(relative * length), length - limit)
    return start, start + limit


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


@dataclass(frozen=True)
class ExampleSpec:
    """One example as the sampler decided it."""

    stream: int
    item: int
    source_window: tuple[int, int]
    target_window: tuple[int, int]


class MixtureSampler:
    """Decides every batch of a mixture; deterministic given its state (see the module docstring)."""

    def __init__(
        self,
        mixture: Mixture,
        streams: Sequence[StreamSpec],
        batch_size: int,
        max_len: Mapping[str, int | None],
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
        self.max_len = dict(max_len)
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
            "pending": [
                [[e.stream, e.item, *e.source_window, *e.target_window] for e in batch]
                for batch in self.pending
            ],
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
        self.pending = [
            [ExampleSpec(int(s), int(i), (int(a), int(b)), (int(c), int(d))) for s, i, a, b, c, d in batch]
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
        spec = self.streams[stream]
        fractions = (float(self.rng.random()), float(self.rng.random()))
        source_window, target_window = truncation_windows(
            int(spec.lengths[item, 0]),
            int(spec.lengths[item, 1]),
            spec.source,
            spec.target,
            self.max_len,
            fractions,
        )
        return ExampleSpec(stream, item, source_window, target_window)

    def _fill_pool(self) -> None:
        probabilities = self.rates(self.step)
        pool = [self._draw_example(probabilities) for _ in range(self.batch_size * self.bucket_pool)]
        # Bucketing: similar lengths share a batch, so padding stays small. Target length first: a
        # target row costs more than a source row (decoder layers, then the sub-decoder once per
        # codebook), and targets of one mixture differ most (LMX ~100 rows, audio up to 1723),
        # while the sources of OMR and image-to-audio are the same images. Sorting by source
        # first put short LMX targets next to long audio ones: on such a mixture (tests/test_data.py)
        # 45 % of the target rows and 35 % of all rows were padding, now 10 % and 21 %.
        pool.sort(
            key=lambda e: (e.target_window[1] - e.target_window[0], e.source_window[1] - e.source_window[0])
        )
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
    examples: Sequence[
        tuple[np.ndarray, np.ndarray, str, str, int] | tuple[np.ndarray, np.ndarray, str, str, int, bool]
    ],
    vocab: Vocabulary,
    batch_index: int = -1,
) -> dict[str, torch.Tensor]:
    """Pad examples into the batch the Translator trains on.

    Each example is ``(source rows [S, K], target rows [T, K], source modality, target modality,
    task index)`` without SOS/EOS, optionally followed by ``target_ends`` (default True): False
    when the target rows are a window cut before the end of their sequence. Both sides get their
    modality's SOS and EOS rows, except that a target that does not end gets no EOS (an EOS there
    would teach the model to stop where the window was cut). Returns
    ``src`` Long[B, S+2, K], ``src_mask`` Bool[B, S+2] (True = real), ``tgt`` Long[B, T+2, K],
    ``tgt_mask`` Bool[B, T+2], ``src_modality`` / ``tgt_modality`` Long[B] (indices into
    :attr:`umt.vocab.Vocabulary.modalities`), ``task`` Long[B] (the mixture's task index) and ``batch_index``
    Long[] (the sampler's batch number).
    """
    K = vocab.num_codebooks

    def framed(rows: np.ndarray, modality: str, ends: bool = True) -> np.ndarray:
        parts = [
            vocab.special_row(vocab.sos(modality))[None],
            np.asarray(rows, dtype=np.int64).reshape(-1, K),
        ]
        if ends:
            parts.append(vocab.special_row(vocab.eos(modality))[None])
        return np.concatenate(parts)

    sources = [framed(e[0], e[2]) for e in examples]
    targets = [framed(e[1], e[3], bool(e[5]) if len(e) > 5 else True) for e in examples]

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

    def __init__(self, sampler: MixtureSampler, datasets: Sequence[PairedDataset], vocab: Vocabulary) -> None:
        super().__init__()
        self.sampler = sampler
        self.datasets = list(datasets)
        self.vocab = vocab
        tasks = sampler.mixture.tasks
        self.task_index = [tasks.index(s.task) for s in sampler.streams]

    def load(self, examples: Sequence[ExampleSpec], batch_index: int) -> dict[str, torch.Tensor]:
        loaded = []
        for example in examples:
            spec = self.sampler.streams[example.stream]
            source, target = self.datasets[example.stream].get(example.item)
            (s0, s1), (t0, t1) = example.source_window, example.target_window
            target_ends = t1 >= len(target)  # a window cut before the end gets no EOS
            loaded.append(
                (
                    source[s0:s1],
                    target[t0:t1],
                    spec.source,
                    spec.target,
                    self.task_index[example.stream],
                    target_ends,
                )
            )
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
        specs.append(StreamSpec(name, task.name, task.source, task.target, dataset.lengths, dataset.num_keys))
    return specs
