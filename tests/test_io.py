"""File helpers: atomic writes honour the umask, leave nothing behind on failure; lists of paths
are read relative to the list's folder and written so that any working directory reads them."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from umt.utils.io import (
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    current_umask,
    path_for_list,
    read_path_list,
    staging_dir,
)


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)])
def test_every_writer_gives_what_open_and_mkdir_would_under_the_umask(tmp_path, mask, file_mode, dir_mode):
    with umask(mask):
        assert current_umask() == mask
        atomic_write_text(tmp_path / "a.txt", "a\n")
        atomic_write_bytes(tmp_path / "b.bin", b"b")
        with atomic_write(tmp_path / "c.txt", "w", encoding="utf-8") as handle:
            handle.write("c")
        with atomic_path(tmp_path / "d.wav") as tmp:
            tmp.write_bytes(b"d")
        with staging_dir(tmp_path / "folder") as staging:
            (staging / "inner").mkdir()
            (staging / "inner" / "e.txt").write_text("e")
            private = staging / "f.safetensors"
            private.write_bytes(b"f")
            private.chmod(0o600)  # as safetensors' save_file leaves its files
        plain = tmp_path / "plain.txt"
        plain.write_text("what open() gives")
    assert mode(plain) == file_mode
    for name in ("a.txt", "b.bin", "c.txt", "d.wav", "folder/inner/e.txt", "folder/f.safetensors"):
        assert mode(tmp_path / name) == file_mode, name
    for name in ("folder", "folder/inner"):
        assert mode(tmp_path / name) == dir_mode, name


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError), staging_dir(tmp_path / "model") as staging:
        (staging / "weights").write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_staging_dir_replaces_a_finished_folder_whole(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stale.txt").write_text("from an earlier export")
    with staging_dir(tmp_path / "model") as staging:
        (staging / "config.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json"]


def test_lists_are_read_relative_to_their_folder_from_any_working_directory(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "lists").mkdir(parents=True)
    inside, outside = data / "lists" / "x.png", data / "y.png"
    listing = data / "lists" / "files.txt"
    monkeypatch.chdir(data)  # the writer stands somewhere; relative names are relative to it
    lines = [path_for_list("lists/x.png", "lists"), path_for_list("y.png", "lists")]
    assert lines == ["x.png", str(outside)]  # inside the list's folder: relative; else absolute
    listing.write_text("# training images\n" + "\n".join(lines) + "\n\n")
    monkeypatch.chdir(tmp_path)  # the reader stands elsewhere
    assert read_path_list(Path("data/lists/files.txt")) == [Path("data/lists/x.png"), outside]
    assert [p.resolve() for p in read_path_list(listing)] == [inside, outside]


def test_what_a_killed_writer_left_is_found_and_removed(tmp_path):
    """A SIGKILL inside ``atomic_path`` / ``atomic_write`` leaves its temporary file (no ``finally``
    runs); a rerun of ``data prepare`` or ``corpus build`` removes it with remove_partial_files."""
    from umt.utils.io import atomic_path, atomic_write, remove_partial_files

    writers = [atomic_path(tmp_path / "a" / "x.flac"), atomic_write(tmp_path / "b.json")]
    for writer in writers:
        writer.__enter__()  # never exited: the process "dies" here
    left = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(p.suffix for p in left) == [".flac", ".tmp"]  # a listing of audio files picks one up
    kept = tmp_path / "a" / ".hidden.flac"
    kept.write_bytes(b"a user's file")
    assert remove_partial_files(tmp_path) == 2
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == [kept]


def test_a_prepare_rerun_removes_a_killed_run_s_partial_file(tmp_path):
    from tests.test_prepare import make_maestro
    from umt.cli import main

    maestro, out = make_maestro(tmp_path / "maestro-v3.0.0", broken=False), tmp_path / "out"
    argv = ["data", "prepare", "maestro", "--root", str(maestro), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    stale = out / "audio" / "train" / ".piece.partial-k1lled.flac"
    stale.write_bytes(b"half a file")
    assert main(argv) == 0
    assert not stale.exists()
