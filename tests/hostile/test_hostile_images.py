"""Hostile and odd images for every command that reads them (``umt translate`` OMR and image-to-audio;
``umt bake image`` and the image tokenizer share the reader)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import _inference_fixtures as fx
from tests.hostile._cases import check_outcomes, translate_each

pytest.importorskip("verovio")


def _bomb_png(path: Path, side: int = 30000) -> Path:
    """A PNG whose header says ``side`` x ``side`` pixels, in a few KB (the rows compress to nothing)."""
    raw = zlib.compress(b"\x00" + b"\x00" * (side // 8), 9)  # one 1-bit row; a decoder would need them all

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    )
    return path


def _make_inputs(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(refused, processed) inputs by case name."""
    root.mkdir(parents=True, exist_ok=True)
    system = fx.render(fx.piano_musicxml(1, 1))
    refused = {
        "zero_bytes": root / "zero.png",
        "truncated_png": root / "truncated.png",
        "truncated_jpeg": root / "truncated.jpg",
        "text_named_png": root / "notes.png",
        "bomb": _bomb_png(root / "bomb.png"),
        "blank_page": root / "blank_page.png",
        "page_without_staves": root / "page_without_staves.png",
    }
    # pages in which no system is found are read as one system, and these are too tall for one
    Image.new("L", (600, 800), 255).save(refused["blank_page"])
    Image.fromarray(_blobs(800, 600)).save(refused["page_without_staves"])
    refused["zero_bytes"].write_bytes(b"")
    whole = io.BytesIO()
    Image.fromarray(system).save(whole, format="PNG")
    refused["truncated_png"].write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    jpeg = io.BytesIO()
    Image.fromarray(system).save(jpeg, format="JPEG")
    refused["truncated_jpeg"].write_bytes(jpeg.getvalue()[:200])
    refused["text_named_png"].write_text("these are not pixels\n")
    processed = {
        name: root / f"{name}.{ext}"
        for name, ext in (
            ("one_pixel", "png"),
            ("sixteen_bit", "png"),
            ("palette", "png"),
            ("cmyk", "jpg"),
            ("alpha", "png"),
            ("animated", "gif"),
            ("blank", "png"),
            ("no_staves", "png"),
        )
    }
    Image.new("L", (1, 1), 255).save(processed["one_pixel"])
    Image.fromarray(system.astype(np.uint16) * 257).save(processed["sixteen_bit"])
    Image.fromarray(system).convert("P").save(processed["palette"])
    Image.fromarray(system).convert("CMYK").save(processed["cmyk"])
    rgba = Image.fromarray(system).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(system < 128, 255, 0).astype(np.uint8)))  # ink opaque, paper clear
    rgba.save(processed["alpha"])
    frames = [Image.fromarray(system).convert("P"), Image.new("P", Image.fromarray(system).size, 0)]
    frames[0].save(processed["animated"], save_all=True, append_images=frames[1:], duration=100)
    Image.new("L", (600, 100), 255).save(processed["blank"])  # as tall as a system: read as one
    Image.fromarray(_blobs(100, 600)).save(processed["no_staves"])
    return refused, processed


def _blobs(height: int, width: int) -> np.ndarray:
    """Ink squares scattered on white: marks, but no staff lines."""
    pixels = np.full((height, width), 255, np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(40):
        y, x = rng.integers(0, height - 10), rng.integers(0, width - 10)
        pixels[y : y + 8, x : x + 8] = 0
    return pixels


@pytest.mark.parametrize("task", ["omr", "i2a"])
def test_hostile_images_are_refused_one_line_each_and_odd_ones_are_processed(model, tmp_path, capsys, task):
    refused, processed = _make_inputs(tmp_path / "inputs")
    out = tmp_path / "out"
    status, errors = translate_each(model, task, [*refused.values(), *processed.values()], out, capsys)
    assert status == 1
    check_outcomes(out, errors, refused, processed)
    assert "too large" in errors[refused["bomb"]] or "pixels" in errors[refused["bomb"]]
    assert "systems were not found" in errors[refused["blank_page"]]
    assert "empty file" in errors[refused["zero_bytes"]]
    assert "truncated" in errors[refused["truncated_png"]].lower()


def test_bake_lists_hostile_images_and_bakes_the_rest(tmp_path, capsys):
    """``umt bake image`` over the same cases: each refused image is one line and an entry of
    ``failures.json``, nothing of it is baked; the odd but valid ones are baked."""
    import json

    from umt.cli import main
    from umt.models.rqvae import tiny_rqvae_config
    from umt.tokenizers.image import new_tokenizer

    refused, processed = _make_inputs(tmp_path / "inputs")
    tokenizer = tmp_path / "tok"
    new_tokenizer(tiny_rqvae_config()).save_pretrained(tokenizer)
    manifest = tmp_path / "images.txt"
    manifest.write_text("".join(f"{p}\n" for p in [*refused.values(), *processed.values()]))
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps(fx.TINY_VOCAB))
    out = tmp_path / "shards"
    argv = [
        "bake",
        "image",
        "--tokenizer",
        str(tokenizer),
        "--manifest",
        str(manifest),
        "--vocab",
        str(vocab),
    ]
    status = main([*argv, "--out", str(out), "--variants", "none", "--no-progress", "--num-workers", "0"])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    report = json.loads((out / "failures.json").read_text())
    failed = {Path(entry["path"]).name for entry in report["failures"]}
    assert failed >= {p.name for p in refused.values() if p.stem not in ("blank_page", "page_without_staves")}
    assert not failed & {p.name for p in processed.values()}
