"""``umt data prepare musicscore``: IMSLP-style PDFs and metadata made here (1-bit scans with a
cover, a grayscale scan, a vector score, broken PDFs, missing and garbled metadata) through the
filter, pages, page classifier, manifest, metadata report, splits by work and scales."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from umt.cli import main

pytest.importorskip("verovio")
pypdfium2 = pytest.importorskip("pypdfium2")

METADATA = {
    "Work Title": "Violin Sonata",
    "Alternative. Title": "Sonate",
    "Composer": "Franck, César",
    "Key": "A major",
    "Instrumentation": "violin, piano",
    "Piece Style": "Romantic",
    "Genre Categories": ["Sonatas", "For violin, piano"],
    "Composer Time Period": "Romantic",
}


def _vector_pdf(page: np.ndarray) -> bytes:
    """A vector PDF of a page: each run of dark pixels of a row drawn as a filled rectangle."""
    height, width = page.shape
    ops = []
    for y in range(height):
        dark = np.concatenate([[0], (page[y] < 230).astype(np.int8), [0]])
        starts, stops = np.flatnonzero(np.diff(dark) == 1), np.flatnonzero(np.diff(dark) == -1)
        ops += [f"{x0} {height - y - 1} {x1 - x0} 1 re" for x0, x1 in zip(starts, stops, strict=True)]
    stream = ("0 g\n" + "\n".join(ops) + "\nf\n").encode()
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
        + f"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] ".encode()
        + b"/Contents 4 0 R >> endobj\n"
        + f"4 0 obj << /Length {len(stream)} >> stream\n".encode()
        + stream
        + b"endstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )


def _pdf(pages: list[np.ndarray], mode: str) -> bytes:
    # a 1-bit scan is thresholded (near the paper: the engraved lines are thin grey), not dithered
    if mode == "1":
        pages = [np.where(page < 230, 0, 255).astype(np.uint8) for page in pages]
    images = [Image.fromarray(page).convert(mode, dither=Image.Dither.NONE) for page in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=images[1:], resolution=100)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict[str, Path]:
    from tests._page_fixtures import labelled_folder, score_page, text_page

    root = tmp_path_factory.mktemp("musicscore") / "imslp"
    (root / "metadata").mkdir(parents=True)
    (root / "more").mkdir()
    (root / "IMSLP100001.pdf").write_bytes(_pdf([text_page(1), score_page(1), score_page(2)], "1"))
    (root / "IMSLP100001.json").write_text(json.dumps(METADATA))
    (root / "IMSLP100002.pdf").write_bytes(_pdf([score_page(3)], "L"))  # a grayscale scan
    (root / "IMSLP100002.json").write_text(json.dumps(METADATA))
    (root / "IMSLP100003.pdf").write_bytes(_vector_pdf(score_page(6)))
    garbled = {"Work Title": "Etude", "Composer": {"name": "?"}, "Key": 5, "Instrumentation": ""}
    (root / "metadata" / "IMSLP100003.json").write_text(json.dumps(garbled))
    (root / "more" / "IMSLP100004.pdf").write_bytes(_pdf([score_page(4)], "1"))
    (root / "more" / "IMSLP100004.json").write_text("{'not': json")
    (root / "IMSLP100005.pdf").write_bytes(_pdf([score_page(5)], "1"))  # same work as 100001
    (root / "IMSLP100005.json").write_text(json.dumps(METADATA))
    whole = (root / "IMSLP100001.pdf").read_bytes()
    (root / "IMSLP100006.pdf").write_bytes(whole[: len(whole) // 3])  # truncated
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter(clone_from=str(root / "IMSLP100005.pdf"))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    with (root / "IMSLP100007.pdf").open("wb") as handle:
        writer.write(handle)
    labelled = labelled_folder(root.parent / "labelled", count=12)
    classifier = root.parent / "classifier"
    argv = ["classify-pages", "train", "--data", str(labelled), "--out", str(classifier), "--epochs", "5",
            "--image-size", "96", "--widths", "8,16,32,64", "--batch-size", "8", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return {"root": root, "classifier": classifier}


def _prepare(dataset, out: Path, *extra: str) -> int:
    argv = ["data", "prepare", "musicscore", "--root", str(dataset["root"]), "--out", str(out),
            "--classifier", str(dataset["classifier"]), "--dpi", "100", "--no-progress", *extra]  # fmt: skip
    return main(argv)


def test_the_pipeline_filters_renders_classifies_and_keeps_the_metadata(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert _prepare(dataset, out, "--scales", "2,4") == 1  # two PDFs cannot be read
    err = capsys.readouterr().err
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    keys = [r["key"] for r in records]
    assert keys == ["IMSLP100001_2", "IMSLP100001_3", "IMSLP100003_1", "IMSLP100005_1", "more/IMSLP100004_1"]
    first = records[0]
    assert first["page"] == f"page/{first['split']}/IMSLP100001_2.jpg" and first["page_number"] == 2
    assert first["image"] == f"image/{first['split']}/IMSLP100001_2.png"
    assert first["source"] == "scan" and records[2]["source"] == "vector"
    assert (out / first["text"]).read_text().strip() == first["prompt"]
    assert first["metadata"]["composer"] == "Franck, César"
    assert first["metadata"]["genre"] == "Sonatas; For violin, piano"
    assert first["prompt"] == (
        "a music score, composer is Franck, César, instrumentation is violin, piano, key is A major, "
        "piece style is Romantic, genre is Sonatas; For violin, piano"
    )
    garbled = records[2]["metadata"]
    assert garbled["composer"] is None and garbled["key"] is None and garbled["title"] == "Etude"
    assert records[2]["prompt"] == "a music score"
    assert records[0]["split"] == records[3]["split"] and records[0]["piece"] == records[3]["piece"]
    image = Image.open(out / first["page"])
    assert image.mode == "L" and abs(image.size[1] - 1100) <= 1  # 11 in at 100 dpi
    from umt.tokenizers.image import read_image, stacked_systems

    systems = stacked_systems(out / first["image"], read_image(out / first["image"]))
    assert systems is not None and len(systems) >= 3  # the page's systems, for the t2i task
    left_out = {
        row["key"]: row["reason"]
        for row in map(json.loads, (out / "left_out.jsonl").read_text().splitlines())
    }
    assert "8 bits per pixel" in left_out["IMSLP100002"]
    assert "IMSLP100001_1" in left_out and "classified non-score" in left_out["IMSLP100001_1"]
    failures = {
        row["key"]: row["reason"]
        for row in map(json.loads, (out / "failures.jsonl").read_text().splitlines())
    }
    assert set(failures) == {"IMSLP100006", "IMSLP100007"}
    assert "password-protected" in failures["IMSLP100007"]
    assert "umt: error: IMSLP100006:" in err
    report = json.loads((out / "metadata_report.json").read_text())
    assert report["scores"] == 7
    assert report["problems"]["not JSON"] == 1 and report["problems"]["no metadata file"] == 2
    assert report["problems"]["garbled composer"] == 1 and report["problems"]["garbled key"] == 1
    assert report["problems"]["missing instrumentation"] == 1
    small, large = (out / "scales" / "musicscore-2.jsonl"), (out / "scales" / "musicscore-4.jsonl")
    assert large.read_text().splitlines()[:2] == small.read_text().splitlines()  # nested draws

    assert _prepare(dataset, out, "--scales", "2,4") == 1  # a rerun redoes nothing
    assert "0 converted" in capsys.readouterr().err
    assert [json.loads(line)["key"] for line in (out / "manifest.jsonl").read_text().splitlines()] == keys
    argv = ["data", "prepare", "musicscore", "--root", str(dataset["root"]), "--out", str(out), "--dpi", "72"]
    assert main([*argv, "--no-progress"]) == 2  # other settings into the same folder: refused
    assert "holds data prepared from 'musicscore'" in capsys.readouterr().err


def test_musicscore_options_belong_to_musicscore(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    assert main(["data", "prepare", "maestro", "--root", str(tmp_path / "m"), "--out", str(tmp_path / "o"),
                 "--dpi", "72"]) == 2  # fmt: skip
    assert "--dpi is a musicscore option" in capsys.readouterr().err
    assert (
        main(["data", "prepare", "musicscore", "--root", str(tmp_path / "m"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "no PDF files" in capsys.readouterr().err
