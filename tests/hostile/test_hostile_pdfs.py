"""Hostile PDFs for OMR: unreadable, empty, pageless, scripted and huge ones are one line each; a
long PDF of blank pages with one page of music is read page by page in bounded memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import _inference_fixtures as fx
from tests._subprocess import umt_with_peak
from tests.hostile._cases import check_outcomes, translate_each

pypdfium2 = pytest.importorskip("pypdfium2")


SCRIPTED = b"""%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >> endobj
2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj
3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /AA << /O 4 0 R >> >> endobj
4 0 obj << /S /JavaScript /JS (app.launchURL\\("file:///tmp/umt-pdf-script-ran"\\);) >> endobj
trailer << /Root 1 0 R >>
%%EOF
"""


def _pdf_of_pages(path: Path, pages: int, width: float = 595, height: float = 842) -> Path:
    document = pypdfium2.PdfDocument.new()
    for _ in range(pages):
        document.new_page(width, height)
    document.save(str(path))
    return path


def _encrypted_pdf(path: Path, source: Path, user_password: str) -> Path:
    """``source`` encrypted (RC4-128) by pypdf; an empty user password opens without asking."""
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter(clone_from=str(source))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    with path.open("wb") as file:
        writer.write(file)
    return path


def test_hostile_pdfs(model, tmp_path, capsys):
    root = tmp_path / "inputs"
    root.mkdir()
    score = fx.save_png(fx.render(fx.piano_musicxml(1, 1)), root / "score.png")
    refused = {
        "zero_bytes": root / "zero.pdf",
        "truncated": root / "truncated.pdf",
        "not_pdf": root / "letter.pdf",
        "no_pages": _pdf_of_pages(root / "no_pages.pdf", 0),
        "blank": _pdf_of_pages(root / "blank.pdf", 3),
        "scripted": root / "scripted.pdf",
        "huge_page": _pdf_of_pages(root / "huge.pdf", 1, 14400, 14400),
        "too_many_pages": _pdf_of_pages(root / "many.pdf", 501, 100, 100),
    }
    refused["zero_bytes"].write_bytes(b"")
    whole = fx.save_pdf(score, root / "whole.pdf").read_bytes()
    refused["truncated"].write_bytes(whole[: len(whole) // 2])
    refused["not_pdf"].write_text("Dear reader\n")
    refused["scripted"].write_bytes(SCRIPTED)
    processed = {"score": fx.save_pdf(score, root / "score.pdf")}
    refused["encrypted"] = _encrypted_pdf(root / "encrypted.pdf", processed["score"], "secret")
    processed["owner_locked"] = _encrypted_pdf(root / "owner_locked.pdf", processed["score"], "")
    out = tmp_path / "out"
    status, errors = translate_each(model, "omr", [*refused.values(), *processed.values()], out, capsys)
    assert status == 1
    check_outcomes(out, errors, refused, processed)
    assert not Path("/tmp/umt-pdf-script-ran").exists()  # the document's script never ran
    assert "no staff found on any of its 3 page(s)" in errors[refused["blank"]]
    assert "no pages" in errors[refused["no_pages"]] or "not a readable PDF" in errors[refused["no_pages"]]
    assert "too large to render" in errors[refused["huge_page"]]
    assert "is password-protected" in errors[refused["encrypted"]]
    assert "501 pages (at most 500)" in errors[refused["too_many_pages"]]


def test_a_long_pdf_is_read_a_page_at_a_time(model, tmp_path):
    """500 A4 pages (the most read), blank but for the last, which holds a system: rendered at
    200 dpi one after another, so memory holds systems, not 500 pages (2 GB)."""
    score = fx.save_pdf(
        fx.save_png(fx.render(fx.piano_musicxml(1, 1)), tmp_path / "s.png"), tmp_path / "s.pdf"
    )
    document = pypdfium2.PdfDocument.new()
    for _ in range(499):
        document.new_page(595, 842)
    document.import_pages(pypdfium2.PdfDocument(str(score)))
    document.save(str(tmp_path / "long.pdf"))
    argv = ["translate", "--checkpoint", str(model), "--task", "omr", str(tmp_path / "long.pdf")]
    done, peak_mib = umt_with_peak(
        [*argv, "-o", str(tmp_path / "out"), "--max-len", "8", "--quiet"], timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "long.lmx").is_file()
    assert peak_mib < 1024, f"peak RSS {peak_mib:.0f} MiB"


def test_a_short_fuzzing_run_finds_nothing(tmp_path):
    """``make fuzz``'s loop for a few seconds, one seed: every mutant of every kind is read or refused
    with one line (PDF pages damaged past loading were tracebacks before this found them)."""
    from tests.hostile.fuzz import fuzz

    counts, failures = fuzz(seconds=4.0, seed=3, out=tmp_path / "failures")
    assert failures == []
    assert set(counts) == {"flac", "jpeg", "midi", "musicxml", "pdf", "png", "wav"}
    assert sum(counts.values()) > 50
