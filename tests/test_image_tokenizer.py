"""Score-image tokenizer: vertical flattening, preprocessing, shift variants, the tokenizer folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from umt.errors import CheckpointError, InputError
from umt.models.rqvae import tiny_rqvae_config
from umt.tokenizers.base import NeuralTokenizer
from umt.tokenizers.image import (
    NUM_VARIANTS,
    ImagePreprocessConfig,
    ImageTokenizer,
    flatten_systems,
    image_positions,
    measure_staff_height,
    new_tokenizer,
    preprocess,
    read_image,
    shift_variants,
    unflatten_rows,
    unflatten_with_repairs,
)
from umt.vocab import PAD_ID, VocabConfig, Vocabulary


def small_vocab(codebooks: int = 4, size: int = 32, max_height: int = 26) -> Vocabulary:
    return Vocabulary(
        VocabConfig(
            num_codebooks=codebooks,
            image_codebooks=codebooks,
            image_codebook_size=size,
            audio_codebooks=1,
            audio_codebook_size=8,
            max_image_height=max_height,
            midi_max_shift=10,
        )
    )


def random_grid(rng: np.random.Generator, height: int, width: int, codebooks: int, size: int = 32):
    return rng.integers(0, size, size=(height, width, codebooks))


# ---------------------------------------------------------------------------------- flattening
@pytest.mark.parametrize("codebooks", [1, 2, 4])
@pytest.mark.parametrize("heights", [(1,), (3,), (26,), (2, 5), (4, 1, 3)])
def test_flatten_round_trip(codebooks, heights):
    vocab = small_vocab(codebooks)
    rng = np.random.default_rng(len(heights) * 10 + codebooks)
    grids = [random_grid(rng, h, 2 + i, codebooks) for i, h in enumerate(heights)]
    rows = flatten_systems(grids, vocab)
    expected_length = sum(1 + g.shape[0] * g.shape[1] for g in grids) + len(grids) - 1
    assert rows.shape == (expected_length, codebooks) and rows.dtype == np.int64
    back, repairs = unflatten_with_repairs(rows, vocab)
    assert repairs.total == 0
    assert len(back) == len(grids)
    for original, restored in zip(grids, back):
        np.testing.assert_array_equal(original, restored)


def test_flatten_order_is_column_major_with_height_and_sep():
    vocab = small_vocab(2)
    grid = np.arange(2 * 3 * 2).reshape(2, 3, 2)  # [H=2, W=3, C=2]
    rows = flatten_systems([grid, grid[:1]], vocab)
    assert rows[0, 0] == vocab.height(2) and rows[0, 1] == PAD_ID
    codes = vocab.ids_to_codes("image", rows[1:7])
    # column 0 top to bottom, then column 1, ...
    expected = [grid[0, 0], grid[1, 0], grid[0, 1], grid[1, 1], grid[0, 2], grid[1, 2]]
    np.testing.assert_array_equal(codes, np.stack(expected))
    assert rows[7, 0] == vocab.sep and rows[8, 0] == vocab.height(1)


def test_unflatten_repairs_model_output():
    vocab = small_vocab(4)
    rng = np.random.default_rng(0)
    grid = random_grid(rng, 3, 4, 4)
    rows = flatten_systems([grid], vocab)
    sos = vocab.special_row(vocab.sos("image"))[None]
    eos = vocab.special_row(vocab.eos("image"))[None]
    stray = vocab.special_row(vocab.sos("lmx"))[None]
    lmx = vocab.single_stream_rows([vocab.lmx_id(vocab.lmx_token(vocab["lmx/token"].start))])
    partial = rows[1:3]  # two code rows: not a full column of 3
    garbage_after_eos = rows[1:4]
    noisy = np.concatenate([sos, rows[:5], stray, rows[5:], lmx, partial, eos, garbage_after_eos])
    grids, repairs = unflatten_with_repairs(noisy, vocab)
    assert len(grids) == 1
    np.testing.assert_array_equal(grids[0], grid)
    assert repairs.partial_column_tokens == 2
    assert repairs.stray_specials == 1
    assert repairs.foreign_rows == 1
    # a height token right after codes starts a new system; codes before any height are dropped
    second = flatten_systems([grid[:2]], vocab)
    grids, repairs = unflatten_with_repairs(np.concatenate([rows[1:4], rows, second]), vocab)
    assert repairs.headless_code_rows == 3 and repairs.implicit_separators == 1
    assert [g.shape for g in grids] == [(3, 4, 4), (2, 4, 4)]
    # an invalid id in codebook 2 is replaced by code 0 and counted
    bad = rows.copy()
    bad[1, 2] = vocab.sep
    grids, repairs = unflatten_with_repairs(bad, vocab)
    assert repairs.invalid_codes == 1 and grids[0][0, 0, 2] == 0
    assert unflatten_rows(np.zeros((0, 4), np.int64), vocab) == []


@pytest.mark.parametrize("heights", [(1,), (3, 2)])
def test_image_positions(heights):
    vocab = small_vocab(4)
    rng = np.random.default_rng(1)
    grids = [random_grid(rng, h, 3, 4) for h in heights]
    rows = flatten_systems(grids, vocab)
    positions = image_positions(rows, vocab)
    assert positions.shape == (rows.shape[0], 2)
    cursor = 0
    for index, grid in enumerate(grids):
        if index:
            assert tuple(positions[cursor]) == (0, 0)  # SEP
            cursor += 1
        assert tuple(positions[cursor]) == (0, 0)  # height token
        cursor += 1
        for column in range(grid.shape[1]):
            for row in range(grid.shape[0]):
                assert tuple(positions[cursor]) == (column + 1, row + 1)
                cursor += 1
    assert cursor == rows.shape[0]


# ------------------------------------------------------------------------------- preprocessing
def staff_image(
    width: int = 300, spacing: int = 6, thickness: int = 1, staves: int = 2, top: int = 12, gap: int = 40
) -> np.ndarray:
    """A white page with ``staves`` 5-line staves and a few note heads (uint8 [H, W])."""
    staff_height = 4 * spacing + thickness
    height = top * 2 + staves * staff_height + (staves - 1) * gap
    image = np.full((height, width), 250, np.uint8)
    for staff in range(staves):
        y0 = top + staff * (staff_height + gap)
        for line in range(5):
            y = y0 + line * spacing
            image[y : y + thickness, 5 : width - 5] = 20
        for x in range(30, width - 30, 37):
            image[y0 + 4 : y0 + 8, x : x + 5] = 10
    return image


@pytest.mark.parametrize(("spacing", "thickness"), [(6, 1), (9, 2), (4, 1)])
def test_measure_staff_height(spacing, thickness):
    image = staff_image(spacing=spacing, thickness=thickness)
    assert measure_staff_height(image) == 4 * spacing + thickness
    assert measure_staff_height(np.full((40, 40), 255, np.uint8)) is None


def test_preprocess_resizes_whitens_and_pads():
    image = staff_image(spacing=9, thickness=2, width=400)  # staff height 38
    image[0, 0] = 200  # light-grey noise above the median threshold becomes white
    config = ImagePreprocessConfig()
    x = preprocess(image, config, staff_height=38)
    assert x.dtype == torch.float32 and x.shape[0] == 1
    assert x.shape[1] % 16 == 0 and x.shape[2] % 16 == 0
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    # the resized image should have staves about 18 px high
    gray = ((x[0].numpy() + 1) * 127.5).round().astype(np.uint8)
    measured = measure_staff_height(gray)
    assert measured is not None and abs(measured - 18) <= 2
    assert gray[config.pad_top, config.pad_left] == 255
    # the margins (10 px top, 12 px left, and at least one token right/bottom) are white
    assert (gray[: config.pad_top] == 255).all() and (gray[:, : config.pad_left] == 255).all()
    assert (gray[-6:] == 255).all() and (gray[:, -4:] == 255).all()
    assert (gray < 128).sum() > 0  # the staff lines stay dark


def test_preprocess_whitens_pixels_above_the_median():
    rng = np.random.default_rng(0)
    image = staff_image(width=200)
    paper = image > 128
    image[paper] = rng.integers(180, 250, size=int(paper.sum()))  # grey, noisy paper
    config = ImagePreprocessConfig()
    x = preprocess(image, config, staff_height=None)  # no resize: pixels map one to one
    gray = ((x[0].numpy() + 1) * 127.5).round().astype(np.uint8)
    placed = gray[
        config.pad_top : config.pad_top + image.shape[0], config.pad_left : config.pad_left + image.shape[1]
    ]
    assert (placed[image > np.median(image)] == 255).all()
    np.testing.assert_array_equal(placed[image < 100], image[image < 100])


def test_preprocess_caps_system_height():
    tall = np.full((900, 100), 255, np.uint8)
    tall[::50] = 0
    x = preprocess(tall, ImagePreprocessConfig(), staff_height=None)
    assert x.shape[1] <= 416 and x.shape[1] // 16 <= 26


def test_shift_variants():
    image = staff_image(width=120, staves=1)
    x = preprocess(image, ImagePreprocessConfig(), staff_height=None)
    variants = shift_variants(x)
    assert len(variants) == NUM_VARIANTS == 32
    assert torch.equal(variants[0], x)
    assert all(v.shape == x.shape for v in variants)
    dark = (x < 0).sum()
    for index, variant in enumerate(variants):
        dx, dy = divmod(index, 4)
        assert (variant < 0).sum() == dark  # content never falls off the canvas
        assert torch.equal(variant[:, : x.shape[1] - dy, : x.shape[2] - dx], x[:, dy:, dx:])
    assert len({v.numpy().tobytes() for v in variants}) == 32


def test_read_image_errors(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray(staff_image()).save(good)
    assert read_image(good).shape == staff_image().shape
    rgba = tmp_path / "rgba.png"
    array = np.zeros((10, 12, 4), np.uint8)  # fully transparent black: paper
    Image.fromarray(array, "RGBA").save(rgba)
    assert (read_image(rgba) == 255).all()
    jpg = tmp_path / "page.jpg"
    Image.fromarray(staff_image()).convert("RGB").save(jpg)
    assert read_image(jpg).ndim == 2
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:60])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    for bad in (corrupt, empty, text, tmp_path / "missing.png"):
        with pytest.raises(InputError) as info:
            read_image(bad)
        assert bad.name in str(info.value)


# ----------------------------------------------------------------------------------- tokenizer
@pytest.fixture(scope="module")
def tokenizer() -> ImageTokenizer:
    torch.manual_seed(0)
    return new_tokenizer(tiny_rqvae_config())


def test_tokenizer_protocol_and_round_trip(tokenizer, tmp_path):
    from PIL import Image

    assert isinstance(tokenizer, NeuralTokenizer) and tokenizer.modality == "image"
    path = tmp_path / "system.png"
    Image.fromarray(staff_image(width=200)).save(path)
    x = tokenizer.load(path)
    assert x.shape[0] == 1 and x.shape[1] % 16 == 0
    vocab = small_vocab(4, 32)
    rows = tokenizer.tokenize(x, vocab)
    height, width = x.shape[1] // 16, x.shape[2] // 16
    assert rows.shape == (1 + height * width, 4)
    assert rows[0, 0] == vocab.height(height)
    grids = unflatten_rows(rows, vocab)
    np.testing.assert_array_equal(grids[0], tokenizer.codes_of(x))
    image = tokenizer.detokenize(rows, vocab)
    assert image.shape == x.shape and float(image.abs().max()) <= 1.0
    # two systems stack vertically
    both = flatten_systems([grids[0], grids[0][:, :2]], vocab)
    assert tokenizer.detokenize(both, vocab).shape == (1, 2 * x.shape[1], x.shape[2])
    assert len(tokenizer.variants(x)) == 32
    with pytest.raises(ValueError, match="image codes"):
        tokenizer.tokenize(x, small_vocab(4, 1024))


def test_encode_rejects_bad_shapes(tokenizer):
    with pytest.raises(ValueError, match="multiples of 16"):
        tokenizer.encode(torch.zeros(1, 1, 20, 32))
    with pytest.raises(ValueError, match="codes must be in"):
        tokenizer.decode(torch.full((1, 1, 1, 4), 99))


def test_save_and_from_pretrained(tokenizer, tmp_path):
    folder = tmp_path / "image_tokenizer"
    tokenizer.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "fingerprint.txt", "model.safetensors"]
    restored = ImageTokenizer.from_pretrained(folder)
    assert restored.fingerprint == tokenizer.fingerprint
    x = preprocess(staff_image(width=150), ImagePreprocessConfig(), None)[None]
    assert torch.equal(restored.encode(x), tokenizer.encode(x))
    tokenizer.save_pretrained(folder)  # overwriting an export is allowed
    # corrupt weights
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        ImageTokenizer.from_pretrained(folder)
    # mismatched config
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["n_embed"] = 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match the config"):
        ImageTokenizer.from_pretrained(folder)
    # tampered fingerprint / missing file / not a folder
    tokenizer.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "fingerprint.txt", "model.safetensors"]
    recorded = (folder / "fingerprint.txt").read_text()
    (folder / "fingerprint.txt").write_text("0123456789abcdef\n")
    with pytest.raises(CheckpointError, match="fingerprint"):
        ImageTokenizer.from_pretrained(folder)
    # Folders of earlier versions name the file "fingerprint": still read, still checked.
    (folder / "fingerprint.txt").rename(folder / "fingerprint")
    with pytest.raises(CheckpointError, match="fingerprint"):
        ImageTokenizer.from_pretrained(folder)
    (folder / "fingerprint").write_text(recorded)
    assert ImageTokenizer.from_pretrained(folder).fingerprint == recorded.strip()
    (folder / "fingerprint").unlink()
    with pytest.raises(CheckpointError, match=r"missing fingerprint\.txt"):
        ImageTokenizer.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="no such directory"):
        ImageTokenizer.from_pretrained(tmp_path / "nowhere")


def test_stacked_systems_png_loads_as_its_systems_and_refuses_rows_that_do_not_fit(tmp_path):
    """write_systems_png records each system's rows; load splits there (any other PNG is one image)."""
    from PIL import Image, PngImagePlugin

    from umt.tokenizers.image import SYSTEMS_KEY, system_rows, write_systems_png

    systems = [np.full((30, 50), 200, np.uint8), np.full((20, 70), 100, np.uint8)]
    path = tmp_path / "slide.png"
    path.write_bytes(write_systems_png(systems, gap=8))
    assert system_rows(path, 58) == [(0, 30), (38, 58)]
    with Image.open(path) as image:
        pixels = np.asarray(image)
    assert (
        (pixels[:30, :50] == 200).all() and (pixels[38:, :70] == 100).all() and (pixels[30:38] == 255).all()
    )
    plain = tmp_path / "plain.png"
    Image.fromarray(pixels).save(plain)
    assert system_rows(plain, 58) is None
    bad = tmp_path / "bad.png"
    info = PngImagePlugin.PngInfo()
    info.add_text(SYSTEMS_KEY, "0-30,38-999")
    Image.fromarray(pixels).save(bad, pnginfo=info)
    with pytest.raises(InputError, match="do not fit the image"):
        system_rows(bad, 58)
