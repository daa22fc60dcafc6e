"""The unified vocabulary: golden ids freeze the default layout (as MT3's event-codec tests do)."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest

from tests._vocab import TINY_CONFIG
from umt.modalities import PAPER_MODALITIES, WordListSpec, register_modality, unregister_modality
from umt.tokenizers.lmx_vocabulary import LMX_TOKENS
from umt.vocab import PAD_ID, VocabConfig, Vocabulary, default_vocabulary

TINY = TINY_CONFIG


def test_default_layout_golden_ids() -> None:
    vocab = default_vocabulary()
    golden = {
        "pad": (0, 1),
        "image/sos": (1, 1), "image/eos": (2, 1), "image/sep": (3, 1), "image/height": (4, 26),
        "image/cb0": (30, 1024), "image/cb1": (1054, 1024), "image/cb2": (2078, 1024),
        "image/cb3": (3102, 1024),
        "audio/sos": (4126, 1), "audio/eos": (4127, 1), "audio/cb0": (4128, 1024),
        "audio/cb1": (5152, 1024), "audio/cb2": (6176, 1024), "audio/cb3": (7200, 1024),
        "lmx/sos": (8224, 1), "lmx/eos": (8225, 1), "lmx/token": (8226, 224),
        "midi/sos": (8450, 1), "midi/eos": (8451, 1), "midi/shift": (8452, 2001),
        "midi/pitch": (10453, 128), "midi/velocity": (10581, 2), "midi/tie": (10583, 1),
        "midi/program": (10584, 128), "midi/drum": (10712, 128),
    }  # fmt: skip
    assert {name: (r.start, r.size) for name, r in vocab.ranges.items()} == golden
    assert vocab.size == 10840
    assert vocab.modalities == PAPER_MODALITIES == ("image", "audio", "lmx", "midi")
    assert [vocab.sos(m) for m in PAPER_MODALITIES] == [1, 4126, 8224, 8450]
    assert [vocab.eos(m) for m in PAPER_MODALITIES] == [2, 4127, 8225, 8451]
    assert vocab.sep == 3
    assert vocab.height(1) == 4 and vocab.height(26) == 29
    assert vocab.lmx_id("measure") == 8226
    assert vocab.lmx_id("C4") == 8226 + LMX_TOKENS.index("C4")
    assert vocab.lmx_id("trill-mark") - 8226 == LMX_TOKENS.index("trill-mark")
    assert vocab["midi/shift"].id(2000) == 10452
    assert vocab.layout_hash == "aba0ed2107d831d6"


def test_specials_are_each_modalitys_own() -> None:
    vocab = default_vocabulary()
    specials = set(np.flatnonzero(vocab.special_mask).tolist())
    assert specials == {0, 1, 2, 3, *range(4, 30), 4126, 4127, 8224, 8225, 8450, 8451}
    for modality in PAPER_MODALITIES:
        block = [r for name, r in vocab.ranges.items() if name.startswith(f"{modality}/")]
        assert block[0].name == f"{modality}/sos" and block[1].name == f"{modality}/eos"
        # one contiguous block a modality
        assert all(a.stop == b.start for a, b in pairwise(block))


TOY_WORDS = ("hello", "score", "piano")


@pytest.fixture
def toy_modality():
    spec = register_modality(
        WordListSpec(name="toytext", description="test words", tokenizer="x:Y", tokens=TOY_WORDS)
    )
    yield spec
    unregister_modality(spec.name)


@pytest.mark.parametrize("config", [VocabConfig(), TINY])
def test_appending_a_modality_moves_no_id_and_keeps_existing_hashes(config, toy_modality) -> None:
    before = Vocabulary(config)
    before_hash = before.layout_hash
    wider = Vocabulary(replace(config, modalities=(*config.modalities, "toytext")))
    # Registering a modality changes nothing for vocabularies that do not hold it.
    assert Vocabulary(config).layout_hash == before_hash
    assert list(wider.ranges.items())[: len(before.ranges)] == list(before.ranges.items())
    assert wider["toytext/sos"].start == before.size
    assert wider.word_id("toytext", "score") == before.size + 2 + 1
    assert wider.word("toytext", wider.word_id("toytext", "piano")) == "piano"
    assert wider.layout_hash != before_hash
    assert wider.modality_index("toytext") == 4
    mask = wider.allowed_mask("toytext")
    assert mask[0].sum() == len(TOY_WORDS) + 1 and mask[0, wider.eos("toytext")]
    assert not (mask[0] & wider.allowed_mask("lmx")[0]).any()


def test_a_modality_outside_the_vocabulary_is_refused(toy_modality) -> None:
    with pytest.raises(ValueError, match="not in this vocabulary"):
        default_vocabulary().sos("toytext")
    with pytest.raises(ValueError, match="unknown modality 'toytxt'; did you mean 'toytext'"):
        VocabConfig(modalities=("image", "toytxt"))
    with pytest.raises(ValueError, match="without repeats"):
        VocabConfig(modalities=("lmx", "lmx"))


def test_lmx_vocabulary_is_the_224_reference_tokens() -> None:
    assert len(LMX_TOKENS) == 224 and len(set(LMX_TOKENS)) == 224
    assert LMX_TOKENS[:2] == ("measure", "key:fifths:-7")
    assert LMX_TOKENS[-1] == "tremolo:4"


def test_ranges_are_disjoint_and_cover_every_id() -> None:
    vocab = Vocabulary(TINY)
    covered = np.zeros(vocab.size, dtype=int)
    for token_range in vocab.ranges.values():
        covered[token_range.start : token_range.stop] += 1
    assert (covered == 1).all()


def test_sizes_come_from_config() -> None:
    vocab = Vocabulary(TINY)
    assert vocab["image/cb1"].size == TINY.image_codebook_size == 8
    assert vocab["audio/cb1"].size == TINY.audio_codebook_size
    assert vocab["midi/shift"].size == TINY.midi_max_shift + 1
    assert "image/cb2" not in vocab.ranges
    assert vocab.layout_hash != default_vocabulary().layout_hash


def test_hash_is_stable_and_tracks_every_field() -> None:
    assert Vocabulary(TINY).layout_hash == Vocabulary(VocabConfig(**vars(TINY))).layout_hash
    changed = VocabConfig(**{**vars(TINY), "midi_max_shift": 11})
    assert Vocabulary(changed).layout_hash != Vocabulary(TINY).layout_hash


def test_codes_round_trip_through_ids() -> None:
    vocab = default_vocabulary()
    codes = np.random.default_rng(0).integers(0, 1024, size=(3, 5, 4))
    for modality in ("image", "audio"):
        rows = vocab.codes_to_ids(modality, codes)
        assert rows.shape == (3, 5, 4)
        for k in range(4):
            token_range = vocab.codebook_range(modality, k)
            assert ((rows[..., k] >= token_range.start) & (rows[..., k] < token_range.stop)).all()
        np.testing.assert_array_equal(vocab.ids_to_codes(modality, rows), codes)
    with pytest.raises(ValueError, match=r"0\.\.1023"):
        vocab.codes_to_ids("image", codes + 1024)


def test_single_stream_rows_pad_the_other_codebooks() -> None:
    vocab = default_vocabulary()
    rows = vocab.single_stream_rows([vocab.sos("lmx"), vocab.lmx_id("measure"), vocab.eos("lmx")])
    assert rows.shape == (3, 4)
    assert (rows[:, 1:] == PAD_ID).all()
    assert rows[:, 0].tolist() == [8224, 8226, 8225]


@pytest.mark.parametrize("config", [VocabConfig(), TINY])
def test_allowed_masks(config: VocabConfig) -> None:
    vocab = Vocabulary(config)
    image = vocab.allowed_mask("image")
    assert image.shape == (config.num_codebooks, vocab.size)
    assert image[0, vocab.sep] and image[0, vocab.height(1)] and image[0, vocab.eos("image")]
    assert not image[0, PAD_ID] and image[1, PAD_ID]
    assert not image[0, vocab.sos("image")]
    assert not image[1, vocab["image/cb0"].start] and image[1, vocab["image/cb1"].start]
    audio = vocab.allowed_mask("audio")
    assert not audio[0, vocab.sep] and audio[0, vocab.eos("audio")] and not audio[0, vocab.eos("image")]
    lmx = vocab.allowed_mask("lmx")
    assert lmx[0].sum() == 224 + 1
    assert (lmx[1:].sum(axis=1) == 1).all() and lmx[1:, PAD_ID].all()
    midi = vocab.allowed_mask("midi")
    midi_size = sum(r.size for r in vocab.content_ranges("midi"))
    assert midi[0].sum() == midi_size + 1
    # No target may produce another modality's content.
    assert not (lmx[0] & midi[0]).any()


def test_unknown_modality_suggests_a_near_miss() -> None:
    with pytest.raises(ValueError, match="did you mean 'audio'"):
        default_vocabulary().sos("audi")


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="image_codebooks"):
        VocabConfig(num_codebooks=2, image_codebooks=4)
