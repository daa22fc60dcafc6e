"""``umt data patches``: seeded patches with enough ink, counted skips, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from umt.cli import main
from umt.data.patches import sample_patches


def test_every_patch_has_enough_ink_and_the_draws_are_seeded():
    page = np.full((600, 500), 255, np.uint8)
    page[100:300, 50:450:4] = 0  # ink in one band only
    draws = sample_patches(page, 96, 5, 0.9, np.random.default_rng(1))
    assert len(draws) == 5
    for x, y, whiteness in draws:
        assert whiteness <= 0.9
        assert whiteness == pytest.approx(page[y : y + 96, x : x + 96].mean() / 255)
    assert draws == sample_patches(page, 96, 5, 0.9, np.random.default_rng(1))
    assert sample_patches(np.full((600, 500), 255, np.uint8), 96, 5, 0.9, np.random.default_rng(1)) == []
    assert sample_patches(page[:50], 96, 5, 0.9, np.random.default_rng(1)) == []  # smaller than a patch


def test_the_command_cuts_counts_and_resumes(tmp_path, capsys):
    pages = tmp_path / "pages"
    (pages / "sub").mkdir(parents=True)
    inked = np.full((400, 300), 255, np.uint8)
    inked[::6, :] = 0  # lines everywhere: any patch qualifies
    Image.fromarray(inked).save(pages / "a.png")
    Image.fromarray(inked).save(pages / "sub" / "b.jpg")
    Image.fromarray(np.full((400, 300), 255, np.uint8)).save(pages / "blank.png")
    Image.fromarray(inked[:40, :40]).save(pages / "tiny.png")
    (pages / "broken.png").write_text("not an image")
    out = tmp_path / "out"
    argv = ["data", "patches", "--pages", str(pages), "--out", str(out), "--size", "64", "--per-page", "3",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 1  # the broken page is one line; the others go on
    err = capsys.readouterr().err
    assert f"umt: error: {pages / 'broken.png'}:" in err
    assert "5 pages (0 done before), 6 patches; 1 smaller than a patch, 1 with too little ink for 3" in err
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in records) == ["a_0", "a_1", "a_2", "sub/b_0", "sub/b_1", "sub/b_2"]
    first = Image.open(out / records[0]["image"])
    assert first.size == (64, 64)
    before = (out / "manifest.jsonl").read_text()
    assert main(argv) == 1
    assert "(4 done before)" in capsys.readouterr().err  # the broken page is tried again, the rest skipped
    assert (out / "manifest.jsonl").read_text() == before


def test_no_readable_page_is_one_line_each_and_no_output(tmp_path, capsys):
    empty, broken = tmp_path / "empty", tmp_path / "broken"
    empty.mkdir()
    broken.mkdir()
    (broken / "a.png").write_text("not an image")
    (broken / "b.jpg").write_bytes(b"")
    for pages, status in ((empty, 2), (broken, 1)):  # 2: nothing to do; 1: files that failed
        out = tmp_path / f"out-{pages.name}"
        assert main(["data", "patches", "--pages", str(pages), "--out", str(out), "--no-progress"]) == status
        assert not out.exists()  # nothing written: no empty manifest that looks like a result
    err = capsys.readouterr().err
    assert f"umt: error: {empty}: no page images (.png" in err
    assert f"umt: error: {broken / 'a.png'}: not a readable image" in err
    assert f"umt: error: {broken / 'b.jpg'}: empty file" in err
