"""The inference library: page splitting, source framing, batching, determinism, decoding, refusals.

The model is a random tiny Translator exported with ``umt.pretrained.export_checkpoint`` together
with random tiny image / audio tokenizers (``tests/_inference_fixtures.py``); inputs are rendered or
synthesised in the test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import _inference_fixtures as fx
import numpy as np
import pytest
import torch

from umt.errors import CheckpointError, InputError
from umt.inference import GenerationConfig, TranslationPipeline, split_measures, stack_images


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return fx.make_model_folder(tmp_path_factory.mktemp("inference"))


@pytest.fixture(scope="module")
def pipeline(model_dir) -> TranslationPipeline:
    return TranslationPipeline.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def systems() -> dict[str, np.ndarray]:
    return {
        "piano_a": fx.render(fx.piano_musicxml(2, 1)),
        "melody": fx.render(fx.melody_musicxml(4, 2)),
        "piano_b": fx.render(fx.piano_musicxml(3, 3)),
    }


# ---------------------------------------------------------------------------- page splitting
def test_page_is_split_into_its_systems(systems):
    from umt.data.systems import split_systems, system_boxes

    page = fx.stack_page([systems["piano_a"], systems["melody"], systems["piano_b"]])
    boxes = system_boxes(page)
    assert [box.staves for box in boxes] == [2, 1, 2]  # the braced grand staves stay together
    crops = split_systems(page)
    assert len(crops) == 3
    for crop, original in zip(crops, (systems["piano_a"], systems["melody"], systems["piano_b"])):
        # The crop is the system with a few pixels of margin, not a neighbour's ink.
        assert abs(crop.shape[0] - original.shape[0]) <= 4
        assert abs(crop.shape[1] - original.shape[1]) <= 4


def test_single_system_passes_through_and_blank_page_too(systems):
    from umt.data.systems import split_systems

    only = split_systems(systems["piano_a"])
    assert len(only) == 1 and only[0] is systems["piano_a"]
    blank = np.full((50, 80), 255, dtype=np.uint8)
    assert split_systems(blank)[0] is blank


def test_single_staff_systems_are_separate(systems):
    from umt.data.systems import split_systems

    page = fx.stack_page([fx.render(fx.melody_musicxml(3, seed)) for seed in range(4)], gap=12)
    assert len(split_systems(page)) == 4


def test_pdf_page_is_rasterised_and_split(systems, tmp_path):
    from umt.data.systems import read_pdf_pages, split_systems, staff_height

    page = fx.stack_page([systems["piano_a"], systems["melody"], systems["piano_b"]])
    pdf = fx.save_pdf(fx.save_png(page, tmp_path / "page.png"), tmp_path / "page.pdf")
    pages = read_pdf_pages(pdf)
    assert len(pages) == 1
    crops = split_systems(pages[0])
    assert len(crops) == 3
    # 200 dpi at 2 px per point: staves 18 * 200 / 144 = 25 px high.
    assert staff_height(crops[1]) == pytest.approx(25, abs=1.5)
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 nonsense")
    with pytest.raises(InputError, match=r"bad\.pdf"):
        read_pdf_pages(tmp_path / "bad.pdf")
    (tmp_path / "cut.pdf").write_bytes(pdf.read_bytes()[: pdf.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.pdf"):
        read_pdf_pages(tmp_path / "cut.pdf")


def test_a_huge_pdf_page_is_refused_before_rendering(tmp_path):
    """A page of 100 x 100 inches (a few hundred bytes) would be 400 M pixels at 200 dpi."""
    from PIL import Image

    from umt.data.systems import read_pdf_pages

    Image.new("L", (100, 100), 255).save(tmp_path / "huge.pdf", resolution=1.0)
    with pytest.raises(InputError, match=r"huge\.pdf: PDF page 1 is 7200x7200 pt: too large"):
        read_pdf_pages(tmp_path / "huge.pdf")


# ---------------------------------------------------------------------------------- framing
def test_sources_are_framed_like_training(pipeline, systems, monkeypatch):
    vocab = pipeline.vocab
    rows = [pipeline.image_rows(systems[name]) for name in ("piano_a", "melody")]
    seen = {}
    original = pipeline.model.generate

    def spy(src, src_mask, src_modality, tgt_modality, **kwargs):
        seen.update(src=src.clone(), mask=src_mask.clone(), src_mod=src_modality, tgt_mod=tgt_modality)
        return original(src, src_mask, src_modality, tgt_modality, **kwargs)

    monkeypatch.setattr(pipeline.model, "generate", spy)
    pipeline.generate("omr", rows, GenerationConfig(max_len=4, batch_size=2))
    # Longest first; each: SOS(image) row, the content rows, EOS(image) row, then PAD rows.
    order = sorted(range(2), key=lambda i: -len(rows[i]))
    for b, index in enumerate(order):
        content = rows[index]
        src, mask = seen["src"][b].numpy(), seen["mask"][b].numpy()
        assert (src[0] == vocab.special_row(vocab.sos("image"))).all()
        assert (src[1 : 1 + len(content)] == content).all()
        assert (src[1 + len(content)] == vocab.special_row(vocab.eos("image"))).all()
        assert (src[2 + len(content) :] == 0).all()
        assert mask.sum() == len(content) + 2 and mask[: len(content) + 2].all()
    assert seen["src_mod"].tolist() == [0, 0] and seen["tgt_mod"].tolist() == [2, 2]  # image -> lmx
    # The height token comes first in an image's content rows.
    assert vocab["image/height"].contains(int(rows[0][0, 0]))


def test_outputs_are_stripped_of_sos_and_eos(pipeline, systems):
    outputs = pipeline.generate("omr", [pipeline.image_rows(systems["melody"])], GenerationConfig(max_len=12))
    rows = outputs[0].rows
    vocab = pipeline.vocab
    assert rows.shape[1] == vocab.num_codebooks and len(rows) <= 11
    assert not (rows[:, 0] == vocab.sos("lmx")).any() and not (rows[:, 0] == vocab.eos("lmx")).any()
    assert all(vocab["lmx/token"].contains(int(i)) for i in rows[:, 0])


# ------------------------------------------------------------------------ batching, seeds
def test_greedy_outputs_do_not_depend_on_batch_size(pipeline, systems):
    sources = [pipeline.image_rows(image) for image in systems.values()]
    sources.append(pipeline.image_rows(systems["melody"][:, :120]))
    one = pipeline.generate("omr", sources, GenerationConfig(max_len=16, batch_size=1))
    many = pipeline.generate("omr", sources, GenerationConfig(max_len=16, batch_size=4))
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a.rows, b.rows)
    # The outputs depend on the input (the order is restored after length sorting).
    assert any(not np.array_equal(one[0].rows, other.rows) for other in one[1:])


def test_sampling_is_reproducible_with_a_seed(pipeline, systems):
    sources = [pipeline.image_rows(image) for image in systems.values()]

    def run(seed):
        config = GenerationConfig(max_len=16, batch_size=2, temperature=1.0, top_p=0.95, seed=seed)
        return [o.rows for o in pipeline.generate("omr", sources, config)]

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


# ------------------------------------------------------------------------------ high level
def test_omr_gives_musicxml_that_music21_reads(pipeline, systems, tmp_path):
    from music21 import converter

    path = fx.save_png(systems["piano_a"], tmp_path / "system.png")
    results = pipeline.omr([path, systems["melody"]], GenerationConfig(max_len=24))
    assert len(results) == 2
    for result in results:
        assert "<score-partwise" in result.musicxml
        converter.parseData(result.musicxml, format="musicxml")


def test_image_to_audio_and_audio_to_image(pipeline, systems):
    audio = pipeline.image_to_audio([systems["melody"]], GenerationConfig(max_len=10))
    assert audio[0].dtype == np.float32 and audio[0].ndim == 1 and len(audio[0]) % 512 == 0
    assert np.abs(audio[0]).max() <= 1.0
    wave = (0.1 * np.sin(np.arange(44100) / 10)).astype(np.float32)
    images = pipeline.audio_to_image([wave], GenerationConfig(max_len=40, temperature=1.0))
    assert images[0].dtype == np.uint8 and images[0].ndim == 2 and images[0].shape[0] % 16 == 0


def test_transcribe_and_engrave_give_one_output_per_input(pipeline, monkeypatch):
    from umt.tokenizers.midi import Note

    # Two inputs of 25 s and 3 s: three windows translated in one batched run, regrouped by input.
    waves = [np.zeros(44100 * 25, np.float32), (0.1 * np.sin(np.arange(44100 * 3) / 10)).astype(np.float32)]
    seen = []
    regrouped = pipeline.rows_to_notes

    def notes_of(rows, starts):
        seen.append((len(rows), list(starts)))
        return regrouped(rows, starts)

    monkeypatch.setattr(pipeline, "rows_to_notes", notes_of)
    notes = pipeline.transcribe(waves, GenerationConfig(max_len=12))
    assert len(notes) == 2 and all(isinstance(n, Note) for per in notes for n in per)
    assert seen == [(2, [0.0, 20.0]), (1, [0.0])]
    tokens = ["measure", "clef:G2", "C4", "quarter", "E4", "quarter", "G4", "half"]
    images = pipeline.lmx_to_image([tokens, " ".join(tokens)], GenerationConfig(max_len=40, temperature=1.0))
    assert len(images) == 2 and all(image.dtype == np.uint8 and image.ndim == 2 for image in images)


def test_long_audio_is_cut_into_20_second_windows(pipeline):
    audio = torch.from_numpy((0.05 * np.random.default_rng(0).standard_normal(44100 * 45)).astype(np.float32))
    windows = pipeline.audio_windows(audio[None])
    assert [len(w) for w in windows] == [1723, 1723, 431]  # ceil(20 s * 44100 / 512), ceil(5 s ...)
    assert all(pipeline.vocab.codebook_range("audio", 0).contains(int(i)) for i in windows[0][:, 0])


def test_lmx_systems_too_long_are_cut_at_measures():
    tokens = ["measure", "C4", "quarter", "D4", "quarter", "measure", "E4", "half", "measure", "F4", "whole"]
    pieces = split_measures(tokens, 6)
    assert pieces == [["measure", "C4", "quarter", "D4", "quarter"], tokens[5:]]
    assert split_measures(tokens, 5) == [tokens[:5], tokens[5:8], tokens[8:]]
    assert split_measures(["measure", *["C4", "quarter"] * 4], 4)[0] == ["measure", "C4", "quarter", "C4"]


def test_stack_images_pads_with_white():
    page = stack_images([np.zeros((2, 3), np.uint8), np.zeros((1, 5), np.uint8)], gap=1)
    assert page.shape == (4, 5) and page[2].min() == 255 and page[0, 3:].min() == 255


def test_midi_is_cut_into_segments_without_eos(pipeline):
    from umt.tokenizers.midi import Note

    notes = [Note(60 + i % 12, 0, False, i * 1.0, i * 1.0 + 0.5) for i in range(45)]
    segments = pipeline.midi_segments(notes)
    assert len(segments) == 3
    eos = pipeline.vocab.eos("midi")
    for segment in segments:
        # As the baked windows hold them: the batch adds the one EOS (it was ``... EOS EOS``).
        assert (segment[:, 0] != eos).all() and segment[-1, 0] != pipeline.vocab["midi/tie"].start
    with pytest.raises(InputError, match="no notes"):
        pipeline.midi_segments([], "empty.mid")


def test_transcriptions_of_windows_are_stitched(pipeline):
    from umt.tokenizers.midi import Note, encode_notes

    vocab = pipeline.vocab
    notes = [Note(60, 0, False, 19.5, 21.0), Note(64, 0, False, 25.0, 26.0)]
    windows = [np.asarray(vocab.single_stream_rows(ids[:-1])) for ids in encode_notes(notes, vocab)]
    result = pipeline.rows_to_notes(windows, [0.0, 20.0])
    assert [(n.pitch, n.onset, n.offset) for n in result.notes] == [(60, 19.5, 21.0), (64, 25.0, 26.0)]
    assert result.num_problems == 0


def test_midi_to_audio_and_cascade(pipeline, systems, tmp_path):
    midi = fx.save_midi(tmp_path / "short.mid", seconds=3.0)
    audio = pipeline.midi_to_audio([midi], GenerationConfig(max_len=10))
    assert audio[0].dtype == np.float32 and len(audio[0]) > 0
    sampled = GenerationConfig(max_len=48, temperature=1.0, seed=3)
    results = pipeline.cascade_image_to_audio([systems["piano_a"]], sampled)
    assert results[0].notes and results[0].audio.ndim == 1 and "<score-partwise" in results[0].score.musicxml


# ------------------------------------------------------------------------------ refusals
def test_tokenizer_that_does_not_match_the_model_is_refused(model_dir, tmp_path):
    from umt.models.rqvae import tiny_rqvae_config
    from umt.tokenizers.image import new_tokenizer

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    torch.manual_seed(123)
    new_tokenizer(tiny_rqvae_config()).save_pretrained(copy / "tokenizers" / "image")
    with pytest.raises(CheckpointError, match="trained with image tokenizer"):
        TranslationPipeline.from_pretrained(copy, device="cpu")
    other = tmp_path / "other_codes"
    new_tokenizer(tiny_rqvae_config(n_embed=16)).save_pretrained(other)
    with pytest.raises(CheckpointError, match="image tokenizer"):
        TranslationPipeline.from_pretrained(model_dir, device="cpu", image_tokenizer=other)


def test_task_the_model_was_not_trained_for_is_refused(tmp_path):
    folder = fx.make_model_folder(tmp_path, tasks=["omr"])
    pipeline = TranslationPipeline.from_pretrained(folder, device="cpu")
    pipeline.check_task("omr")
    with pytest.raises(CheckpointError, match="trained for omr, not amt"):
        pipeline.check_task("amt")


def test_too_long_source_is_an_input_error(pipeline, systems):
    wide = np.tile(systems["melody"], (1, 40))
    with pytest.raises(InputError, match="token rows long"):
        pipeline.image_rows(wide, "wide.png")


def test_systems_are_measured_as_a_umust_model_lays_them_out(pipeline, systems, tmp_path, monkeypatch):
    """A U-MusT-layout model pads every system to the tallest: a stacked-systems PNG that fits as
    written but not once padded is refused with the padded length."""
    from umt.tokenizers.image import write_systems_png

    path = tmp_path / "slide.png"
    path.write_bytes(write_systems_png([systems["piano_a"], systems["melody"]]))
    written = len(pipeline.image_file_rows(path))
    monkeypatch.setattr(pipeline.model.config, "max_source_len", written + 2)
    assert len(pipeline.image_file_rows(path)) == written  # fits exactly as written
    monkeypatch.setattr(pipeline.model.config, "source_systems", "umust")
    with pytest.raises(InputError, match=r"the systems is (\d+) token rows long") as refused:
        pipeline.image_file_rows(path)
    assert int(refused.value.problem.split()[3]) > written
