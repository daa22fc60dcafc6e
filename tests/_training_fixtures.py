"""Tiny token shards for the training tests (made on the fly; nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from umt.data.shards import ShardInfo, ShardWriter
from umt.vocab import VocabConfig, Vocabulary

TINY_VOCAB = dict(
    num_codebooks=2,
    image_codebooks=2,
    image_codebook_size=8,
    audio_codebooks=2,
    audio_codebook_size=8,
    max_image_height=4,
    midi_max_shift=20,
)


def tiny_vocab() -> Vocabulary:
    return Vocabulary(VocabConfig(**TINY_VOCAB))


def random_rows(vocab: Vocabulary, modality: str, length: int, rng: np.random.Generator) -> np.ndarray:
    if modality in ("image", "audio"):
        codes = rng.integers(
            0, vocab[f"{modality}/cb0"].size, size=(length, vocab.modality_codebooks(modality))
        )
        return vocab.codes_to_ids(modality, codes)
    token_range = vocab["lmx"] if modality == "lmx" else vocab["midi/pitch"]
    return vocab.single_stream_rows(rng.integers(token_range.start, token_range.stop, size=length))


def make_shards(
    root: Path,
    vocab: Vocabulary,
    datasets: dict[str, tuple[str, str, int]] | None = None,
    seed: int = 0,
    variants: int = 1,
) -> Path:
    """``{root}/{dataset}/{modality}`` shard sets: ``{dataset: (source, target, items)}``."""
    datasets = datasets or {"grandstaff": ("image", "lmx", 10), "maestro": ("audio", "midi", 9)}
    rng = np.random.default_rng(seed)
    for dataset, (source, target, items) in datasets.items():
        for modality in (source, target):
            with ShardWriter(
                root / dataset / modality, ShardInfo(modality, vocab.layout_hash, ""), items_per_shard=4
            ) as writer:
                for i in range(items):
                    for variant in range(variants if modality == source else 1):
                        length = int(rng.integers(3, 30))
                        writer.add(f"{dataset}-{i:03d}", random_rows(vocab, modality, length, rng), variant)
    return root
