"""File helpers: atomic writes that honour the umask, and lists of paths.

Atomic writes leave no partial output behind: a reader sees the old complete file or the new one.
``tempfile`` creates its files 0600 and its folders 0700, whatever the umask; every helper here
gives what it renames into place the mode a plain ``open`` or ``mkdir`` would have given
(0644 / 0755 under umask 022, 0664 / 0775 under 002), so a lab sharing runs on a group server can
read them. Nothing this project writes is a secret.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it (``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def give_default_mode(path: str | Path) -> None:
    """chmod ``path`` to what ``open`` (files: 0666) or ``mkdir`` (folders: 0777) less the umask gives."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~current_umask())


PARTIAL = ".partial-"
"""In the name of every temporary file these helpers make (``.NAME.partial-XXXX.SUFFIX``), so that
what a killed run left behind is found and removed by the rerun (:func:`remove_partial_files`)."""


def remove_partial_files(folder: str | Path) -> int:
    """Remove the temporary files a killed run left anywhere under ``folder``; how many."""
    stale = [p for p in Path(folder).rglob(f".*{PARTIAL}*") if p.is_file()]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return len(stale)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is untouched, so a reader (or a
    rerun after a crash) sees either the old complete file or the new complete file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}{PARTIAL}", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        give_default_mode(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that want a file name (soundfile, mido, ...).

    Renamed onto ``path`` when the block succeeds; removed when it fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}{PARTIAL}", suffix=suffix if suffix is not None else path.suffix, dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp_name)
        give_default_mode(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def staging_dir(target: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` to fill; on success it replaces ``target`` whole.

    An existing ``target`` is removed only once the new folder is complete; on failure the
    temporary folder is removed and ``target`` is untouched. Callers check first that ``target`` may
    be replaced (a folder of the same kind, never an unrelated one).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        # some writers (safetensors' save_file) create their files 0600 too
        for folder, _, names in os.walk(staging):
            give_default_mode(folder)
            for name in names:
                give_default_mode(os.path.join(folder, name))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_path_list(list_file: str | Path) -> list[Path]:
    """The paths in a list file: one a line, ``#`` comments and blank lines skipped; a relative
    path is relative to the list's own folder (so a list works from any working directory)."""
    from umt.errors import UserError

    list_file = Path(list_file)
    try:
        lines = [line.strip() for line in list_file.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"unreadable list of files ({error.__class__.__name__})", list_file) from None
    return [list_file.parent / line for line in lines if line and not line.startswith("#")]


def path_for_list(path: str | Path, list_dir: str | Path) -> str:
    """How to write ``path`` into a list file (or manifest) kept in ``list_dir``: relative to it when
    ``path`` lies inside it (the folder can then move), else absolute. Never relative to the
    working directory, which a reader of the list does not know."""
    path, list_dir = Path(os.path.abspath(path)), Path(os.path.abspath(list_dir))
    return path.relative_to(list_dir).as_posix() if path.is_relative_to(list_dir) else str(path)


def claim_folder(
    out: Path, stamp_file: str, stamp: dict[str, Any], made_by: str, mismatch: Callable[[Any], str]
) -> None:
    """Make ``out`` a job's output folder, stamped with ``out/stamp_file`` (JSON), so that the same
    command can resume there: a folder with that stamp is taken; one with another stamp is refused
    with ``mismatch(found)`` (the stamp found, or None when unreadable); a non-empty folder without
    a stamp is refused (never silently overwritten)."""
    import json

    from umt.errors import UserError

    path = out / stamp_file
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            found = None
        if found != json.loads(json.dumps(stamp)):
            raise UserError(f"{mismatch(found)}; choose another --out", out)
        return
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"is not empty and was not made by {made_by}; choose another --out", out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(stamp, indent=2, sort_keys=True) + "\n")
