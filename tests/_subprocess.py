"""The environment for a Python child process that must import this checkout's ``umt``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def checkout_env(**extra: str) -> dict[str, str]:
    """``os.environ`` with this checkout first on ``PYTHONPATH`` (what was there stays after it:
    packages installed with ``pip --target`` must remain importable) and ``extra`` set."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **extra}


_PEAK_SCRIPT = """
import sys
try:  # the high-water mark a forked child inherits is its parent's: start it from here
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
except OSError:
    pass
from umt.cli import main
status = main(sys.argv[1:])
with open("/proc/self/status") as handle:
    peak = next(line.split()[1] for line in handle if line.startswith("VmHWM:"))
print("peak-kib", peak, file=sys.stderr)
sys.exit(status)
"""


def umt_with_peak(argv: list[str], timeout: float = 600) -> tuple[subprocess.CompletedProcess, float]:
    """``umt ARGV`` in a child process, and the child's own peak resident memory in MiB.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` would not do: a forked child starts from its parent's high
    water mark (a pytest worker holding models: hundreds of MiB), so the child resets it first
    (``/proc/self/clear_refs``) and reads ``VmHWM`` at the end."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, *argv],
        capture_output=True,
        text=True,
        env=checkout_env(),
        timeout=timeout,
    )
    found = [line for line in done.stderr.splitlines() if line.startswith("peak-kib")]
    return done, (int(found[-1].split()[1]) / 1024 if found else float("nan"))
