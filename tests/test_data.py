"""Pairing (time-exact windows, whole items, limits, independent variants), rank/worker split,
bucketing, collate, sampler state resume, URLs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests._training_fixtures import make_shards, tiny_vocab
from umt.data.pipeline import (
    MixtureSampler,
    MixtureStream,
    PairedDataset,
    StreamSpec,
    build_stream_specs,
    collate,
    epoch_share,
)
from umt.data.shards import ShardInfo, ShardSet, ShardWriter
from umt.errors import InputError
from umt.tasks import Mixture, MixtureEntry
from umt.training.data import open_stream_datasets

VOCAB = tiny_vocab()
MIXTURE = Mixture(
    "m", (MixtureEntry("omr", datasets=("grandstaff",)), MixtureEntry("amt", datasets=("maestro",)))
)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("shards"), VOCAB, variants=2)


def _sampler(datasets, **kwargs):
    defaults = dict(batch_size=3, seed=1)
    return MixtureSampler(MIXTURE, build_stream_specs(MIXTURE, datasets), **{**defaults, **kwargs})


def test_pairing_joins_by_key_and_keeps_source_variants(shards):
    dataset = PairedDataset(
        ShardSet(shards / "grandstaff" / "image"), ShardSet(shards / "grandstaff" / "lmx")
    )
    assert len(dataset) == 20  # 10 keys x 2 source variants, target variant 0
    src, tgt = dataset.get(1)
    assert src.shape[1] == tgt.shape[1] == VOCAB.num_codebooks
    assert dataset.lengths[1].tolist() == [len(src), len(tgt)]
    assert dataset.num_keys == 10


def test_mixture_rates_count_keys_not_augmentation_variants(shards):
    datasets = open_stream_datasets(MIXTURE, str(shards), VOCAB)
    omr, amt = MIXTURE.stream_names
    assert len(datasets[omr]) == 2 * datasets[omr].num_keys  # image shards hold 2 variants per key
    sampler = _sampler(datasets)
    assert sampler.sizes == {omr: datasets[omr].num_keys, amt: datasets[amt].num_keys}
    expected = MIXTURE.rates(0, {omr: datasets[omr].num_keys, amt: datasets[amt].num_keys})
    assert sampler.mixture.rates(0, sampler.sizes) == expected


def test_pairing_reads_lengths_from_offsets_not_rows(shards, monkeypatch):
    import safetensors.numpy

    source, target = ShardSet(shards / "maestro" / "audio"), ShardSet(shards / "maestro" / "midi")

    def no_rows(*args, **kwargs):
        raise AssertionError("rows read while pairing")

    with monkeypatch.context() as patch:
        patch.setattr(ShardSet, "_rows", no_rows)
        patch.setattr(safetensors.numpy, "load_file", no_rows)
        dataset = PairedDataset(source, target)
    assert len(source._open) == len(target._open) == 0
    expected = [[len(s), len(t)] for s, t in map(dataset.get, range(len(dataset)))]
    assert dataset.lengths.tolist() == expected and dataset.lengths.dtype == np.int64


def _write(directory, modality, items, windowed=False, variants=1):
    """A shard set of ``{key: rows}`` (each key in ``variants`` variants of those rows)."""
    info = ShardInfo(modality, VOCAB.layout_hash, "", 20.0 if windowed else None)
    with ShardWriter(directory, info) as writer:
        for key, length in items.items():
            for variant in range(variants):
                writer.add(key, np.full((length, VOCAB.num_codebooks), variant, dtype=np.int64), variant)
    return ShardSet(directory)


def test_windows_pair_by_key_and_whole_items_are_never_cut(tmp_path):
    """Audio and MIDI windows pair window by window; an image pairs with its recording only when
    that recording is a single window (a whole system image never meets one of several windows)."""
    image = _write(tmp_path / "image", "image", {"a": 5, "b": 5, "c": 5, "e": 5})
    # "e" lost its window 0 (a failed bake): its window 1 is not the whole recording either.
    windows = {"a@0": 8, "b@0": 8, "b@1": 3, "d@0": 2, "e@1": 4}
    audio = _write(tmp_path / "audio", "audio", windows, windowed=True)
    midi = _write(tmp_path / "midi", "midi", {"b@0": 4, "b@1": 2, "c@0": 1}, windowed=True)
    i2a = PairedDataset(image, audio)
    assert [(k, j) for k, _, j in i2a.items] == [("a", "a@0")]
    assert i2a.skipped == {"spans several windows": 2}  # images b and e
    a2i = PairedDataset(audio, image)
    assert [(k, j) for k, _, j in a2i.items] == [("a@0", "a")] and a2i.skipped == {"spans several windows": 1}
    amt = PairedDataset(audio, midi)
    assert [(k, j) for k, _, j in amt.items] == [("b@0", "b@0"), ("b@1", "b@1")]
    assert amt.lengths.tolist() == [[8, 4], [3, 2]]  # whole windows: nothing cut


def test_items_over_the_limits_are_skipped_and_counted(tmp_path):
    image = _write(tmp_path / "image", "image", {"a": 5, "b": 50})
    lmx = _write(tmp_path / "lmx", "lmx", {"a": 3, "b": 3})
    dataset = PairedDataset(image, lmx, source_limit=10, target_limit=3)
    assert [k for k, _, _ in dataset.items] == ["a"] and dataset.skipped == {"longer than the limits": 1}
    with pytest.raises(InputError, match=r"omr/x: no example pairs .* \(2 longer than the limits\)"):
        PairedDataset(image, lmx, "omr/x", source_limit=4)


def test_target_variants_are_drawn_independently_of_source_variants(tmp_path):
    image = _write(tmp_path / "image", "image", {"a": 4, "b": 4}, variants=4)
    audio = _write(tmp_path / "audio", "audio", {"a@0": 6, "b@0": 6}, windowed=True, variants=4)
    dataset = PairedDataset(image, audio)
    assert len(dataset) == 8 and dataset.target_variant_counts.tolist() == [4] * 8
    mixture = Mixture("m", (MixtureEntry("i2a", datasets=("ytsv",)),))
    sampler = MixtureSampler(mixture, build_stream_specs(mixture, {mixture.stream_names[0]: dataset}), 4)
    stream = MixtureStream(sampler, [dataset], VOCAB)
    pairs = set()
    for _ in range(16):
        index, examples = sampler.next_batch()
        batch = stream.load(examples, index)
        for row, example in enumerate(examples):
            source_variant = dataset.items[example.item][1]
            target_variant = int(batch["tgt"][row, 1, 0]) - VOCAB.codebook_range("audio", 0).start
            pairs.add((source_variant, target_variant))
    assert len({s for s, _ in pairs}) == 4 and len(pairs) > 8  # paired by index would give 4


def test_epoch_split_over_ranks_covers_every_item_once():
    for world in (1, 2, 3):
        shares = [epoch_share(11, seed=5, stream=0, epoch=2, rank=r, world_size=world) for r in range(world)]
        assert sorted(np.concatenate(shares).tolist()) == list(range(11))
    assert not np.array_equal(epoch_share(11, 5, 0, 0, 0, 1), epoch_share(11, 5, 0, 1, 0, 1))


def test_sampler_visits_each_item_once_per_epoch_across_ranks(shards):
    datasets = open_stream_datasets(MIXTURE, str(shards), VOCAB)
    for stream, name in enumerate(MIXTURE.stream_names):
        n, seen = len(datasets[name]), []
        for rank in range(3):
            sampler = _sampler(datasets, rank=rank, world_size=3)
            share = len(epoch_share(n, 1, stream, 0, rank, 3))
            seen += [sampler._next_item(stream) for _ in range(share)]
            assert sampler.epochs[stream] == 0
            sampler._next_item(stream)
            assert sampler.epochs[stream] == 1  # the next item starts a new epoch
        assert sorted(seen) == list(range(n))


def test_bucketing_reduces_padding(shards):
    datasets = open_stream_datasets(MIXTURE, str(shards), VOCAB)

    def padding(bucket_pool):
        sampler = _sampler(datasets, bucket_pool=bucket_pool)
        waste = 0
        for _ in range(40):
            lengths = [int(sampler.streams[e.stream].lengths[e.item, 0]) for e in sampler.next_batch()[1]]
            waste += sum(max(lengths) - x for x in lengths)
        return waste

    assert padding(8) < padding(1)


def test_bucketing_keeps_short_and_long_targets_apart():
    """OMR (image -> short LMX) and image-to-audio (the same kind of images -> long audio) in one
    mixture: batches are bucketed by target length first, so LMX targets are not padded to audio
    lengths."""
    mixture = Mixture(
        "m", (MixtureEntry("omr", datasets=("music21",)), MixtureEntry("i2a", datasets=("music21",)))
    )
    rng = np.random.default_rng(0)
    images = rng.integers(100, 600, (2, 200))
    targets = (rng.integers(50, 200, 200), rng.integers(800, 1200, 200))
    streams = [
        StreamSpec(name, entry.task, "image", target, np.stack([images[i], targets[i]], axis=1))
        for i, (name, entry, target) in enumerate(
            zip(mixture.stream_names, mixture.entries, ("lmx", "audio"))
        )
    ]
    sampler = MixtureSampler(mixture, streams, batch_size=8)
    real = padded = mixed = 0
    for _ in range(64):
        examples = sampler.next_batch()[1]
        lengths = [int(sampler.streams[e.stream].lengths[e.item, 1]) for e in examples]
        real += sum(lengths)
        padded += len(lengths) * max(lengths)
        mixed += len({e.stream for e in examples}) > 1
    assert mixed <= 64 // sampler.bucket_pool  # at most the batch where a pool's two groups meet
    assert real / padded > 0.8  # 0.90; sorting by source first gave 0.55, and 64 mixed batches


def test_collate_frames_with_sos_eos_and_pads():
    rows = VOCAB.single_stream_rows([VOCAB.lmx_id(VOCAB.lmx_token(VOCAB["lmx/token"].start))] * 3)
    audio = VOCAB.codes_to_ids("audio", np.zeros((2, 2), dtype=np.int64))
    batch = collate([(audio, rows, "audio", "lmx", 0), (audio[:1], rows[:1], "audio", "lmx", 1)], VOCAB, 7)
    assert batch["src"].shape == (2, 4, 2) and batch["tgt"].shape == (2, 5, 2)
    assert batch["tgt"][0, 0, 0] == VOCAB.sos("lmx") and batch["tgt"][0, 4, 0] == VOCAB.eos("lmx")
    assert batch["tgt"][1, 2, 0] == VOCAB.eos("lmx") and (batch["tgt"][1, 3:] == 0).all()
    assert batch["tgt_mask"].tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert batch["src_modality"].tolist() == [1, 1] and batch["tgt_modality"].tolist() == [2, 2]
    assert int(batch["batch_index"]) == 7 and batch["task"].tolist() == [0, 1]


def test_every_target_ends_with_one_eos_and_holds_no_other(shards):
    """Targets are whole items or whole windows: each ends with its EOS row, none holds a second one
    (MIDI windows are baked without the segment's EOS)."""
    datasets = open_stream_datasets(MIXTURE, str(shards), VOCAB)
    sampler = _sampler(datasets)
    stream = MixtureStream(_sampler(datasets), [datasets[n] for n in MIXTURE.stream_names], VOCAB)
    for _ in range(12):
        index, examples = sampler.next_batch()
        batch = stream.load(examples, index)
        for row, example in enumerate(examples):
            spec = sampler.streams[example.stream]
            ids = batch["tgt"][row, : int(batch["tgt_mask"][row].sum()), 0].tolist()
            assert ids[-1] == VOCAB.eos(spec.target) and ids.count(VOCAB.eos(spec.target)) == 1
            assert len(ids) == int(spec.lengths[example.item, 1]) + 2


def test_sampler_state_resume_is_exact(shards):
    datasets = open_stream_datasets(MIXTURE, str(shards), VOCAB)
    straight = _sampler(datasets)
    batches = [straight.next_batch() for _ in range(30)]
    first = _sampler(datasets)
    for _ in range(11):
        first.next_batch()
    state = first.state_dict()
    torch.save(state, "/dev/null")  # plain values only
    resumed = _sampler(datasets)
    resumed.load_state_dict(state)
    assert [resumed.next_batch() for _ in range(19)] == batches[11:]
    with pytest.raises(ValueError, match="rank"):
        _sampler(datasets, rank=1, world_size=2).load_state_dict(state)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_workers_deliver_batches_in_sampler_order(shards, num_workers):
    datasets = open_stream_datasets(MIXTURE, str(shards), VOCAB)
    stream = MixtureStream(_sampler(datasets), [datasets[n] for n in MIXTURE.stream_names], VOCAB)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers)
    got = []
    for batch in loader:
        got.append(batch)
        if len(got) == 6:
            break
    reference = _sampler(datasets)
    assert [int(b["batch_index"]) for b in got] == list(range(6))
    for batch in got:
        _, examples = reference.next_batch()
        expected = stream.load(examples, int(batch["batch_index"]))
        assert all(torch.equal(batch[k], expected[k]) for k in expected)


def test_shards_from_an_fsspec_url_are_cached_locally(shards, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    for path in shards.rglob("*.safetensors"):
        memory.pipe(f"/umt-test/{path.relative_to(shards)}", path.read_bytes())
    datasets = open_stream_datasets(MIXTURE, "memory://umt-test", VOCAB, cache_dir=str(tmp_path / "cache"))
    local = open_stream_datasets(MIXTURE, f"file://{shards}", VOCAB)
    for name in MIXTURE.stream_names:
        assert np.array_equal(datasets[name].lengths, local[name].lengths)
        for index in (0, len(local[name]) - 1):  # read from the local copies, same rows
            assert all(map(np.array_equal, datasets[name].get(index), local[name].get(index)))
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == len(list(shards.rglob("*.safetensors")))


def test_vocabulary_mismatch_is_refused(shards):
    from umt.errors import InputError
    from umt.vocab import default_vocabulary

    with pytest.raises(InputError, match="vocab_hash"):
        open_stream_datasets(MIXTURE, str(shards), default_vocabulary())
