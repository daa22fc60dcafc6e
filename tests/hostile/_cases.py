"""What every hostile case shares: one ``umt translate`` call over many inputs, read back per file.

Each input is either refused with one line ``umt: error: FILE: problem`` and writes nothing, or,
when it is valid but odd, processed like any other. Other inputs of the same call go on; no
traceback reaches the user.
"""

from __future__ import annotations

from pathlib import Path

from umt.cli import main


def translate_each(
    model: Path, task: str, inputs: list[Path], out: Path, capsys
) -> tuple[int, dict[Path, str]]:
    """Run ``umt translate`` on ``inputs``; the exit status and each input's error line (if any)."""
    argv = ["translate", "--checkpoint", str(model), "--task", task, *map(str, inputs), "-o", str(out)]
    status = main([*argv, "--max-len", "16", "--quiet"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("umt: error:")]
    found = {}
    for path in inputs:
        lines = [line for line in errors if f" {path}:" in line]
        assert len(lines) <= 1, lines
        if lines:
            found[path] = lines[0]
    assert len(found) == len(errors), errors  # every error line names one input
    return status, found


def outputs_of(out: Path, path: Path) -> list[str]:
    """The output files named after ``path`` (its stem)."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name.split(".")[0] == path.stem)


def check_outcomes(
    out: Path, errors: dict[Path, str], refused: dict[str, Path], processed: dict[str, Path]
) -> None:
    """Each refused input has its error line and no output; each processed one an output and no error."""
    for name, path in refused.items():
        assert path in errors, name
        assert outputs_of(out, path) == [], name  # nothing partial
    for name, path in processed.items():
        assert path not in errors, (name, errors.get(path))
        assert outputs_of(out, path), name
