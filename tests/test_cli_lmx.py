"""``umt lmx``: linearize / delinearize from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests._subprocess import checkout_env
from umt.cli import main

SCORE = (
    '<score-partwise><part-list><score-part id="P1"><part-name>Piano</part-name></score-part></part-list>'
    '<part id="P1"><measure><attributes><divisions>1</divisions>'
    "<clef><sign>G</sign><line>2</line></clef></attributes>"
    "<note><pitch><step>C</step><octave>4</octave></pitch><duration>4</duration><type>whole</type></note></measure>"
    '<measure><print new-system="yes"/><note><rest/><duration>4</duration><type>whole</type></note></measure>'
    "</part></score-partwise>"
)


def test_linearize_by_part_and_by_system(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "s.musicxml"
    path.write_text(SCORE)
    assert main(["lmx", "linearize", str(path)]) == 0
    assert capsys.readouterr().out == "measure clef:G2 C4 whole measure rest whole\n"
    assert main(["lmx", "linearize", str(path), "--by-system", "--part-index", "0"]) == 0
    assert capsys.readouterr().out == "measure clef:G2 C4 whole\nmeasure clef:G2 rest whole\n"


def test_several_files_report_failures_and_continue(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good, bad = tmp_path / "good.musicxml", tmp_path / "bad.musicxml"
    good.write_text(SCORE)
    bad.write_text("<score-partwise><part>")
    assert main(["lmx", "linearize", str(bad), str(good)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "measure clef:G2 C4 whole measure rest whole\n"
    assert captured.err.startswith(f"umt: error: {bad}: not well-formed XML")
    assert "Traceback" not in captured.err and len(captured.err.splitlines()) == 1


def test_delinearize_reference_format_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "in.lmx"
    source.write_text(
        "version: 1.0\nflavor: core\n---\nmeasure # 1\n clef:G2 C4 whole junk\n---\nmeasure rest whole\n"
    )
    out = tmp_path / "out" / "o.musicxml"
    assert main(["lmx", "delinearize", str(source), "-o", str(out)]) == 0
    assert "1 tokens dropped, 0 repaired" in capsys.readouterr().err
    assert main(["lmx", "linearize", str(out)]) == 0
    assert capsys.readouterr().out == "measure clef:G2 C4 whole measure rest whole\n"


def test_by_system_lines_round_trip_through_delinearize(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "s.musicxml"
    path.write_text(SCORE)
    assert main(["lmx", "linearize", str(path), "--by-system"]) == 0
    systems = capsys.readouterr().out
    assert systems.count("\n") == 2
    lmx_file, out = tmp_path / "s.lmx", tmp_path / "back.musicxml"
    lmx_file.write_text(systems)
    assert main(["lmx", "delinearize", str(lmx_file), "-o", str(out)]) == 0
    assert "(2 systems, 0 tokens dropped, 0 repaired)" in capsys.readouterr().err
    assert main(["lmx", "linearize", str(out), "--by-system"]) == 0
    assert capsys.readouterr().out == systems
    assert main(["lmx", "linearize", str(out)]) == 0  # the re-stated clef is not kept in the part
    assert capsys.readouterr().out == "measure clef:G2 C4 whole measure rest whole\n"


def test_delinearize_bad_file_leaves_no_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "o.musicxml"
    assert main(["lmx", "delinearize", str(tmp_path / "none.lmx"), "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"umt: error: {tmp_path / 'none.lmx'}: no such file\n"
    empty = tmp_path / "empty.lmx"
    empty.write_text("  \n")
    assert main(["lmx", "delinearize", str(empty), "-o", str(out)]) == 2
    assert not out.exists() and list(tmp_path.iterdir()) == [empty]


def test_subprocess_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "s.musicxml"
    path.write_text(SCORE)

    # the child must import the same umt as this test (this checkout), not an installed one
    env = checkout_env()
    done = subprocess.run(
        [sys.executable, "-m", "umt", "lmx", "linearize", str(path), str(tmp_path / "missing.mxl")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == "measure clef:G2 C4 whole measure rest whole\n"
    assert done.stderr == f"umt: error: {tmp_path / 'missing.mxl'}: no such file\n"
