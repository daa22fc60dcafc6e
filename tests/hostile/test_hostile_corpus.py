"""Hostile score files given to ``umt corpus build --files``: each is one error line naming it (and a
row of failures.jsonl), the good files are built, nothing is written outside the output folder, and
two files with the same name in different folders both make it in."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from umt.cli import main

pytest.importorskip("verovio")
pytest.importorskip("cairosvg")

ENTITY_BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<score-partwise><work><work-title>&lol3;</work-title></work></score-partwise>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE score-partwise [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<score-partwise><work><work-title>&secret;</work-title></work></score-partwise>
"""


def _chorale(name: str) -> Path:
    from music21 import corpus

    return Path(str(corpus.getWork(name)))


def _make_inputs(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    root.mkdir()
    refused = {name: root / f"{name}.musicxml" for name in ("zero", "letter", "entities", "external")}
    refused["zero"].write_bytes(b"")
    refused["letter"].write_text("Dear reader\n")
    refused["entities"].write_text(ENTITY_BOMB)
    refused["external"].write_text(EXTERNAL_ENTITY)
    refused["binary"] = root / "noise.xml"
    refused["binary"].write_bytes(bytes(range(256)) * 8)
    refused["escaping"] = root / "escaping.mxl"
    with zipfile.ZipFile(refused["escaping"], "w") as archive:
        archive.writestr("../../evil.xml", "<score-partwise/>")
        container = '<container><rootfiles><rootfile full-path="../../evil.xml"/></rootfiles></container>'
        archive.writestr("META-INF/container.xml", container)
    refused["zip_bomb"] = root / "zip_bomb.mxl"  # 600 MB of spaces in about 600 KB
    with (
        zipfile.ZipFile(refused["zip_bomb"], "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("score.xml", "w", force_zip64=True) as member,
    ):
        member.write(b"<score-partwise>")
        for _ in range(600):
            member.write(b" " * (1 << 20))
        member.write(b"</score-partwise>")
    refused["truncated"] = root / "truncated.mxl"
    whole = _chorale("bwv66.6").read_bytes()
    refused["truncated"].write_bytes(whole[: len(whole) // 2])
    refused["missing"] = root / "missing.musicxml"
    (root / "a").mkdir()
    (root / "b").mkdir()
    processed = {"a": root / "a" / "score.mxl", "b": root / "b" / "score.mxl"}
    shutil.copy(_chorale("bwv66.6"), processed["a"])
    shutil.copy(_chorale("bwv269"), processed["b"])
    return refused, processed


def test_hostile_score_files_are_one_line_each_and_same_named_files_both_build(tmp_path, capsys, monkeypatch):
    refused, processed = _make_inputs(tmp_path / "inputs")
    monkeypatch.chdir(tmp_path)
    files = [str(p.relative_to(tmp_path)) for p in [*refused.values(), *processed.values()]]
    argv = ["corpus", "build", "--out", "out", "--sources", "none", "--no-audio", "--no-progress"]
    status = main([*argv, "--excerpts-per-piece", "2", "--files", *files])
    captured = capsys.readouterr()
    assert status == 1
    assert "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("umt: error:")]
    assert len(errors) == len(refused), errors
    for name, path in refused.items():
        mentions = [line for line in errors if f" {path.relative_to(tmp_path)}:" in line]
        assert len(mentions) == 1, (name, errors)
    failures = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == len(refused) and {row["stage"] for row in failures} == {"load"}
    assert "inflates to" in next(line for line in errors if "zip_bomb" in line)
    assert "unsafe path" in next(line for line in errors if "escaping" in line)
    assert "entit" in next(line for line in errors if "entities" in line)
    assert "root:" not in captured.err + captured.out  # /etc/passwd was never read into anything
    records = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    pieces = {record["piece"] for record in records}
    assert len(pieces) == 2 and all(piece.startswith("files/score-") for piece in pieces), pieces
    assert not (tmp_path / "evil.xml").exists() and not (tmp_path.parent / "evil.xml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs", "out"]  # nothing written beside
