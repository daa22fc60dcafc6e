"""Where ``umt translate`` writes: same names from different folders, an output path that is a file,
a symlink planted where an output goes, a full disk, and the user's umask."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from tests import _inference_fixtures as fx
from umt.cli import main


@pytest.fixture
def systems(tmp_path) -> list[Path]:
    image = fx.render(fx.piano_musicxml(1, 1))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    return [fx.save_png(image, tmp_path / folder / "system.png") for folder in ("a", "b")]


def _translate(model: Path, inputs: list[Path], out: Path) -> int:
    argv = ["translate", "--checkpoint", str(model), "--task", "omr", *map(str, inputs), "-o", str(out)]
    return main([*argv, "--quiet", "--max-len", "8"])


def test_same_stem_in_two_folders_is_not_overwritten(model, systems, tmp_path, capsys):
    out = tmp_path / "out"
    status = _translate(model, systems, out)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    written = sorted(p.name for p in out.iterdir())
    # either both are kept under distinct names, or the second is refused with one line: never lost
    if status == 0:
        assert len([name for name in written if name.endswith(".lmx")]) == 2, written
    else:
        assert status == 1 and len(err.strip().splitlines()) == 1 and "system" in err


def test_an_output_path_that_is_a_file_is_one_line(model, systems, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("keep me\n")
    assert _translate(model, systems[:1], out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0]
    assert out.read_text() == "keep me\n"


def test_a_symlink_planted_at_an_output_is_replaced_not_written_through(model, systems, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "system.lmx").symlink_to(victim)
    assert _translate(model, systems[:1], out) == 0
    assert victim.read_text() == "precious\n"
    assert not (out / "system.lmx").is_symlink() and (out / "system.lmx").is_file()


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(model, systems, tmp_path, capsys, monkeypatch):
    real_write = os.write

    def full(fd, data):
        if len(data) > 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    import umt.utils.io as io_module

    real_fdopen = os.fdopen

    class _FullFile:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()
            return False

    monkeypatch.setattr(io_module.os, "fdopen", lambda fd, *a, **k: _FullFile(real_fdopen(fd, *a, **k)))
    out = tmp_path / "out"
    status = _translate(model, systems[:1], out)
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("umt: error:")]
    assert len(lines) == 1 and "No space left" in lines[0]
    assert not out.exists() or sorted(os.listdir(out)) == []  # no partial or temporary file left
    del full


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_outputs_honour_the_umask(model, systems, tmp_path, mask):
    old = os.umask(mask)
    try:
        out = tmp_path / f"out-{mask:o}"
        assert _translate(model, systems[:1], out) == 0
    finally:
        os.umask(old)
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
