"""Hostile inputs to ``umt data prepare musicscore``: each bad PDF is a failure with its reason and
the rest goes on; a scripted PDF is read without running its script; odd page sizes; a PDF of 500
pages is rendered a page at a time (peak memory measured in a child process)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests._subprocess import umt_with_peak
from tests.hostile.test_hostile_pdfs import SCRIPTED
from umt.cli import main

pypdfium2 = pytest.importorskip("pypdfium2")


def _bw_pdf(pages: list[np.ndarray]) -> bytes:
    images = [Image.fromarray(page).convert("1") for page in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=images[1:], resolution=72)
    return buffer.getvalue()


def _staff_page(height: int, width: int) -> np.ndarray:
    """A white page with one five-line staff across it (what the system splitter looks for)."""
    page = np.full((height, width), 255, np.uint8)
    for line in range(5):
        page[height // 3 + 4 * line, width // 10 : width - width // 10] = 0
    return page


def _blank_pdf(path: Path, pages: int, width: float, height: float) -> Path:
    document = pypdfium2.PdfDocument.new()
    for _ in range(pages):
        document.new_page(width, height)
    document.save(str(path))
    return path


def test_bad_pdfs_are_failures_and_odd_ones_are_read(tmp_path, capsys):
    root = tmp_path / "imslp"
    root.mkdir()
    (root / "IMSLP1.pdf").write_bytes(_bw_pdf([_staff_page(300, 200)]))  # a good one
    (root / "IMSLP2.pdf").write_bytes(b"")
    _blank_pdf(root / "IMSLP3.pdf", 0, 100, 100)
    (root / "IMSLP4.pdf").write_bytes(SCRIPTED)  # JavaScript actions: read, never run
    _blank_pdf(root / "IMSLP5.pdf", 1, 30000, 30000)  # 30000 pt square: too large to render
    (root / "IMSLP6.pdf").write_bytes(_bw_pdf([np.zeros((1, 1), np.uint8)]))  # a 1x1 px scan
    (root / "IMSLP7.pdf").write_text("%PDF-1.4 nothing else")
    (root / "IMSLP1.json").write_text("[1, 2, 3]")  # JSON, but not an object: null fields
    out = tmp_path / "out"
    argv = ["data", "prepare", "musicscore", "--root", str(root), "--out", str(out), "--dpi", "72"]
    assert main([*argv, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    failures = {
        r["key"]: r["reason"] for r in map(json.loads, (out / "failures.jsonl").read_text().splitlines())
    }
    assert set(failures) == {"IMSLP2", "IMSLP3", "IMSLP5", "IMSLP7"}
    assert "too large to render" in failures["IMSLP5"]
    assert "no pages" in failures["IMSLP3"] or "not a readable PDF" in failures["IMSLP3"]
    keys = [json.loads(line)["key"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert keys == ["IMSLP1_1"]
    left_out = {
        r["key"]: r["reason"] for r in map(json.loads, (out / "left_out.jsonl").read_text().splitlines())
    }
    assert (
        "no staff found" in left_out["IMSLP4_1"] and "no staff found" in left_out["IMSLP6_1"]
    )  # read, kept out
    assert not Path("/tmp/umt-pdf-script-ran").exists()
    report = json.loads((out / "metadata_report.json").read_text())
    assert report["problems"]["not a JSON object"] == 1


def test_a_pdf_of_500_pages_is_rendered_a_page_at_a_time(tmp_path):
    root = tmp_path / "imslp"
    root.mkdir()
    (root / "IMSLP500.pdf").write_bytes(_bw_pdf([_staff_page(110, 85)] * 500))
    argv = [
        "data",
        "prepare",
        "musicscore",
        "--root",
        str(root),
        "--out",
        str(tmp_path / "out"),
        "--dpi",
        "300",
    ]
    done, peak_mib = umt_with_peak([*argv, "--no-progress"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == 500
    assert peak_mib < 600, f"peak RSS {peak_mib:.0f} MiB"
