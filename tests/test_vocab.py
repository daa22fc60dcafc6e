"""The unified vocabulary: golden ids freeze the default layout (as MT3's event-codec tests do)."""

from __future__ import annotations

import numpy as np
import pytest

from umt.tokenizers.lmx_vocabulary import LMX_TOKENS
from umt.vocab import MODALITIES, PAD_ID, VocabConfig, Vocabulary, default_vocabulary

TINY = VocabConfig(
    num_codebooks=2, image_codebooks=2, image_codebook_size=8, audio_codebooks=2,
    audio_codebook_size=16, max_image_height=3, midi_max_shift=10,
)  # fmt: skip


def test_default_layout_golden_ids() -> None:
    vocab = default_vocabulary()
    golden = {
        "pad": (0, 1), "sos": (1, 4), "eos": (5, 4), "sep": (9, 1), "height": (10, 26),
        "image/cb0": (36, 1024), "image/cb1": (1060, 1024), "image/cb2": (2084, 1024),
        "image/cb3": (3108, 1024), "audio/cb0": (4132, 1024), "audio/cb1": (5156, 1024),
        "audio/cb2": (6180, 1024), "audio/cb3": (7204, 1024), "lmx": (8228, 224),
        "midi/shift": (8452, 2001), "midi/pitch": (10453, 128), "midi/velocity": (10581, 2),
        "midi/tie": (10583, 1), "midi/program": (10584, 128), "midi/drum": (10712, 128),
    }  # fmt: skip
    assert {name: (r.start, r.size) for name, r in vocab.ranges.items()} == golden
    assert vocab.size == 10840
    assert [vocab.sos(m) for m in MODALITIES] == [1, 2, 3, 4]
    assert [vocab.eos(m) for m in MODALITIES] == [5, 6, 7, 8]
    assert vocab.sep == 9
    assert vocab.height(1) == 10 and vocab.height(26) == 35
    assert vocab.lmx_id("measure") == 8228
    assert vocab.lmx_id("C4") == 8228 + LMX_TOKENS.index("C4")
    assert vocab.lmx_id("trill-mark") - 8228 == LMX_TOKENS.index("trill-mark")
    assert vocab["midi/shift"].id(2000) == 10452
    assert vocab.layout_hash == "affddcd2ab193aab"


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
    assert vocab["image/cb1"].size == 8 and vocab["audio/cb1"].size == 16
    assert vocab["midi/shift"].size == 11
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
    assert rows[:, 0].tolist() == [3, 8228, 7]


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
    midi_size = sum(r.size for n, r in vocab.ranges.items() if n.startswith("midi/"))
    assert midi[0].sum() == midi_size + 1
    # No target may produce another modality's content.
    assert not (lmx[0] & midi[0]).any()


def test_unknown_modality_suggests_a_near_miss() -> None:
    with pytest.raises(ValueError, match="did you mean 'audio'"):
        default_vocabulary().sos("audi")


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="image_codebooks"):
        VocabConfig(num_codebooks=2, image_codebooks=4)
